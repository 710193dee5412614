"""Progress of a copy, per subject: copied / total, rate, time left.

On a terminal one line per subject is rewritten in place; otherwise (a log file, CI) a
plain line is written now and then and once at the end of each subject.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol, TextIO

logger = logging.getLogger(__name__)


class Progress(Protocol):
    def start(self, subject: str, total: int) -> None: ...

    def advance(self, subject: str, done: int) -> None:
        """``done`` of ``total`` are handled (copied, or found copied already)."""
        ...

    def finish(self, subject: str, done: int) -> None: ...


class _Meter:
    __slots__ = ("done", "started", "subject", "total")

    def __init__(self, subject: str, total: int) -> None:
        self.subject = subject
        self.total = total
        self.done = 0
        self.started = time.monotonic()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        percent = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{self.subject}: {self.done}/{self.total} ({percent:.0f}%), "
            f"{rate:,.0f} msg/s, {_duration(left)} left"
        )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class TerminalProgress:
    """Rewrites one line in place, at most ``per_second`` times a second."""

    def __init__(self, stream: TextIO, per_second: float = 10.0) -> None:
        self._stream = stream
        self._interval = 1.0 / per_second
        self._meter: _Meter | None = None
        self._shown = 0.0

    def start(self, subject: str, total: int) -> None:
        self._meter = _Meter(subject, total)
        self._show(force=True)

    def advance(self, subject: str, done: int) -> None:
        if self._meter is not None:
            self._meter.done = done
            self._show()

    def finish(self, subject: str, done: int) -> None:
        if self._meter is not None:
            self._meter.done = done
            self._show(force=True)
            self._stream.write("\n")
            self._stream.flush()
            self._meter = None

    def _show(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown < self._interval:
            return
        self._shown = now
        assert self._meter is not None
        self._stream.write("\r\x1b[2K" + self._meter.line())
        self._stream.flush()


class PlainProgress:
    """A plain line every ``every`` seconds while a subject is copied, and at its end."""

    def __init__(self, stream: TextIO, every: float = 5.0) -> None:
        self._stream = stream
        self._every = every
        self._meter: _Meter | None = None
        self._shown = 0.0

    def start(self, subject: str, total: int) -> None:
        self._meter = _Meter(subject, total)
        self._shown = time.monotonic()
        self._write(f"{subject}: {total} message(s) to read")

    def advance(self, subject: str, done: int) -> None:
        if self._meter is None:
            return
        self._meter.done = done
        if time.monotonic() - self._shown >= self._every:
            self._shown = time.monotonic()
            self._write(self._meter.line())

    def finish(self, subject: str, done: int) -> None:
        if self._meter is not None:
            self._meter.done = done
            self._write(self._meter.line())
            self._meter = None

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()


class NoProgress:
    def start(self, subject: str, total: int) -> None:
        pass

    def advance(self, subject: str, done: int) -> None:
        pass

    def finish(self, subject: str, done: int) -> None:
        pass


def progress_for(stream: TextIO) -> Progress:
    """In place on a terminal, plain lines otherwise."""
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        return TerminalProgress(stream)
    return PlainProgress(stream)
