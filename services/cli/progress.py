"""Progress of a long wait, shown on stderr: one updating line on a terminal, else a line every
few seconds (so a log or CI output shows the wait is alive without being flooded).

Caller-driven and plain (no dependency): call ``update`` from the loop that does the work or
polls for it (it is cheap and throttles itself), and ``finish`` at the end. For one blocking
call that cannot report (a provisioning request, starting nodes), ``with progress.ticking():``
keeps the elapsed time moving from a background thread (a green thread under eventlet, which
runs while the call waits on the network). Standard output stays the command's result;
progress never goes there.

    from services.cli.progress import Progress

    with Progress("importing rows", total=len(rows)) as progress:
        for row in rows:
            import_row(row)
            progress.advance()                  # or progress.update(done=n, note="file 2 of 3")

    with Progress("waiting for the receipt") as progress:   # no total: elapsed time only
        while not receipted():
            progress.update()
            eventlet.sleep(0.1)

A terminal shows ``importing rows: 420/1000 (42%), 12 s, about 17 s left``, rewritten in place;
a file or pipe gets that line once per ``interval`` (5 s) and once more on ``finish``, which
ends with ``done in 29 s`` (or what ``finish(note=...)`` says). Leaving the ``with`` block by an
exception ends a line already shown with ``failed``, and adds none otherwise (the command's
error is then its one line).
``transient=True`` is for the many short waits of a command that prints its own result lines
(the demo's receipts): the final line is wiped from a terminal, and on a log it is written
only if the wait was long enough to have shown a line at all.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

TERMINAL_REFRESH_SECONDS = 0.1  # a terminal line is redrawn at most ten times a second
LOG_INTERVAL_SECONDS = 5.0  # elsewhere, one line every few seconds


class Progress:
    """One long wait's progress line. ``total`` known: count, percentage and time left;
    unknown (None): what is done so far, if anything was counted, and the time elapsed."""

    def __init__(self, label: str, total: int | None = None, *, stream: TextIO | None = None,
                 interval: float = LOG_INTERVAL_SECONDS, enabled: bool = True, transient: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.enabled = enabled
        self.transient = transient
        self.clock = clock
        self.done = 0
        self.note = ""
        self.started = clock()
        self._last_shown: float | None = None
        self._shown_width = 0
        self._finished = False
        try:
            self.terminal = bool(self.stream.isatty())
        except (AttributeError, ValueError):  # a closed or odd stream: treat as a log
            self.terminal = False

    # -- what callers use -----------------------------------------------------------------------
    def advance(self, count: int = 1, note: str | None = None) -> None:
        self.update(done=self.done + count, note=note)

    def update(self, done: int | None = None, note: str | None = None) -> None:
        """Record progress; shows it when the throttle allows."""
        if done is not None:
            self.done = done
        if note is not None:
            self.note = note
        now = self.clock()
        wait = TERMINAL_REFRESH_SECONDS if self.terminal else self.interval
        if self._last_shown is None:
            # Nothing shown yet: a log gets its first line after one interval, so that a wait
            # that ends quickly says nothing but its final line.
            due = now - self.started >= wait
        else:
            due = now - self._last_shown >= wait
        if due:
            self._show(self.line(now))

    def finish(self, note: str | None = None) -> None:
        """The final line (always shown, once): ``done in 12 s`` unless ``note`` says otherwise."""
        if self._finished:
            return
        self._finished = True
        if self.transient:
            if self._last_shown is not None and self.terminal and self.enabled:
                self._write("\r" + " " * self._shown_width + "\r")
                return
            if self._last_shown is None:
                return  # a short wait: nothing to say
        now = self.clock()
        ending = note if note is not None else f"done in {format_seconds(now - self.started)}"
        self._show(f"{self.label}: {self._count_text()}{', ' if self._count_text() else ''}{ending}", final=True)

    @contextmanager
    def ticking(self) -> Iterator["Progress"]:
        """Keep the line moving while the body blocks in one call that cannot report."""
        stop = threading.Event()

        def tick():
            while not stop.wait(TERMINAL_REFRESH_SECONDS if self.terminal else 1.0):
                self.update()
        ticker = threading.Thread(target=tick, name=f"progress: {self.label}", daemon=True)
        ticker.start()
        try:
            yield self
        finally:
            stop.set()
            ticker.join()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        elif self._last_shown is None:
            self._finished = True  # failed before saying anything: the error says it all, in one line
        else:
            self.finish("interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed")

    # -- the text -------------------------------------------------------------------------------
    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = now - self.started
        parts = [self._count_text(), format_seconds(elapsed)]
        if self.total and 0 < self.done < self.total and elapsed > 0:
            left = elapsed * (self.total - self.done) / self.done
            parts.append(f"about {format_seconds(left)} left")
        text = f"{self.label}: {', '.join(p for p in parts if p)}"
        return f"{text} — {self.note}" if self.note else text

    def _count_text(self) -> str:
        if self.total is not None:
            share = f" ({100 * self.done // self.total}%)" if self.total > 0 else ""
            return f"{self.done}/{self.total}{share}"
        return f"{self.done} done" if self.done else ""

    def _show(self, text: str, final: bool = False) -> None:
        self._last_shown = self.clock()
        if not self.enabled:
            return
        if self.terminal:
            padding = " " * max(0, self._shown_width - len(text))  # wipe a longer previous line
            self._write(f"\r{text}{padding}" + ("\n" if final else ""))
            self._shown_width = 0 if final else len(text)
        else:
            self._write(text + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: progress is not worth failing for
            self.enabled = False


def format_seconds(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
