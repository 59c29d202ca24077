"""One relay per node: the process that holds the node's relay lease (a row in its own
database) publishes its outbox; a second process started for the same agency waits as a
standby and takes over when the lease expires (at most LEASE seconds after the first
stopped or stalled). Without it, two processes would publish the same entries twice and
count attempts twice."""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import timedelta

from .context import NodeContext

LEASE_NAME = "outbox.relay"

# Holders made in this process: another with our pid is an earlier process (a container's
# PID 1 after a restart) only when it is not one of these (tests run two nodes in one process).
_HOLDERS_HERE: set[str] = set()


class RelayLease:
    def __init__(self, ttl: timedelta = timedelta(seconds=10), holder: str | None = None):
        self.ttl = ttl
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        _HOLDERS_HERE.add(self.holder)
        self._valid_until = 0.0   # time.monotonic() until which we hold it for sure

    def hold(self, ctx: NodeContext) -> bool:
        """True when this process may relay now; renews the lease when a third of it is gone."""
        left = self._valid_until - time.monotonic()
        if left > self.ttl.total_seconds() * 2 / 3:
            return True
        now = ctx.clock()
        started = time.monotonic()
        with ctx.store.transaction() as repo:
            ours = repo.take_lease(LEASE_NAME, self.holder, now, now + self.ttl)
            if not ours:
                # A process of this machine that is gone (killed, restarted) holds it: take it
                # now rather than after it expires.
                previous = repo.lease_holder(LEASE_NAME)
                if previous and self._holder_is_dead(previous):
                    ours = repo.take_lease_from(LEASE_NAME, previous, self.holder, now + self.ttl)
        self._valid_until = started + self.ttl.total_seconds() if ours else 0.0
        return ours

    def _holder_is_dead(self, holder: str) -> bool:
        """Whether ``holder`` (host:pid:nonce) names a process of this host that no longer
        runs. Another host's process, or a pid that runs (perhaps reused), counts as alive."""
        host, _, rest = holder.partition(":")
        pid_text = rest.partition(":")[0]
        if host != socket.gethostname() or not pid_text.isdigit() or holder in _HOLDERS_HERE:
            return False
        pid = int(pid_text)
        if pid == os.getpid():
            return True   # our pid, yet not made here: an earlier process with our pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # it runs, under another user
        return False

    @property
    def holding(self) -> bool:
        return self._valid_until > time.monotonic()

    def release_in(self, store) -> None:
        """Let a standby take over at once (a clean stop)."""
        self._valid_until = 0.0
        with store.transaction() as repo:
            repo.release_lease(LEASE_NAME, self.holder)
