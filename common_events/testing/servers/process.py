"""One server child process: spawned with its log in a file, stopped and reaped for sure.

The servers run as children started with ``subprocess.Popen`` rather than asyncio's
subprocess API, so that they belong to no event loop: a test may start one in a fixture
and stop it in a finalizer that runs after the loop is gone.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from common_events.errors import CommonEventsError
from common_events.testing.servers.ports import free_loopback_port

__all__ = ["ServerNotFound", "ServerProcess", "ServerStartError", "Throwaway"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ServerNotFound(CommonEventsError, FileNotFoundError):
    """The server's binary is not installed; the message says how to get it."""


class ServerStartError(CommonEventsError, RuntimeError):
    """The server exited or did not become ready; the message holds its log tail."""


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent dies (Linux prctl).

    The kernel sends it when the *thread* that forked exits, so servers are spawned from
    the caller's thread, never from a worker thread that may end before the server.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _preexec() -> Callable[[], None] | None:
    return _die_with_parent if sys.platform == "linux" else None


class Throwaway(ABC):
    """``async with``: started on entry; stopped and cleaned up on exit, and also when
    the start itself failed (a server that never got ready is not left running)."""

    @abstractmethod
    async def _enter(self) -> None: ...

    @abstractmethod
    async def _exit(self) -> None: ...

    @abstractmethod
    def cleanup(self) -> None:
        """Stop what still runs (synchronously) and remove temporary directories."""

    async def __aenter__(self) -> Self:
        try:
            await self._enter()
        except BaseException:
            self.cleanup()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._exit()
        finally:
            self.cleanup()


class ServerProcess(Throwaway):
    """The process part of a throwaway server; subclasses know the command and readiness.

    The child runs in its own session, so a Ctrl-C meant for the test run or the demo
    reaches only the parent, whose clean-up stops the server; and (on Linux) it is killed
    if the parent dies without cleaning up, instead of lingering on the port.
    """

    PORT_ATTEMPTS = 3
    """Starts a first start makes when the ports it picked are taken before it binds."""

    port: int
    monitor_port: int

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._log_start = 0
        self._may_repick_ports = False

    def _choose_ports(self, port: int | None, monitor_port: int | None) -> None:
        """The given ports, or free ones. Ports picked here may be taken by another
        process before the server binds them (parallel test runs): a first start may then
        pick others and try again (``_repicked_ports``)."""
        self.port = port if port is not None else free_loopback_port()
        self.monitor_port = monitor_port if monitor_port is not None else free_loopback_port()
        self._may_repick_ports = port is None and monitor_port is None

    def _repicked_ports(self, error: Exception, attempt: int) -> bool:
        """After start ``attempt`` (from 0) failed with ``error``: whether it lost the race
        for ports this object picked, and other ports were picked to try again."""
        lost_race = "address already in use" in str(error)
        if not (lost_race and self._may_repick_ports) or attempt + 1 >= self.PORT_ATTEMPTS:
            return False
        self.port, self.monitor_port = free_loopback_port(), free_loopback_port()
        return True

    def _ports_in_use(self) -> None:
        """Started: once a client knows the ports, a restart must keep them."""
        self._may_repick_ports = False

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running child, or ``None`` when stopped."""
        return self._process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _spawn(self, command: Sequence[str], log_path: Path) -> None:
        if self.running:
            raise ServerStartError(f"{command[0]} is already running (pid {self.pid})")
        self._log_path = log_path
        self._log_start = log_path.stat().st_size if log_path.exists() else 0
        # The log goes to a file, not a pipe: nobody reads a pipe while the server runs,
        # and a full pipe would stall it. A restart appends to the same file.
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_preexec(),
            )
        logger.debug("started %s (pid %s)", Path(command[0]).name, self._process.pid)

    def log(self) -> str:
        """This run's server log (a restart appends to the same file)."""
        if self._log_path is None:
            return ""
        try:
            with self._log_path.open("rb") as log:
                log.seek(self._log_start)
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        text = self.log()
        return "\n".join(text.splitlines()[-lines:]) if text else "(no log)"

    async def _stop(self, grace: float) -> None:
        """``stop_now()`` that waits in a thread, so the event loop keeps running."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, grace)
            except subprocess.TimeoutExpired:
                logger.warning("pid %s ignored SIGTERM for %.0fs; killing it", process.pid, grace)
                process.kill()
                await asyncio.to_thread(process.wait)
        self._process = None

    def stop_now(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps. Synchronous, for
        finalizers that run without an event loop."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            logger.warning("pid %s ignored SIGTERM for %.0fs; killing it", process.pid, grace)
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: the server gets no chance to flush or say goodbye."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
