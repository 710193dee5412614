"""The ``tls`` option reaches a streaming server that only speaks TLS."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from common_events.errors import ConnectError
from common_events.transports.base import SubscriptionOptions
from common_events.transports.stan import StanTransport, connect
from tests.fixtures.stan import ServerFactory
from tests.support.collect import Collector
from tests.support.servers import missing


def certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A one-day CA and a certificate for 127.0.0.1 signed by it (openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("openssl is needed to make the test certificates")
    assert openssl is not None
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, request, cert = directory / "srv.key", directory / "srv.csr", directory / "srv.pem"
    san = directory / "san.ext"
    san.write_text("subjectAltName=IP:127.0.0.1\n")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509", *new_key, "-keyout", ca_key, "-out", ca, "-days", "1",
         "-subj", "/CN=stan test CA"],
        ["req", *new_key, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "1", "-extfile", san],
    ):  # fmt: skip
        subprocess.run([openssl, *map(str, command)], check=True, capture_output=True)
    return ca, cert, key


async def test_tls_server_is_reached_with_its_ca_and_refused_without(
    stan_server_factory: ServerFactory, tmp_path: Path, transports: list[StanTransport]
) -> None:
    ca, cert, key = certificates(tmp_path)
    server = stan_server_factory(
        extra_args=(
            "--tls", "--tlscert", str(cert), "--tlskey", str(key),
            # The streaming part is itself a client of its NATS server.
            "-tls_client_cacert", str(ca),
        )
    )  # fmt: skip

    with pytest.raises(ConnectError):
        await connect(server.url, tls=ssl.create_default_context(), connect_timeout=1)

    transport = await connect(server.url, tls=ssl.create_default_context(cafile=str(ca)))
    transports.append(transport)
    collector = Collector()
    await transport.subscribe("ticket:created", collector, SubscriptionOptions())
    await transport.publish("ticket:created", b"{}")
    assert (await collector.wait_for_count(1))[0].data == b"{}"
