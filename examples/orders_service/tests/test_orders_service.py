from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from common_events import (
    Bus,
    DeadLetterReason,
    Message,
    OrderCancelledEvent,
    OrderCreatedEvent,
    OrderStatus,
    OutOfOrder,
    Publisher,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from common_events.events import to_iso_string
from common_events.outbox import MESSAGE_ID_HEADER, ProcessedDelivery
from common_events.testing import deliver, memory_broker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from orders_service import (
    Orders,
    Ticket,
    TicketAlreadyReserved,
    TicketNotFound,
    create_schema,
    open_database,
)
from orders_service.__main__ import main
from orders_service.events import TicketCreatedListener, TicketUpdatedListener
from orders_service.store import add_ticket, apply_ticket_update, find_ticket, get_ticket

CREATED = TicketCreatedEvent(id="t1", version=0, title="Concert", price=20, user_id="u1")

WAIT = 5.0
"""Seconds a test waits for the service to get somewhere before it fails."""


def updated(version: int, title: str, price: float = 20) -> TicketUpdatedEvent:
    return TicketUpdatedEvent(id="t1", version=version, title=title, price=price, user_id="u1")


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class TicketUpdatedPublisher(Publisher[TicketUpdatedEvent]):
    pass


async def publish_as_relay(
    bus: Bus, event: TicketCreatedEvent | TicketUpdatedEvent, message_id: str | None = None
) -> str:
    """Publish ``event`` as the tickets service's outbox relay does: with its outbox
    row's id as ``Nats-Msg-Id``, the same on every repeat of that row."""
    message_id = message_id or uuid4().hex
    headers = {MESSAGE_ID_HEADER: message_id}
    if isinstance(event, TicketCreatedEvent):
        await TicketCreatedPublisher(bus).publish(event, headers=headers)
    else:
        await TicketUpdatedPublisher(bus).publish(event, headers=headers)
    return message_id


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "orders.sqlite3"


@pytest.fixture
async def engine(database: Path) -> AsyncIterator[AsyncEngine]:
    engine = open_database(str(database))
    await create_schema(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def copy_of(sessions: async_sessionmaker[AsyncSession], ticket_id: str) -> Ticket | None:
    async with sessions() as session:
        return await find_ticket(session, ticket_id)


async def count(engine: AsyncEngine, model: type[Any]) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(model)) or 0)


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait, within ``WAIT`` seconds, for ``condition`` to hold."""
    async with asyncio.timeout(WAIT):
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


# -- the ticket copy, version by version ---------------------------------------------


async def test_updates_apply_only_on_top_of_the_version_before(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        assert await add_ticket(session, CREATED)
    async with sessions.begin() as session:
        with pytest.raises(OutOfOrder, match="needs version 1 first; have version 0"):
            await apply_ticket_update(session, updated(2, "Concert (late show)"))
    assert getattr(await copy_of(sessions, "t1"), "version", None) == 0

    async with sessions.begin() as session:
        assert await apply_ticket_update(session, updated(1, "Concert (matinee)"))
    async with sessions.begin() as session:
        assert await apply_ticket_update(session, updated(2, "Concert (late show)", price=25))
    ticket = await copy_of(sessions, "t1")
    assert ticket is not None
    assert (ticket.title, ticket.price, ticket.version) == ("Concert (late show)", 25, 2)


async def test_an_event_published_again_changes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # The same event as a new message (NATS Streaming has no de-duplication, so a
    # relay's repeat gets a new sequence): the versions tell it is old news.
    async with sessions.begin() as session:
        assert await add_ticket(session, CREATED)
        assert not await add_ticket(session, CREATED.model_copy(update={"title": "Other"}))
        assert await apply_ticket_update(session, updated(1, "Matinee"))
        assert await apply_ticket_update(session, updated(2, "Late show"))
        # Version 1 again, after 2 was applied.
        assert not await apply_ticket_update(session, updated(1, "Matinee"))
    ticket = await copy_of(sessions, "t1")
    assert ticket is not None
    assert (ticket.title, ticket.version) == ("Late show", 2)


async def test_an_update_of_an_unknown_ticket_is_out_of_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        with pytest.raises(OutOfOrder, match="have nothing"):
            await apply_ticket_update(session, updated(1, "Matinee"))
        with pytest.raises(TicketNotFound):
            await get_ticket(session, "t1")


# -- the listeners -------------------------------------------------------------------


async def test_a_created_ticket_is_copied_and_acknowledged(
    event_bus: Bus, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    delivery = await deliver(TicketCreatedListener(event_bus, sessions), CREATED)

    assert delivery.acked, str(delivery)
    assert getattr(await copy_of(sessions, "t1"), "title", None) == "Concert"
    # The delivery's key was committed with the copy.
    assert await count(engine, ProcessedDelivery) == 1


async def test_a_version_that_arrives_early_is_not_acknowledged_and_leaves_no_trace(
    event_bus: Bus, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    listener = TicketUpdatedListener(event_bus, sessions)
    async with sessions.begin() as session:
        await add_ticket(session, CREATED)

    # Version 2 before version 1: not acknowledged, so the broker delivers it again.
    early = await deliver(listener, updated(2, "Late show", price=25))

    assert early.not_acked, str(early)
    assert isinstance(early.error, OutOfOrder)
    assert early.retry_delay == listener.retry_delay
    # Its key rolled back with it: the redelivery is applied, not skipped.
    assert await count(engine, ProcessedDelivery) == 0
    assert getattr(await copy_of(sessions, "t1"), "version", None) == 0


async def test_versions_that_arrive_out_of_order_are_applied_in_order(
    event_bus: Bus, sessions: async_sessionmaker[AsyncSession]
) -> None:
    listener = TicketUpdatedListener(event_bus, sessions)
    async with sessions.begin() as session:
        await add_ticket(session, CREATED)
    await listener.listen()
    try:
        await publish_as_relay(event_bus, updated(2, "Late show", price=25))
        await publish_as_relay(event_bus, updated(1, "Matinee"))

        async def at_version_2() -> bool:
            return getattr(await copy_of(sessions, "t1"), "version", None) == 2

        await until(at_version_2)
    finally:
        await listener.close()
    ticket = await copy_of(sessions, "t1")
    assert ticket is not None
    assert (ticket.title, ticket.price) == ("Late show", 25)


async def test_an_update_that_never_fits_ends_on_the_dead_letter_subject(
    event_bus: Bus, sessions: async_sessionmaker[AsyncSession]
) -> None:
    listener = TicketUpdatedListener(event_bus, sessions)

    last_try = await deliver(
        listener, updated(5, "From nowhere"), delivery_count=listener.max_deliveries
    )

    assert last_try.dead_lettered, str(last_try)
    assert last_try.dead_letter is not None
    assert last_try.dead_letter.reason is DeadLetterReason.MAX_DELIVERIES
    assert "OutOfOrder" in last_try.dead_letter.error
    assert await copy_of(sessions, "t1") is None


async def test_an_invalid_ticket_event_is_dead_lettered(
    event_bus: Bus, sessions: async_sessionmaker[AsyncSession]
) -> None:
    delivery = await deliver(
        TicketUpdatedListener(event_bus, sessions),
        {"id": "t1", "version": "2", "title": "Late show", "price": 25, "userId": "u1"},
    )

    assert delivery.dead_lettered
    assert delivery.dead_letter is not None
    assert delivery.dead_letter.reason is DeadLetterReason.INVALID_EVENT


# -- each message applied once -------------------------------------------------------


class ProcessDied(Exception):
    """Stands for the process dying after its commit, before its ack."""


class Applier(TicketCreatedListener):
    """The service's listener, noting whether each delivery was applied; the first
    ``deaths`` deliveries die after the commit and before the ack, so the broker
    delivers the message again."""

    retry_delay = 0.01

    def __init__(
        self, bus: Bus, sessions: async_sessionmaker[AsyncSession], *, deaths: int = 0
    ) -> None:
        super().__init__(bus, sessions)
        self.deaths = deaths
        self.applied: list[bool] = []
        self.delivery_counts: list[int] = []

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        # What IdempotentListener.on_message does (apply, then ack), with a death between.
        self.applied.append(await self.apply(event, msg))
        self.delivery_counts.append(msg.delivery_count)
        if len(self.applied) <= self.deaths:
            raise ProcessDied(f"delivery {msg.delivery_count}: committed, not acknowledged")
        await msg.ack()

    async def handled(self, times: int) -> None:
        async def enough() -> bool:
            return len(self.applied) >= times

        await until(enough)


async def test_a_redelivered_ticket_created_changes_the_database_once(
    event_bus: Bus, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    listener = Applier(event_bus, sessions, deaths=4)
    await listener.listen()
    try:
        await publish_as_relay(event_bus, CREATED)
        await listener.handled(5)
    finally:
        await listener.close()

    # One message, delivered five times: the first delivery's change was committed, the
    # four redeliveries found its key and were acknowledged without running `handle`.
    assert listener.delivery_counts == [1, 2, 3, 4, 5]
    assert listener.applied == [True, False, False, False, False]
    assert await count(engine, Ticket) == 1
    assert await count(engine, ProcessedDelivery) == 1
    assert getattr(await copy_of(sessions, "t1"), "title", None) == "Concert"


async def test_an_event_the_relay_published_twice_is_applied_once(
    event_bus: Bus, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The tickets service's relay died between publishing a row and marking it sent; it
    # published the row again after its restart, with the same Nats-Msg-Id. JetStream
    # stores such a repeat once; the in-memory bus stores it as a second message.
    listener = Applier(event_bus, sessions)
    await listener.listen()
    try:
        message_id = await publish_as_relay(event_bus, CREATED)
        await publish_as_relay(event_bus, CREATED, message_id)
        await listener.handled(2)
    finally:
        await listener.close()

    assert listener.delivery_counts == [1, 1]  # two messages
    assert listener.applied == [True, False]
    assert await count(engine, Ticket) == 1
    assert await count(engine, ProcessedDelivery) == 1


async def test_an_old_version_published_again_is_acknowledged_without_change(
    event_bus: Bus, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # A repeat with a message id of its own (a new message to the broker): the key does
    # not know it, the version check does.
    listener = TicketUpdatedListener(event_bus, sessions)
    async with sessions.begin() as session:
        await add_ticket(session, CREATED)
    await listener.listen()
    try:
        for event in (updated(1, "Matinee"), updated(2, "Late show"), updated(1, "Matinee")):
            await publish_as_relay(event_bus, event)

        async def all_acknowledged() -> bool:
            return await count(engine, ProcessedDelivery) == 3

        await until(all_acknowledged)
    finally:
        await listener.close()
    ticket = await copy_of(sessions, "t1")
    assert ticket is not None
    assert (ticket.title, ticket.version) == ("Late show", 2)


# -- orders --------------------------------------------------------------------------


@pytest.fixture
async def copied(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The ticket ``t1`` is in the service's copy."""
    async with sessions.begin() as session:
        await add_ticket(session, CREATED)


