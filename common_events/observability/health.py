"""Health probes (and Prometheus' ``/metrics``) on a port, beside a running service.

``HealthEndpoint`` is a ``ServiceCompanion``: ``run_service(..., companions=[endpoint])``
starts it before the listeners subscribe and closes it after they drained. It serves

- ``/livez``: 200 while the service's event loop runs callbacks: the loop itself must
  answer within ``liveness_timeout`` seconds, so a loop blocked by a synchronous call
  (or deadlocked) fails the probe and the orchestrator restarts the process;
- ``/readyz``: 200 once every listener has subscribed, while the connection is up;
  503 while starting, while the transport reconnects after an outage, once the
  connection is lost, and while draining at shutdown, so no traffic is routed to it;
- ``/metrics``: the text exposition of a Prometheus registry, when one is given (it
  needs the ``prometheus`` extra; nothing else here does).

The HTTP server runs in a thread of its own (the standard library's), not on the event
loop: a blocked loop still gets a clear 503 from ``/livez`` rather than a timeout, and
Prometheus can still scrape. What the thread needs of the service it asks the loop for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from common_events.core.service import RunningService

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry  # type: ignore[import-not-found, unused-ignore]

logger = logging.getLogger(__name__)

LIVENESS_PATH = "/livez"
READINESS_PATH = "/readyz"
METRICS_PATH = "/metrics"


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe's answer: ``ok``, and why not."""

    ok: bool
    detail: str

    @property
    def status(self) -> HTTPStatus:
        return HTTPStatus.OK if self.ok else HTTPStatus.SERVICE_UNAVAILABLE


def readiness(service: RunningService) -> Probe:
    """Whether ``service`` should receive traffic, and if not, why (read on its loop)."""
    lost = service.bus.lost
    if lost is not None:
        return Probe(False, f"connection lost: {lost}")
    if service.draining:
        return Probe(False, "draining: shutting down")
    if not service.bus.connected:
        return Probe(False, f"not connected to {service.bus.url} (reconnecting)")
    if not service.started:
        return Probe(False, "starting: listeners are subscribing")
    idle = [type(listener).__name__ for listener in service.listeners if not listener.listening]
    if idle:
        return Probe(False, "not subscribed: " + ", ".join(idle))
    return Probe(True, "ok")


class HealthEndpoint:
    """Serves ``/livez``, ``/readyz`` and (with a registry) ``/metrics`` on ``port``.

    ``port=0`` picks a free port (read ``port`` after ``start``). ``host`` defaults to
    every interface, as the kubelet probes the pod's address. ``liveness_timeout`` is how
    long the event loop may take to answer before ``/livez`` says it is stuck; keep it
    below the probe's ``timeoutSeconds``.
    """

    def __init__(
        self,
        port: int,
        *,
        host: str = "0.0.0.0",
        registry: CollectorRegistry | None = None,
        liveness_timeout: float = 1.0,
    ) -> None:
        if liveness_timeout <= 0:
            raise ValueError("liveness_timeout must be positive")
        self.host = host
        self._port = port
        self.registry = registry
        self.liveness_timeout = liveness_timeout
        self._metrics = _metrics_renderer(registry) if registry is not None else None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._service: RunningService | None = None

    @property
    def port(self) -> int:
        """The port served on (the one picked, when created with ``port=0``)."""
        return self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self._port}"

    async def start(self, service: RunningService) -> None:
        if self._server is not None:
            raise RuntimeError("the health endpoint is already serving")
        self._loop = asyncio.get_running_loop()
        self._service = service
        server = ThreadingHTTPServer((self.host, self._port), _handler_class(self))
        server.daemon_threads = True
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"common-events-health-{self._port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("health endpoint serving on %s:%d", self.host, self._port)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
            self._thread = None
        logger.info("health endpoint on port %d closed", self._port)

    # -- what the server thread asks ------------------------------------------------------

    def liveness(self) -> Probe:
        """Ask the loop to answer; called from the server thread."""
        answered = self._on_loop(lambda: Probe(True, "ok"))
        if answered is None:
            return Probe(
                False, f"the event loop did not answer within {self.liveness_timeout:g}s"
            )
        return answered

    def readiness(self) -> Probe:
        """Read the service's state on its loop; called from the server thread."""
        service = self._service
        if service is None:
            return Probe(False, "not started")
        answered = self._on_loop(lambda: readiness(service))
        if answered is None:
            return Probe(
                False, f"the event loop did not answer within {self.liveness_timeout:g}s"
            )
        return answered

    def metrics(self, accept: str | None) -> tuple[bytes, str] | None:
        """The exposition and its content type, or ``None`` without a registry."""
        if self._metrics is None:
            return None
        return self._metrics(accept)

    def _on_loop(self, call: Callable[[], Probe]) -> Probe | None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return None
        answer: concurrent.futures.Future[Probe] = concurrent.futures.Future()

        def run() -> None:
            try:
                answer.set_result(call())
            except BaseException as error:
                answer.set_exception(error)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop closed meanwhile
            return None
        try:
            return answer.result(timeout=self.liveness_timeout)
        except concurrent.futures.TimeoutError:
            return None

    def __repr__(self) -> str:
        return f"HealthEndpoint(host={self.host!r}, port={self._port})"


def _metrics_renderer(registry: CollectorRegistry) -> Callable[[str | None], tuple[bytes, str]]:
    try:
        from prometheus_client.exposition import (  # type: ignore[import-not-found, unused-ignore]
            choose_encoder,
        )
    except ImportError:
        raise ImportError(
            "serving /metrics needs prometheus-client: pip install 'common-events[prometheus]'"
        ) from None

    def render(accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        body: bytes = encoder(registry)
        return body, str(content_type)

    return render


def _handler_class(endpoint: HealthEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "common-events-health"

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == LIVENESS_PATH:
                self._probe(endpoint.liveness())
            elif path == READINESS_PATH:
                self._probe(endpoint.readiness())
            elif path == METRICS_PATH and (rendered := endpoint.metrics(
                self.headers.get("Accept")
            )) is not None:
                body, content_type = rendered
                self._send(HTTPStatus.OK, body, content_type)
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

        def _probe(self, probe: Probe) -> None:
            self._send(probe.status, f"{probe.detail}\n".encode(), "text/plain; charset=utf-8")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # A probe every few seconds is not worth a line at INFO.
            logger.debug("health endpoint: " + format, *args)

    return Handler
