"""What a NATS Streaming connection is called, and what becomes of headers it cannot send."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common_events import ConfigurationError, Publisher, TicketCreatedEvent
from common_events import connect as connect_bus
from common_events.transports.base import SubscriptionOptions
from common_events.transports.stan import StanTransport, connect
from common_events.transports.stan.transport import default_client_id
from tests.fixtures.stan import StanServer
from tests.support.collect import Collector

RANDOM_PART = r"[0-9a-f]{16}"


async def test_a_named_service_is_told_apart_and_each_instance_is_unique(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    for _ in range(2):
        transports.append(await connect(stan_server.url, name="tickets-service"))
    ids = [transport.client_id for transport in transports]
    assert all(re.fullmatch(rf"tickets-service-{RANDOM_PART}", id_) for id_ in ids), ids
    assert ids[0] != ids[1]
    assert stan_server.client_ids() == set(ids)
    # The NATS connection carries the same name, for nats-server's /connz.
    with_names = stan_server.monitor("/connz").get("connections") or []
    assert set(ids) <= {connection.get("name") for connection in with_names}


async def test_an_explicit_client_id_wins_over_the_name(
    stan_server: StanServer, transports: list[StanTransport]
) -> None:
    transports.append(await connect(stan_server.url, name="tickets", client_id="tickets-7f3a"))
    assert transports[0].client_id == "tickets-7f3a"


async def test_a_name_that_cannot_start_a_client_id_is_refused_before_connecting() -> None:
    # Port 1: nothing listens there, so only the check can answer.
    with pytest.raises(ConfigurationError, match=r"name 'tickets service' cannot start"):
        await connect("stan://127.0.0.1:1", name="tickets service")


@pytest.mark.parametrize(
    ("layout", "command", "expected"),
    [
        ({"tickets_service/__init__.py": "", "tickets_service/__main__.py": "{probe}"},
         ["-m", "tickets_service"], "tickets-service"),
        ({"orders_worker.py": "{probe}"}, ["orders_worker.py"], "orders-worker"),
        ({}, ["-c", "{probe}"], "common-events"),
    ],
)  # fmt: skip
def test_without_a_name_the_client_id_starts_with_the_program_s_name(
    tmp_path: Path, layout: dict[str, str], command: list[str], expected: str
) -> None:
    probe = (
        "from common_events.transports.stan.transport import default_client_id; "
        "print(default_client_id())"
    )
    for relative, text in layout.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text.format(probe=probe))
    argv = [part.format(probe=probe) for part in command]
    result = subprocess.run(
        [sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"{expected}-{RANDOM_PART}", result.stdout.strip()), result.stdout


def test_a_given_name_starts_the_default_client_id() -> None:
    assert re.fullmatch(rf"payments-{RANDOM_PART}", default_client_id("payments"))


async def test_headers_are_not_sent_and_said_once_at_warning(
    stan_server: StanServer, caplog: pytest.LogCaptureFixture
) -> None:
    class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
        pass

    event = TicketCreatedEvent(id="t1", version=0, title="Concert", price=20, user_id="u1")
    received = Collector()
    async with await connect_bus(stan_server.url, name="tickets") as bus:
        await bus.subscribe("ticket:created", received, SubscriptionOptions())
        caplog.set_level(logging.DEBUG, logger="common_events")
        publisher = TicketCreatedPublisher(bus)
        for _ in range(3):
            await publisher.publish(event, headers={"traceparent": "00-secret-value-01"})
        (first, *_) = await received.wait_for_count(3)

    warned = [
        record
        for record in caplog.records
        if record.name == "common_events.transports.stan.transport"
        and record.levelno == logging.WARNING
    ]
    assert len(warned) == 1, [record.getMessage() for record in caplog.records]
    message = warned[0].getMessage()
    assert "no message headers" in message and "traceparent" in message
    assert "secret-value" not in message
    # Only the payload travelled, the wire JSON as the Node services read it.
    assert dict(first.headers) == {}
    assert json.loads(first.data)["userId"] == "u1"