@pytest.mark.usefixtures("copied")
async def test_an_order_reserves_its_ticket_and_says_so(
    event_bus: Bus,
    sessions: async_sessionmaker[AsyncSession],
    assert_published: Callable[..., Any],
) -> None:
    orders = Orders(sessions, event_bus)

    order = await orders.create(ticket_id="t1", user_id="buyer")

    event = assert_published(
        OrderCreatedEvent,
        id=order.id,
        version=0,
        status=OrderStatus.CREATED,
        user_id="buyer",
        ticket={"id": "t1", "price": 20},
    )
    # The wire carries milliseconds; the database keeps the whole UTC time.
    assert abs(event.expires_at - order.expires_at) < timedelta(milliseconds=1)
    stored = await orders.get(order.id)
    assert (stored.status, stored.expires_at) == (OrderStatus.CREATED, order.expires_at)
    with pytest.raises(TicketAlreadyReserved):
        await orders.create(ticket_id="t1", user_id="someone else")


@pytest.mark.usefixtures("copied")
async def test_the_order_event_is_the_wire_json_the_node_services_read(
    event_bus: Bus, sessions: async_sessionmaker[AsyncSession]
) -> None:
    order = await Orders(sessions, event_bus).create(ticket_id="t1", user_id="buyer")

    (message,) = memory_broker(event_bus).messages("order:created")
    payload = json.loads(message.data)
    assert list(payload) == ["id", "version", "status", "userId", "expiresAt", "ticket"]
    assert payload == {
        "id": order.id,
        "version": 0,
        "status": "created",
        "userId": "buyer",
        "expiresAt": to_iso_string(order.expires_at),  # 2026-11-27T06:40:00.000Z
        "ticket": {"id": "t1", "price": 20},
    }


