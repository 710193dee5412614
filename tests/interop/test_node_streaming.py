"""Python services and a Node service (node-nats-streaming 0.3.2) on one STAN cluster."""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import common_events
from common_events.contracts.samples import sample_events
from common_events.core.bus import Bus
from common_events.core.dead_letter import DeadLetter, DeadLetterReason, dead_letter_subject
from common_events.core.listener import Listener
from common_events.core.message import Message
from common_events.core.publisher import Publisher
from common_events.events import Event, Subjects, TicketCreatedEvent
from common_events.transports.base import SubscriptionOptions
from tests.fixtures.stan import StanServer
from tests.interop.conftest import NodePeers
from tests.support.collect import Collector

SAMPLES = sample_events()
ALL_SUBJECTS = [subject.value for subject in SAMPLES]


class Received:
    """Events Python listeners handled, and waiting for them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.observers: list[Callable[[], None]] = []
        self._changed = asyncio.Condition()

    async def add(self, event: Event) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()
        for observer in self.observers:
            observer()

    async def wait_for(self, count: int, within: float = 15.0) -> list[Event]:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.events) >= count)
        return self.events


def listener_class(event_type: type[Event], queue_group: str) -> type[Listener[Any]]:
    """A listener of ``event_type`` that records what it handles and acks."""

    async def on_message(self: Any, event: Event, msg: Message) -> None:
        await self.received.add(event)
        await msg.ack()

    def body(namespace: dict[str, Any]) -> None:
        namespace.update(queue_group=queue_group, on_message=on_message)

    return types.new_class(
        f"{event_type.__name__}Recorder", (Listener[event_type],), exec_body=body  # type: ignore[valid-type]
    )


def publisher_class(event_type: type[Event]) -> type[Publisher[Any]]:
    return types.new_class(f"{event_type.__name__}Publisher", (Publisher[event_type],))  # type: ignore[valid-type]


@pytest.fixture
async def bus(stan_server: StanServer) -> AsyncIterator[Bus]:
    bus = await common_events.connect(
        stan_server.url, cluster_id=stan_server.cluster_id, client_id="python-service-1"
    )
    yield bus
    await bus.close()


@pytest.fixture
async def listeners() -> AsyncIterator[list[Listener[Any]]]:
    running: list[Listener[Any]] = []
    yield running
    for listener in running:
        await listener.close(drain_timeout=1)


async def start_listener(
    bus: Bus, event_type: type[Event], queue_group: str, received: Received,
    running: list[Listener[Any]],
) -> Listener[Any]:
    listener = listener_class(event_type, queue_group)(bus)
    listener.received = received  # type: ignore[attr-defined]
    running.append(await listener.listen())
    return listener


async def test_node_receives_every_event_python_publishes_byte_for_byte(
    node_peers: NodePeers, bus: Bus
) -> None:
    node = await node_peers.listen("node-listener", "node-service", ALL_SUBJECTS)

    sent: dict[str, bytes] = {}
    for subject, event in SAMPLES.items():
        await publisher_class(type(event))(bus).publish(event)
        sent[subject.value] = event.model_dump_json().encode()

    messages = await node.wait_for_messages(len(SAMPLES))
    by_subject = {message["subject"]: message for message in messages}
    assert set(by_subject) == set(sent)
    for subject, data in sent.items():
        message = by_subject[subject]
        assert message["raw"].encode() == data
        # The Node service would have written exactly these bytes for this value.
        assert message["restringified"] == message["raw"]
        assert message["redelivered"] is False
        # The generated npm package's validator accepts what Python wrote.
        assert message["valid"] is True, message["invalidBecause"]


async def test_node_rejects_with_the_generated_validator_what_python_would_reject(
    node_peers: NodePeers, bus: Bus
) -> None:
    node = await node_peers.listen("node-validator", "node-service", ["ticket:created"])
    invalid = [b'{"id":"t1","title":"no price","version":0,"userId":"u"}', b"not json"]
    for payload in invalid:
        await bus.publish("ticket:created", payload)

    messages = await node.wait_for_messages(len(invalid))
    assert [message["valid"] for message in messages] == [False, False]
    assert all(message["invalidBecause"] for message in messages)


async def test_python_receives_every_event_node_publishes(
    node_peers: NodePeers, bus: Bus, listeners: list[Listener[Any]]
) -> None:
    received = Received()
    for event in SAMPLES.values():
        await start_listener(bus, type(event), "python-service", received, listeners)

    await node_peers.publish(
        "node-publisher",
        [
            {"subject": subject.value, "data": json.loads(event.model_dump_json())}
            for subject, event in SAMPLES.items()
        ],
    )

    events = await received.wait_for(len(SAMPLES))
    assert sorted(events, key=lambda e: e.subject.value) == sorted(
        SAMPLES.values(), key=lambda e: e.subject.value
    )


async def test_node_and_python_members_of_one_queue_group_split_the_work(
    node_peers: NodePeers, bus: Bus, listeners: list[Listener[Any]]
) -> None:
    group = "orders-service"
    node = await node_peers.listen("orders-node-1", group, [Subjects.TICKET_CREATED.value])
    received = Received()
    await start_listener(bus, TicketCreatedEvent, group, received, listeners)

    template = SAMPLES[Subjects.TICKET_CREATED]
    total = 40
    publisher = publisher_class(TicketCreatedEvent)(bus)
    for n in range(total):
        await publisher.publish(template.model_copy(update={"title": f"ticket {n}"}))

    def handled() -> set[str]:
        by_node = {m["data"]["title"] for m in node.messages}
        by_python = {e.title for e in received.events}  # type: ignore[attr-defined]
        return by_node | by_python

    progress = asyncio.Event()
    node.observers.append(progress.set)
    received.observers.append(progress.set)
    async with asyncio.timeout(15):
        while len(handled()) < total:
            await progress.wait()
            progress.clear()
    assert handled() == {f"ticket {n}" for n in range(total)}
    # One durable queue group ("orders-service:orders-service" on the server), two
    # members of two languages: each got a share, together everything.
    assert node.messages and received.events
    assert len(node.messages) + len(received.events) == total


async def test_bad_input_from_node_goes_to_the_dead_letter_channel(
    node_peers: NodePeers, bus: Bus, listeners: list[Listener[Any]]
) -> None:
    received = Received()
    await start_listener(bus, TicketCreatedEvent, "orders-service", received, listeners)
    dead = Collector()
    await bus.subscribe(
        dead_letter_subject(Subjects.TICKET_CREATED.value), dead, SubscriptionOptions()
    )

    valid = SAMPLES[Subjects.TICKET_CREATED]
    await node_peers.publish(
        "node-misbehaving",
        [
            {"subject": "ticket:created", "raw": "this is not JSON {"},
            {"subject": "ticket:created", "data": {"id": "t1", "title": "no price"}},
            {"subject": "ticket:created", "data": json.loads(valid.model_dump_json())},
        ],
    )

    # The listener went on past both bad messages to the good one...
    assert await received.wait_for(1) == [valid]
    # ...and neither bad one was dropped silently.
    letters = [DeadLetter.model_validate_json(m.data) for m in await dead.wait_for_count(2)]
    assert [letter.reason for letter in letters] == [
        DeadLetterReason.INVALID_JSON,
        DeadLetterReason.INVALID_EVENT,
    ]
    assert letters[0].original_payload() == b"this is not JSON {"
    assert json.loads(letters[1].original_payload()) == {"id": "t1", "title": "no price"}
    assert all(letter.subject == "ticket:created" for letter in letters)
