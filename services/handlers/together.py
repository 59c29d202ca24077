"""A node's waiting calls and the deliveries it has checked, in one transaction.

The sender of a transfer writes twice per round trip: the call that composes it, and the
receipt that comes back. Taken apart, each pays its own BEGIN, lookups and fsync'd commit,
and on SQLite (one writer) the receipt waits behind the next call's commit. Taken together
they share one commit. The result is what the same work would give done one after the
other, calls first: the deliveries are decided after the calls' writes, in the same
transaction, so each sees what the calls changed."""

from __future__ import annotations

from adapters.storage.exceptions import DuplicateRequest

from . import receiving, sending
from .context import NodeContext
from .requests import Sent
from .sending import Call, Refused


def commit_together(ctx: NodeContext, calls: list[Call],
                    batches: list[receiving.CheckedBatch]) -> tuple[list[Sent | Refused], list]:
    """Stage ``calls`` (each refused alone, as sending.staged_many) and decide ``batches``
    (in order), then commit once. The calls' results, and each batch's decided form
    (``.results()`` gives its outcomes). Any error rolls back everything: the caller then
    takes the calls and the batches apart."""
    for attempt in (1, 2):
        try:
            with ctx.store.transaction() as repo:
                results = sending.stage_calls(ctx, repo, calls) if calls else []
                decided = [receiving.decide_batch(ctx, repo, batch) for batch in batches]
            return results, decided
        except DuplicateRequest:  # a concurrent call with one of these ids committed first
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
