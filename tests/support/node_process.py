"""A Node child process that reports what it does as JSON lines on its stdout.

The Node peers and services of the interop, migration and TypeScript tests print one
JSON object a line, each with an ``event`` (``ready``, ``message``, ``published``,
``error``...). ``JsonLineProcess`` reads them as they come, waits for a state of them
with a timeout, and stops the process at teardown. Its stderr is not read: it goes where
the test's own goes, and pytest shows it with a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from tests.support.servers import missing

ROOT = Path(__file__).resolve().parents[2]


class JsonLineProcess:
    """One child process and the JSON lines it reported, in order; when its stdout
    closes, a last record ``{"event": "exit"}``."""

    name = "the Node process"
    """What error messages call it."""
    within = 15.0
    """Seconds ``wait_until`` waits unless told."""
    stop_grace = 5.0
    """Seconds ``stop`` gives it after SIGTERM before SIGKILL."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self.observers: list[Callable[[], None]] = []
        """Called on every line the process reports."""
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *command: str | Path, cwd: Path) -> Self:
        """Run ``command`` in ``cwd`` with a stdin it can wait on and stdout read here."""
        process = await asyncio.create_subprocess_exec(
            *(str(part) for part in command),
            cwd=cwd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            event = json.loads(line)
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()
            for observer in self.observers:
                observer()
        async with self._changed:
            self.events.append({"event": "exit"})
            self._changed.notify_all()

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == kind]

    async def wait_until(
        self, predicate: Callable[[Self], bool], within: float | None = None
    ) -> None:
        """Until ``predicate(self)`` holds, at most ``within`` seconds (``TimeoutError``).
        An ``error`` record, or the process ending first, fails at once with its records."""

        def done() -> bool:
            if self.of_kind("error"):
                raise AssertionError(f"{self.name} reported {self.of_kind('error')}")
            if predicate(self):
                return True
            if self.of_kind("exit"):
                raise AssertionError(f"{self.name} exited early: {self.events}")
            return False

        async with asyncio.timeout(self.within if within is None else within), self._changed:
            await self._changed.wait_for(done)

    async def stop(self) -> None:
        """SIGTERM (the process closes its connection), SIGKILL if it lingers; reaps."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), self.stop_grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def node_installed(needed_for: str, install: Path, modules: Path, *packages: str) -> Path:
    """The ``node`` binary, once each of ``packages`` is in ``modules``: ``install`` (a
    bash script) puts them there when one is missing. Without node and npm, or when the
    script fails, the test is skipped (or fails under COMMON_EVENTS_REQUIRE_SERVERS=1)."""
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        missing(f"node and npm are needed for {needed_for} (Node 18 or later)")
    if not all((modules / name).is_dir() for name in packages):
        result = subprocess.run(
            ["bash", str(install)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            shown = install.resolve().relative_to(ROOT)
            missing(f"{shown} failed:\n{result.stdout}\n{result.stderr}")
    assert node is not None
    return Path(node)
