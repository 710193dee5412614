"""Real brokers behind the placeholder URLs of the pages.

The pages show brokers as a reader's deployment names them (``stan://nats-srv:4222``);
the tests start a real server for each placeholder a page uses and run the page against
it. A broker URL in a block that is none of these fails the test: the page must use a
placeholder this module serves, or name the test that runs it.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import tokenize
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from common_events.testing.servers import (
    EmbeddedNatsCluster,
    EmbeddedNatsServer,
    StanServer,
    find_nats_server,
    find_stan_server,
)
from tests.support.servers import require_binary

STAN = "stan://nats-srv:4222"
"""A nats-streaming-server with cluster id ``ticketing``, as the reference system runs."""
JETSTREAM = "nats://nats-srv:4222"
"""A nats-server with JetStream."""
TLS = "tls://nats-srv:4222"
"""A nats-server with JetStream that speaks TLS only, its certificate signed by a CA whose
certificate is ``ca.pem`` in the page's directory."""
CLUSTER = "nats://a:4222,nats://b:4222,nats://c:4222"
"""Three nats-servers with JetStream joined by routes."""

PLACEHOLDERS = (CLUSTER, STAN, JETSTREAM, TLS)
BROKER_URL = re.compile(r"\b(?:stan|nats|tls|nats-streaming)://[^\s\"'`)<>]+")


def unserved_urls(source: str) -> list[str]:
    """Broker URLs in the strings of ``source`` (not its comments) that no placeholder
    covers."""
    strings = [
        token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.STRING or tokenize.tok_name[token.type] == "FSTRING_MIDDLE"
    ]
    rest = "\n".join(strings)
    for placeholder in PLACEHOLDERS:
        rest = rest.replace(placeholder, "")
    return BROKER_URL.findall(rest)


class Brokers:
    """Starts the servers behind the placeholders that some text uses, once each, and
    stops them all on ``close()``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.urls: dict[str, str] = {}
        self._stack = ExitStack()

    def serve(self, text: str, files_dir: Path) -> None:
        """Start what ``text`` needs; files its clients need (``ca.pem``) go to
        ``files_dir``."""
        starters: dict[str, Callable[[Path], str]] = {
            STAN: self._stan,
            JETSTREAM: self._jetstream,
            TLS: self._tls,
            CLUSTER: self._cluster,
        }
        for placeholder, start in starters.items():
            if placeholder in text and placeholder not in self.urls:
                self.urls[placeholder] = start(files_dir)
        if TLS in self.urls:
            shutil.copyfile(self.workdir / "tls" / "ca.pem", files_dir / "ca.pem")

    def replace(self, text: str) -> str:
        for placeholder in PLACEHOLDERS:  # the cluster first: it contains nats://
            if placeholder in self.urls:
                text = text.replace(placeholder, self.urls[placeholder])
        return text

    def _stan(self, _files: Path) -> str:
        server = StanServer(
            require_binary(find_stan_server), self.workdir / "stan", cluster_id="ticketing"
        )
        self._stack.callback(server.cleanup)
        server.start()
        return server.url

    def _nats(self, name: str, config: str = "") -> EmbeddedNatsServer:
        server = EmbeddedNatsServer(
            store_dir=self.workdir / name, config=config, binary=require_binary(find_nats_server)
        )
        self._stack.callback(server.cleanup)
        asyncio.run(server.start())
        return server

    def _jetstream(self, _files: Path) -> str:
        return self._nats("jetstream").url

    def _tls(self, _files: Path) -> str:
        from tests.jetstream.test_tls import make_certificates

        directory = self.workdir / "tls"
        directory.mkdir(parents=True, exist_ok=True)
        _ca, cert, key = make_certificates(directory)
        config = f'tls {{\n  cert_file: "{cert}"\n  key_file: "{key}"\n}}\n'
        server = self._nats("tls-store", config)
        return server.url.replace("nats://", "tls://")

    def _cluster(self, _files: Path) -> str:
        cluster = EmbeddedNatsCluster(
            self.workdir / "cluster", binary=require_binary(find_nats_server)
        )
        self._stack.callback(cluster.cleanup)
        asyncio.run(cluster.start())
        return cluster.url

    def close(self) -> None:
        self._stack.close()