@pytest.mark.usefixtures("copied")
async def test_a_cancelled_order_frees_its_ticket(
    event_bus: Bus,
    sessions: async_sessionmaker[AsyncSession],
    assert_published: Callable[..., Any],
) -> None:
    orders = Orders(sessions, event_bus)
    order = await orders.create(ticket_id="t1", user_id="buyer")

    cancelled = await orders.cancel(order.id)

    assert (cancelled.status, cancelled.version) == (OrderStatus.CANCELLED, 1)
    assert (await orders.get(order.id)).status is OrderStatus.CANCELLED
    assert_published(OrderCancelledEvent, id=order.id, version=1, ticket={"id": "t1"})
    second = await orders.create(ticket_id="t1", user_id="someone else")
    assert second.id != order.id


async def test_an_order_needs_the_ticket_copied_first(
    event_bus: Bus, sessions: async_sessionmaker[AsyncSession]
) -> None:
    with pytest.raises(TicketNotFound):
        await Orders(sessions, event_bus).create(ticket_id="t1", user_id="buyer")


# -- the entry point -----------------------------------------------------------------


async def test_the_entry_point_copies_tickets_until_stopped(
    database: Path,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    event_bus: Bus,
) -> None:
    stop = asyncio.Event()
    service = asyncio.create_task(
        main("memory://", str(database), stop=stop, broker=memory_broker(event_bus))
    )
    try:
        await publish_as_relay(event_bus, CREATED)
        await publish_as_relay(event_bus, updated(1, "Matinee"))

        # Another connection to the service's database file sees what it committed. The
        # service's listeners are its own, so the file is the only thing to watch.
        async def at_version_1() -> bool:
            return getattr(await copy_of(sessions, "t1"), "version", None) == 1

        await until(at_version_1)
    finally:
        stop.set()
        await asyncio.wait_for(service, timeout=10)
    assert await count(engine, ProcessedDelivery) == 2
