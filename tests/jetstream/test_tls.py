"""TLS options go to nats-py: a server with its own CA is reached with that CA only."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from common_events.errors import ConnectError
from common_events.testing.servers import EmbeddedNatsServer
from common_events.transports.jetstream import JetStreamTransport
from tests.support.servers import missing

Connect = Callable[..., Awaitable[JetStreamTransport]]
ServerFactory = Callable[..., Awaitable[EmbeddedNatsServer]]


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("openssl is needed to make test certificates")
    assert openssl is not None
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    server_key, server_csr = directory / "server.key", directory / "server.csr"
    server_cert, extensions = directory / "server.pem", directory / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n", encoding="ascii")
    days = ["-days", "1"]
    ca_subject = ["-subj", "/CN=common-events test CA"]
    sign = ["-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-extfile", extensions]
    commands = [
        [openssl, "req", "-x509", *key, "-keyout", ca_key, "-out", ca_cert, *days, *ca_subject],
        [openssl, "req", *key, "-keyout", server_key, "-out", server_csr, "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", server_csr, *sign, "-out", server_cert, *days],
    ]
    for command in commands:
        subprocess.run([str(part) for part in command], check=True, capture_output=True)
    return ca_cert, server_cert, server_key


async def test_a_tls_server_is_reached_with_its_ca_and_refused_without(
    tmp_path: Path, nats_server_factory: ServerFactory, jetstream_connect: Connect
) -> None:
    ca_cert, server_cert, server_key = make_certificates(tmp_path)
    server = await nats_server_factory(
        f'tls {{\n  cert_file: "{server_cert}"\n  key_file: "{server_key}"\n}}\n'
    )
    url = server.url.replace("nats://", "tls://")

    with pytest.raises(ConnectError, match=r"TLS .* failed .*CERTIFICATE_VERIFY_FAILED"):
        await jetstream_connect(url, connect_timeout=2.0)

    context = ssl.create_default_context(cafile=str(ca_cert))
    transport = await jetstream_connect(url, tls=context)
    assert (await transport.publish("payment:created", b"{}")).sequence == 1
