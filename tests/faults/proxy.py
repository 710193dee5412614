"""A TCP proxy on loopback that the tests control: the network between a client and a
broker, with the faults a real network has.

- ``cut()``: every forwarded connection is reset at once, both ways, as when a link goes
  down and the peers learn it; with ``refuse=True`` new connections are reset as soon as
  they are accepted, until ``restore()``.
- ``stall()``: a silent partition. Nothing is reset and nothing is forwarded either way
  (or one way: ``to_server=False`` lets the client's bytes through and holds the
  server's); bytes wait (in the proxy and the kernels' buffers) and flow again after
  ``restore()``, as TCP retransmits after a short outage, or are dropped by a ``cut()``.
  A new connection hangs until then. A peer notices only through its own heartbeats.

Used as ``async with TcpProxy(port) as proxy`` or ``await TcpProxy(port).start()`` ...
``await proxy.close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from types import TracebackType

logger = logging.getLogger(__name__)

_CHUNK = 65536


class Link(enum.Enum):
    UP = "up"
    CUT = "cut"
    STALLED = "stalled"


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        """Connections accepted so far (refused ones included)."""
        self.link = Link.UP
        self._refusing = False
        self._to_server = asyncio.Event()
        self._to_server.set()
        self._to_client = asyncio.Event()
        self._to_client.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- faults --------------------------------------------------------------------------

    def cut(self, *, refuse: bool = False) -> None:
        """Reset every forwarded connection now (both sides); with ``refuse``, reset new
        ones too until ``restore()``."""
        self._refusing = refuse
        self.link = Link.CUT if refuse else Link.UP
        # A stalled link that is cut is cut: what waited to flow is dropped.
        self._to_server.set()
        self._to_client.set()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def stall(self, *, to_server: bool = True, to_client: bool = True) -> None:
        """Stop forwarding, silently, towards the server and/or towards the client, on
        every connection and on new ones."""
        self.link = Link.STALLED
        for stalled, flowing in ((to_server, self._to_server), (to_client, self._to_client)):
            if stalled:
                flowing.clear()

    def restore(self) -> None:
        """Forward again: new connections are accepted, stalled bytes flow."""
        self.link = Link.UP
        self._refusing = False
        self._to_server.set()
        self._to_client.set()

    # -- forwarding ----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._refusing:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:
            # Closing the proxy; asyncio's server would log a cancelled handler.
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._to_server.wait()
        await self._to_client.wait()
        if self._refusing:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            # Nothing listens behind the proxy (a server killed): the client sees a reset.
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        pumps = [
            asyncio.ensure_future(self._pump(reader, upstream_writer, self._to_server)),
            asyncio.ensure_future(self._pump(upstream_reader, writer, self._to_client)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for side in (writer, upstream_writer):
                side.close()
                self._writers.discard(side)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while True:
                data = await reader.read(_CHUNK)
                # Stalled: hold this chunk (and, by not reading, everything behind it),
                # the end of the stream included, until the link is restored.
                await flowing.wait()
                if not data or writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()

    async def close(self) -> None:
        self.restore()
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __repr__(self) -> str:
        return f"<TcpProxy :{self.port} -> {self.target_host}:{self.target_port} {self.link.value}>"
