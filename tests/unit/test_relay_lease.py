"""The relay lease: a standby waits for a live holder, but a restarted node takes the lease at
once from a process of its own machine that is gone, rather than after the lease expires."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import timedelta

import pytest

from services.handlers.relay_lease import LEASE_NAME, RelayLease
from tests.fixtures.keys import FakeClock
from tests.support.inprocess_bus import InProcessBus, make_config

MS = "medical_security"


@pytest.fixture
def ctx(tmp_path):
    config, _ = make_config(tmp_path)
    bus = InProcessBus(config, FakeClock())
    try:
        yield bus.ctx(MS)
    finally:
        bus.close()


def _holder(ctx) -> str:
    with ctx.store.transaction() as repo:
        return repo.lease_holder(LEASE_NAME)


def test_a_live_holder_keeps_the_lease_and_a_second_one_waits(ctx):
    first, second = RelayLease(timedelta(seconds=60)), RelayLease(timedelta(seconds=60))
    assert first.hold(ctx) and not second.hold(ctx)
    assert _holder(ctx) == first.holder


def test_a_holder_of_another_host_is_never_taken_for_dead(ctx):
    with ctx.store.transaction() as repo:
        repo.take_lease(LEASE_NAME, "elsewhere:1:abcd", ctx.clock(), ctx.clock() + timedelta(seconds=60))
    assert not RelayLease(timedelta(seconds=60)).hold(ctx)


def test_a_dead_process_of_this_host_loses_the_lease_at_once(ctx):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    dead = f"{socket.gethostname()}:{dead_pid}:deadbeef"
    with ctx.store.transaction() as repo:
        repo.take_lease(LEASE_NAME, dead, ctx.clock(), ctx.clock() + timedelta(seconds=60))
    restarted = RelayLease(timedelta(seconds=60))
    assert restarted.hold(ctx)
    assert _holder(ctx) == restarted.holder


def test_an_earlier_process_with_our_own_pid_is_dead(ctx):
    """A container's node is PID 1 again after a restart: the lease of the PID 1 before it."""
    import os
    earlier = f"{socket.gethostname()}:{os.getpid()}:0ld0ld00"
    with ctx.store.transaction() as repo:
        repo.take_lease(LEASE_NAME, earlier, ctx.clock(), ctx.clock() + timedelta(seconds=60))
    assert RelayLease(timedelta(seconds=60)).hold(ctx)
