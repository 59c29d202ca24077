"""services/cli/progress.py: an updating line on a terminal, a line every few seconds elsewhere."""

from __future__ import annotations

import io

import pytest

from services.cli.progress import Progress, format_seconds


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_a_line_per_interval_and_a_final_line():
    clock, out = FakeClock(), io.StringIO()
    progress = Progress("importing rows", total=10, stream=out, interval=5, clock=clock)
    for second in range(12):
        clock.now += 1
        progress.advance()
    progress.finish()
    lines = out.getvalue().splitlines()
    # Lines at 5 s and 10 s, then the final one; nothing in between.
    assert lines[0] == "importing rows: 5/10 (50%), 5.0 s, about 5.0 s left"
    assert lines[1].startswith("importing rows: 10/10 (100%), 10 s")
    assert lines[-1] == "importing rows: 12/10 (120%), done in 12 s"
    assert len(lines) == 3


def test_a_quick_wait_on_a_log_prints_only_its_final_line():
    clock, out = FakeClock(), io.StringIO()
    with Progress("waiting for the receipt", stream=out, clock=clock) as progress:
        clock.now += 0.5
        progress.update()
    assert out.getvalue() == "waiting for the receipt: done in 0.5 s\n"


def test_a_terminal_line_is_rewritten_in_place_and_ended_by_finish():
    clock, out = FakeClock(), Terminal()
    progress = Progress("sending", stream=out, clock=clock)
    clock.now += 1
    progress.update(done=3, note="a much longer note than later")
    clock.now += 1
    progress.update(done=4)
    progress.update(done=5)  # within the refresh throttle: not drawn
    progress.finish("failed")
    text = out.getvalue()
    assert text.startswith("\rsending: 3 done, 1.0 s — a much longer note than later")
    # The second draw wipes what was longer before it; finish ends the line.
    second = text.split("\r")[2]
    assert second.startswith("sending: 4 done, 2.0 s — a much longer note than later")
    assert text.endswith("\rsending: 5 done, failed" + " " * (len(second) - len("sending: 5 done, failed")) + "\n")
    assert text.count("\n") == 1


def test_an_exception_ends_a_shown_line_with_failed_and_finish_is_shown_once():
    clock, out = FakeClock(), io.StringIO()
    with pytest.raises(RuntimeError):
        with Progress("setting up", stream=out, interval=5, clock=clock) as progress:
            clock.now += 6
            progress.update()
            raise RuntimeError("boom")
    progress.finish()
    assert out.getvalue() == "setting up: 6.0 s\nsetting up: failed\n"


def test_an_exception_before_anything_was_shown_adds_no_line():
    # The command's error is then its only line (cluebus errors are one line).
    clock, out = FakeClock(), io.StringIO()
    with pytest.raises(RuntimeError):
        with Progress("setting up", stream=out, clock=clock) as progress:
            raise RuntimeError("boom")
    progress.finish()
    assert out.getvalue() == ""


def test_disabled_or_closed_streams_print_nothing_and_never_raise():
    clock, out = FakeClock(), io.StringIO()
    with Progress("quiet", stream=out, enabled=False, clock=clock) as progress:
        clock.now += 60
        progress.update()
    assert out.getvalue() == ""
    closed = io.StringIO()
    closed.close()
    with Progress("gone", stream=closed, clock=clock) as progress:
        clock.now += 60
        progress.update()


def test_zero_total_has_no_percentage():
    clock, out = FakeClock(), io.StringIO()
    Progress("nothing to do", total=0, stream=out, clock=clock).finish()
    assert out.getvalue() == "nothing to do: 0/0, done in 0.0 s\n"


@pytest.mark.parametrize("seconds, text", [(0.42, "0.4 s"), (12.4, "12 s"), (185, "3 min 05 s"),
                                           (3725, "1 h 02 min")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_a_transient_wait_leaves_nothing_when_short_and_wipes_its_terminal_line():
    clock, log = FakeClock(), io.StringIO()
    with Progress("waiting for the receipt", stream=log, transient=True, clock=clock) as progress:
        clock.now += 1
        progress.update()
    assert log.getvalue() == ""
    terminal = Terminal()
    with Progress("waiting for the receipt", stream=terminal, transient=True, clock=clock) as progress:
        clock.now += 1
        progress.update()
    drawn = "\rwaiting for the receipt: 1.0 s"
    assert terminal.getvalue() == drawn + "\r" + " " * (len(drawn) - 1) + "\r"


def test_a_transient_wait_long_enough_to_be_logged_is_logged_to_its_end():
    clock, log = FakeClock(), io.StringIO()
    with Progress("waiting for the receipt", stream=log, transient=True, interval=5, clock=clock) as progress:
        clock.now += 6
        progress.update()
    assert log.getvalue().splitlines() == ["waiting for the receipt: 6.0 s", "waiting for the receipt: done in 6.0 s"]


def test_ticking_moves_the_line_while_a_call_blocks():
    import threading
    drawn = threading.Event()

    class Watched(Terminal):
        def write(self, text):
            drawn.set()
            return super().write(text)
    out = Watched()
    progress = Progress("starting the nodes", stream=out)
    with progress.ticking():
        assert drawn.wait(10), "the ticker never drew the line"
    progress.finish()
    assert out.getvalue().startswith("\rstarting the nodes: ")
    assert out.getvalue().endswith("\n")
