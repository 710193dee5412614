"""A listener class with a plain ``on_message`` or a wrong setting fails when defined."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from common_events import (
    Event,
    Listener,
    ListenerDefinitionError,
    Message,
    TicketCreatedEvent,
)

E = TypeVar("E", bound=Event)


class TicketCreatedListener(Listener[TicketCreatedEvent]):
    queue_group = "orders-service"

    async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
        await msg.ack()


def define(**settings: Any) -> type[Any]:
    return type("Payments", (TicketCreatedListener,), {"__module__": __name__, **settings})


def test_a_plain_def_on_message_fails_when_the_class_is_defined() -> None:
    with pytest.raises(ListenerDefinitionError) as caught:

        class Plain(Listener[TicketCreatedEvent]):
            queue_group = "payments"

            def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:  # type: ignore[override]
                pass

    assert str(caught.value).startswith("Plain.on_message is a plain function")
    assert "async def on_message(self, event, msg)" in str(caught.value)


def test_a_plain_def_fails_in_a_generic_base_too() -> None:
    with pytest.raises(ListenerDefinitionError, match=r"Base\.on_message"):

        class Base(Listener[E]):
            def on_message(self, event: E, msg: Message) -> None:  # type: ignore[override]
                pass


def test_a_decorated_coroutine_function_is_accepted() -> None:
    def logged(
        function: Callable[..., Awaitable[None]],
    ) -> Callable[..., Awaitable[None]]:
        @functools.wraps(function)
        def wrapper(*args: Any) -> Awaitable[None]:
            return function(*args)

        return wrapper

    class Decorated(TicketCreatedListener):
        @logged
        async def on_message(self, event: TicketCreatedEvent, msg: Message) -> None:
            await msg.ack()

    assert Decorated.concurrency == 1


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"ack_wait": "5"}, "Payments.ack_wait = '5' (str): it is a number of seconds > 0; "
         "write ack_wait = 5.0"),
        ({"ack_wait": 0}, "Payments.ack_wait = 0: it is a number of seconds > 0"),
        ({"ack_wait": float("inf")}, "Payments.ack_wait = inf"),
        ({"ack_wait": True}, "Payments.ack_wait = True (bool)"),
        ({"retry_delay": -1}, "Payments.retry_delay = -1: it is a number of seconds >= 0"),
        ({"retry_delay": None}, "Payments.retry_delay = None (NoneType)"),
        ({"max_in_flight": 0}, "Payments.max_in_flight = 0: it is a whole number >= 1"),
        ({"max_in_flight": 2.0}, "Payments.max_in_flight = 2.0 (float): it is a whole number "
         ">= 1 of unacknowledged messages delivered at once; write max_in_flight = 2"),
        ({"max_deliveries": "10"}, "write max_deliveries = 10"),
        ({"max_deliveries": 0}, "Payments.max_deliveries = 0"),
        ({"concurrency": 0}, "Payments.concurrency = 0: it is a whole number >= 1 of handlers"),
        ({"concurrency": "8"}, "write concurrency = 8"),
        ({"concurrency": 32}, "Payments.concurrency = 32 is more than max_in_flight = 16"),
        ({"durable": "yes"}, "Payments.durable = 'yes' (str): write durable = True or "
         "durable = False"),
        ({"deliver_all_available": 1}, "Payments.deliver_all_available = 1 (int)"),
        ({"durable_name": ""}, "Payments.durable_name = ''"),
    ],
)
def test_a_setting_of_the_wrong_type_or_range_fails_with_the_setting_and_the_fix(
    settings: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ListenerDefinitionError) as caught:
        define(**settings)

    assert expected in str(caught.value)


def test_concurrency_up_to_max_in_flight_is_accepted() -> None:
    listener = define(concurrency=32, max_in_flight=32)

    assert listener.concurrency == 32
    assert "max_in_flight = 33 (or more)" in _error_of(concurrency=33, max_in_flight=32)


def test_ints_are_accepted_where_seconds_are_asked() -> None:
    assert define(ack_wait=30, retry_delay=0).ack_wait == 30


def _error_of(**settings: Any) -> str:
    with pytest.raises(ListenerDefinitionError) as caught:
        define(**settings)
    return str(caught.value)
