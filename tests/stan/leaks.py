"""Looking for a secret where it must never be, and a TCP proxy that cuts connections.

``assert_secret_nowhere`` formats every captured log record (message, arguments,
traceback) and every object or exception handed to it (``str``, ``repr``, the whole
chained traceback) and fails on the first that contains the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from collections.abc import Iterable

_FORMATTER = logging.Formatter("%(name)s %(levelname)s %(message)s")


def new_secret(kind: str = "pw") -> str:
    """A secret no source line contains, so a traceback cannot show it by accident."""
    return f"{kind}-{os.urandom(6).hex()}"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def texts_of(value: object) -> list[str]:
    """Everything a person could read of ``value``."""
    texts = [str(value), repr(value)]
    if isinstance(value, BaseException):
        texts.append("".join(traceback.format_exception(value)))
    return texts


def record_texts(record: logging.LogRecord) -> list[str]:
    texts = [_FORMATTER.format(record), record.getMessage(), repr(record.args)]
    if record.exc_info and record.exc_info[1] is not None:
        texts.extend(texts_of(record.exc_info[1]))
    return texts


def assert_secret_nowhere(
    secret: str, records: Iterable[logging.LogRecord], *values: object
) -> None:
    for record in records:
        for text in record_texts(record):
            assert secret not in text, f"secret in a log record of {record.name}: {text}"
    for value in values:
        for text in texts_of(value):
            assert secret not in text, f"secret in {type(value).__name__}: {text}"


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``; ``cut()`` drops every connection
    as a broken network would, and new connections are forwarded again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            return
        self._writers.update((writer, upstream_writer))
        pumps = [
            asyncio.ensure_future(self._pump(reader, upstream_writer)),
            asyncio.ensure_future(self._pump(upstream_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for side in (writer, upstream_writer):
            side.close()
            self._writers.discard(side)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    def cut(self) -> None:
        """Close every forwarded connection at once (both sides)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
