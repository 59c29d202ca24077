"""Group commit of a node's state-changing calls, and of the deliveries it receives.

RPC workers hand their calls to one batcher per node; it takes every call waiting, stages them
all in one transaction (sending.staged_many: each refused alone), publishes what they sent
with one wait for the broker's confirms, and wakes each caller with its own result. Alone, a
call goes through at once; under load, calls share transactions and confirms instead of
queueing behind each other's.

The delivery worker hands its checked batch (receiving.check_batch: verified outside any
transaction) to the same batcher: when calls are waiting too, both go into one transaction
(services/handlers/together.py), calls first, with one commit instead of two. If that
transaction fails, the calls and the deliveries are taken again apart, each as it would
have been alone."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import eventlet
from eventlet.event import Event
from eventlet.queue import Empty, LightQueue
from nameko.extensions import DependencyProvider

from services.handlers import receiving, sending, together
from services.handlers.context import NodeContext
from services.handlers.requests import Sent

log = logging.getLogger(__name__)

MAX_CALLS_PER_COMMIT = 500
PUBLISH_WAIT_SECONDS = 10.0

# after_commit(ctx, results): publish what the committed calls sent; an Event fired once the
# broker has answered for them, or None.
AfterCommit = Callable[[NodeContext, list], "Event | None"]


@dataclass
class _Pending:
    ctx: NodeContext
    calls: list[sending.Call]
    after_commit: AfterCommit
    done: Event = field(default_factory=Event)


@dataclass
class _Receiving:
    ctx: NodeContext
    batch: receiving.CheckedBatch
    done: Event = field(default_factory=Event)


class CallBatcher:
    def __init__(self, spawn: Callable, max_calls: int = MAX_CALLS_PER_COMMIT):
        self._waiting: LightQueue = LightQueue()
        self._spawn = spawn
        self._max_calls = max_calls
        self._running = False

    def submit(self, ctx: NodeContext, calls: list[sending.Call], after_commit: AfterCommit) -> list:
        """Stage ``calls`` (with others that are waiting) in one transaction; their results, in
        order: a Sent, or a sending.Refused."""
        pending = _Pending(ctx, calls, after_commit)
        self._enqueue(pending)
        result, published = pending.done.wait()
        if isinstance(result, BaseException):
            raise result
        if published is not None:
            # Answer once the broker has the messages (or the relay has them back): a caller
            # told "sent" finds them on the bus. Committed either way, so a slow broker
            # only delays the answer, up to a bound.
            with eventlet.Timeout(PUBLISH_WAIT_SECONDS, False):
                published.wait()
        return result

    def receive(self, ctx: NodeContext, deliveries: list) -> "receiving._Batch":
        """Verify ``deliveries`` here, then decide and commit them with whatever calls are
        waiting; the decided batch (``.results()``: the outcomes). Raises what receiving
        them alone raised (the caller then takes them one by one)."""
        pending = _Receiving(ctx, receiving.check_batch(ctx, deliveries))
        self._enqueue(pending)
        result = pending.done.wait()
        if isinstance(result, BaseException):
            raise result
        return result

    def _enqueue(self, pending) -> None:
        self._waiting.put(pending)
        if not self._running:
            self._running = True
            self._spawn(self._drain)

    def _drain(self) -> None:
        try:
            while True:
                # Let the callers that became ready meanwhile (their requests read off the
                # socket while the last commit ran) join this commit.
                eventlet.sleep(0)
                try:
                    group = [self._waiting.get_nowait()]
                except Empty:
                    return
                size = _size(group[0])
                while size < self._max_calls:
                    try:
                        more = self._waiting.get_nowait()
                    except Empty:
                        break
                    group.append(more)
                    size += _size(more)
                calls = [p for p in group if isinstance(p, _Pending)]
                received = [p for p in group if isinstance(p, _Receiving)]
                if received:
                    self._commit_together(calls, received)
                else:
                    self._commit(calls)
        finally:
            self._running = False
            if not self._waiting.empty():  # arrived as we stopped: go on
                self._running = True
                self._spawn(self._drain)

    def _commit_together(self, calls: list[_Pending], received: list[_Receiving]) -> None:
        ctx = received[0].ctx
        try:
            results, decided = together.commit_together(ctx, [c for p in calls for c in p.calls],
                                                        [r.batch for r in received])
        except Exception as error:
            if not calls and len(received) == 1:  # it failed alone: the worker takes it apart
                received[0].done.send(error)
                return
            if calls:
                log.warning("%s: %d call(s) and %d delivery batch(es) could not be committed together; "
                            "taking them apart", ctx.agency, len(calls), len(received), exc_info=True)
                self._commit(calls)
            for pending in received:
                self._receive_alone(pending)
            return
        for pending, batch in zip(received, decided):
            pending.done.send(batch)
        if calls:
            self._wake(calls, results)

    @staticmethod
    def _receive_alone(pending: _Receiving) -> None:
        try:
            batch = receiving.commit_checked(pending.ctx, pending.batch)
        except Exception as error:
            pending.done.send(error)
            return
        pending.done.send(batch)

    def _commit(self, group: list[_Pending]) -> None:
        ctx = group[0].ctx
        calls = [call for pending in group for call in pending.calls]
        try:
            results = sending.staged_many(ctx, calls)
        except Exception as error:  # the transaction failed: every caller learns it
            if len(group) > 1:
                for pending in group:  # alone, one caller's bad call cannot fail the others
                    self._commit([pending])
                return
            group[0].done.send((error, None))
            return
        self._wake(group, results)

    @staticmethod
    def _wake(group: list[_Pending], results: list) -> None:
        """Hand what the committed calls sent to the publisher; each caller its results."""
        ctx = group[0].ctx
        published = None
        try:
            published = group[0].after_commit(ctx, [r for r in results if isinstance(r, Sent)])
        except Exception:  # committed: the relay publishes it later
            log.exception("%s: publishing just after the commit failed; what was not taken goes out again at its receipt timeout (a receipt: when its message comes again)", ctx.agency)
        start = 0
        for pending in group:
            pending.done.send((results[start:start + len(pending.calls)], published))
            start += len(pending.calls)


def _size(pending) -> int:
    return len(pending.calls) if isinstance(pending, _Pending) else len(pending.batch.checked)


class CallBatching(DependencyProvider):
    """One CallBatcher per node; workers get it."""

    def setup(self):
        self.batcher = CallBatcher(lambda run: self.container.spawn_managed_thread(run, identifier="call batcher"))

    def get_dependency(self, worker_ctx) -> CallBatcher:
        return self.batcher


class PublishQueue:
    """Publishing what was just committed, off the committing worker's path: the next batch
    starts while the broker confirms the last one's messages, and the messages of several
    commits go out with one wait for confirms. What is never published here (the process
    stopped) is published again at its receipt timeout, or answered again (a receipt) when
    its message comes again (services/domain/delivery.py, HANDED_OVER)."""

    def __init__(self, spawn: Callable):
        self._waiting: LightQueue = LightQueue()
        self._spawn = spawn
        self._running = False

    def put(self, ctx: NodeContext, rows: list[dict],
            publish: Callable[[NodeContext, list[dict]], None]) -> Event | None:
        """Queue ``rows`` for publication; the Event fires once the broker has answered for
        them (taken, or not: then they are pending again for the relay)."""
        if not rows:
            return None
        published = Event()
        self._waiting.put((ctx, rows, publish, published))
        if not self._running:
            self._running = True
            self._spawn(self._drain)
        return published

    def _drain(self) -> None:
        try:
            while True:
                try:
                    ctx, rows, publish, published = self._waiting.get_nowait()
                except Empty:
                    return
                rows, answered = list(rows), [published]
                while len(rows) < MAX_CALLS_PER_COMMIT:
                    try:
                        more = self._waiting.get_nowait()
                    except Empty:
                        break
                    rows += more[1]
                    answered.append(more[3])
                try:
                    publish(ctx, rows)
                except Exception:  # committed as handed over: resent at the receipt timeout
                    log.exception("%s: publishing just after the commit failed; what was not taken goes out again at its receipt timeout (a receipt: when its message comes again)", ctx.agency)
                finally:
                    for event in answered:
                        event.send(None)
        finally:
            self._running = False
            if not self._waiting.empty():
                self._running = True
                self._spawn(self._drain)


class Publishing(DependencyProvider):
    """One PublishQueue per node; workers get it."""

    def setup(self):
        self.queue = PublishQueue(lambda run: self.container.spawn_managed_thread(run, identifier="publisher"))

    def get_dependency(self, worker_ctx) -> PublishQueue:
        return self.queue
