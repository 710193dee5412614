"""Publisher and Listener subclasses: what a complete one is, and what fails at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TypeVar

import pytest

from common_events import (
    Event,
    Listener,
    ListenerDefinitionError,
    Message,
    Publisher,
    Subjects,
    SubscriptionOptions,
    TicketCreatedEvent,
    TicketUpdatedEvent,
    connect,
)


class TicketCreatedPublisher(Publisher[TicketCreatedEvent]):
    pass


class TicketCreatedListener(Listener[TicketCreatedEvent]):
    queue_group = "orders-service"

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        await msg.ack()


def test_a_one_line_publisher_takes_its_subject_from_the_event_type() -> None:
    assert TicketCreatedPublisher.subject is Subjects.TICKET_CREATED
    assert TicketCreatedPublisher.event_type is TicketCreatedEvent


def test_listener_defaults() -> None:
    options = TicketCreatedListener.__new__(TicketCreatedListener).subscription_options
    assert TicketCreatedListener.subject is Subjects.TICKET_CREATED
    assert options == SubscriptionOptions(
        queue_group="orders-service",
        durable_name="orders-service",
        deliver_all_available=True,
        ack_wait=5.0,
        max_in_flight=16,
        max_deliveries=10,
    )


def test_overridden_settings_reach_the_subscription() -> None:
    class Custom(TicketCreatedListener):
        durable_name = "orders-durable"
        ack_wait = 30.0
        max_in_flight = 1
        deliver_all_available = False

    options = Custom.__new__(Custom).subscription_options
    assert options.durable_name == "orders-durable"
    assert (options.ack_wait, options.max_in_flight) == (30.0, 1)
    assert options.deliver_all_available is False

    class NotDurable(TicketCreatedListener):
        durable = False

    assert NotDurable.__new__(NotDurable).subscription_options.durable_name is None


def test_a_declared_subject_must_match_the_event_type() -> None:
    with pytest.raises(ListenerDefinitionError) as caught:

        class Wrong(Listener[TicketCreatedEvent]):
            subject = Subjects.TICKET_UPDATED
            queue_group = "orders-service"

            async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None: ...

    message = str(caught.value)
    assert "'ticket:updated'" in message and "'ticket:created'" in message
    assert "TicketCreatedEvent" in message

    with pytest.raises(ListenerDefinitionError, match="ticket:created"):

        class WrongPublisher(Publisher[TicketUpdatedEvent]):
            subject = Subjects.TICKET_CREATED


def test_a_matching_declared_subject_is_fine() -> None:
    class Explicit(Listener[TicketCreatedEvent]):
        subject = Subjects.TICKET_CREATED
        queue_group = "orders-service"

        async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None: ...

    assert Explicit.subject is Subjects.TICKET_CREATED


def test_a_listener_without_queue_group_fails_when_defined() -> None:
    with pytest.raises(ListenerDefinitionError) as caught:

        class NoGroup(Listener[TicketCreatedEvent]):
            async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None: ...

    assert "NoGroup" in str(caught.value)
    assert "queue_group" in str(caught.value)
    assert "ticket:created" in str(caught.value)


@pytest.mark.parametrize(
    ("attribute", "value"), [("ack_wait", 0), ("max_in_flight", 0), ("max_deliveries", 0)]
)
def test_impossible_settings_fail_when_defined(attribute: str, value: int) -> None:
    with pytest.raises(ListenerDefinitionError, match=attribute):
        type(
            "Bad",
            (TicketCreatedListener,),
            {attribute: value, "__module__": __name__},
        )


def test_a_generic_intermediate_base_is_allowed() -> None:
    E = TypeVar("E", bound=Event)

    class ServiceListener(Listener[E]):
        queue_group = "orders-service"
        ack_wait = 10.0

    class Concrete(ServiceListener[TicketUpdatedEvent]):
        async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None: ...

    assert Concrete.subject is Subjects.TICKET_UPDATED
    assert Concrete.ack_wait == 10.0


def test_the_type_parameter_must_be_an_event_model() -> None:
    with pytest.raises(ListenerDefinitionError, match="event model"):

        class NotAnEvent(Publisher[int]):  # type: ignore[type-var]
            pass


async def test_a_listener_without_on_message_cannot_be_made() -> None:
    class Incomplete(Listener[TicketCreatedEvent]):
        queue_group = "orders-service"

    async with await connect("memory://") as bus:
        with pytest.raises(TypeError, match="on_message"):
            Incomplete(bus)  # type: ignore[abstract]


MYPY_SNIPPET = """
from common_events import Listener, Message, OrderCreatedEvent, TicketCreatedEvent


class Confused(Listener[TicketCreatedEvent]):
    queue_group = "orders-service"

    async def on_message(self, event: OrderCreatedEvent, msg: Message) -> None:
        await msg.ack()


class Fine(Listener[TicketCreatedEvent]):
    queue_group = "orders-service"

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        await msg.ack()
"""


def test_mypy_flags_an_on_message_for_another_event_type(tmp_path: Path) -> None:
    snippet = tmp_path / "service.py"
    snippet.write_text(textwrap.dedent(MYPY_SNIPPET))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(snippet)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout
    assert len(errors) == 1, result.stdout
    assert "service.py:8" in errors[0]
    assert 'Argument 1 of "on_message" is incompatible' in errors[0]
    assert "TicketCreatedEvent" in errors[0]
