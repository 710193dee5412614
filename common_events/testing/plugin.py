"""The pytest plugin, registered through the ``pytest11`` entry point.

Installing common-events is all a service needs; its tests then have:

- ``event_bus``: a fresh in-memory ``Bus`` per test, closed afterwards;
- ``published``: what was published on that bus (``published.events(...)``,
  ``published.dead_letters(...)``);
- ``assert_published(TicketUpdatedEvent, id=..., version=2)``: the matching event, or a
  failure that lists what was published on that subject and how it differs;
- ``common_events.testing.deliver(listener, event)`` for listener tests, and
  ``common_events.testing.strategies`` for Hypothesis (``st.from_type`` works for
  every event once this plugin is loaded and Hypothesis is installed).

The plugin is loaded into every test session of every project that installs the
package, so it defines fixtures only (nothing runs unless a test asks for it) and
imports pytest-asyncio and Hypothesis only if they are there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from importlib.util import find_spec
from typing import Any

import pytest

from common_events.core.bus import Bus
from common_events.testing.capture import PublishedEvents
from common_events.transports.memory import MemoryTransport

_NEEDS_ASYNCIO = (
    "the event_bus fixture is async and needs pytest-asyncio: pip install 'common-events[testing]'"
)


def pytest_configure(config: pytest.Config) -> None:
    if find_spec("hypothesis") is not None:
        from common_events.testing.strategies import register_strategies

        register_strategies()


if find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def event_bus() -> AsyncIterator[Bus]:
        """A fresh in-memory bus: publishers and listeners of one test share it."""
        async with Bus(MemoryTransport(url="memory://test")) as bus:
            yield bus

else:  # pragma: no cover - exercised only where pytest-asyncio is missing

    @pytest.fixture
    def event_bus() -> Bus:
        pytest.fail(_NEEDS_ASYNCIO, pytrace=False)


@pytest.fixture
def published(event_bus: Bus) -> PublishedEvents:
    """Everything published on ``event_bus`` during the test."""
    return PublishedEvents(event_bus)


@pytest.fixture
def assert_published(published: PublishedEvents) -> Callable[..., Any]:
    """``assert_published(TicketUpdatedEvent, id=..., version=2)`` returns the last
    matching event published on ``event_bus``, or fails with what was published."""
    return published.assert_published
