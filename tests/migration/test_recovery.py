"""The crash windows of the bridge's JetStream-to-STAN direction, made on purpose: the
publish to STAN happened (or not) and the bridge died before acknowledging on
JetStream. The intent in the ledger settles both without a double or a loss. And the
copy's progress display."""

from __future__ import annotations

import asyncio
import hashlib
import io

import pytest

from common_events.migration.bridge import Bridge, BridgeOptions
from common_events.migration.bridge.intents import Intent, Ledger
from common_events.migration.progress import PlainProgress, TerminalProgress, progress_for
from common_events.testing.servers import EmbeddedNatsServer, StanServer
from common_events.transports.jetstream import JetStreamTransport
from common_events.transports.stan import StanTransport
from tests.migration.conftest import until
from tests.migration.events import payload

pytestmark = pytest.mark.timeout(60)


def options(stan: StanServer, nats_server: EmbeddedNatsServer) -> BridgeOptions:
    return BridgeOptions(
        stan.url,
        stan.cluster_id,
        nats_server.url,
        to_stan=("order:created",),
        monitor_url=stan.monitor_url,
        ack_wait=1.0,
    )


def channel_messages(stan: StanServer) -> int:
    channel = stan.monitor("/streaming/channelsz?channel=order:created")
    return int(channel.get("msgs", 0))


@pytest.mark.parametrize("published_before_the_crash", [True, False])
async def test_a_publish_of_unknown_outcome_is_looked_up_on_the_channel(
    stan: StanServer,
    stan_client: StanTransport,
    nats_server: EmbeddedNatsServer,
    js: JetStreamTransport,
    published_before_the_crash: bool,
) -> None:
    bridge = Bridge(options(stan, nats_server))
    await bridge.start()  # makes the consumer and the ledger
    await bridge.stop()
    await stan_client.publish("order:created", payload("order:created", "older"))

    data = payload("order:created", "in-flight")
    ack = await js.publish("order:created", data)
    assert ack.sequence is not None
    # What the bridge did before it died: the intent, and maybe the publish.
    ledger = await Ledger.open(js)
    await ledger.write(
        "order:created", Intent(ack.sequence, hashlib.sha256(data).hexdigest(), floor=1)
    )
    if published_before_the_crash:
        await stan_client.publish("order:created", data)

    bridge = Bridge(options(stan, nats_server))
    await bridge.start()
    try:
        stats = bridge.stats["order:created -> NATS Streaming"]
        await until(lambda: stats.forwarded + stats.skipped == 1, 20)
        later = payload("order:created", "later")
        await js.publish("order:created", later)
        await until(lambda: stats.forwarded + stats.skipped == 2, 20)
    finally:
        await bridge.stop()
    assert channel_messages(stan) == 3  # older, in-flight once, later
    assert stats.skipped == (1 if published_before_the_crash else 0)


async def test_the_copy_shows_progress_in_place_on_a_terminal_and_in_lines_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    shown = progress_for(terminal)
    assert isinstance(shown, TerminalProgress)
    shown.start("ticket:created", 100)
    shown.advance("ticket:created", 50)
    shown.finish("ticket:created", 100)
    assert "\r" in terminal.getvalue()
    assert "ticket:created: 100/100 (100%)" in terminal.getvalue()

    log = io.StringIO()
    plain = progress_for(log)
    assert isinstance(plain, PlainProgress)
    plain.start("order:created", 10)
    plain.finish("order:created", 10)
    lines = log.getvalue().splitlines()
    assert lines[0] == "order:created: 10 message(s) to read"
    assert lines[-1].startswith("order:created: 10/10 (100%),")
    assert "\r" not in log.getvalue()
    await asyncio.sleep(0)
