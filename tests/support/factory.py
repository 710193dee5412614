from __future__ import annotations

from collections.abc import Awaitable, Callable

from common_events.transports.base import Transport

TransportFactory = Callable[[], Awaitable[Transport]]
"""Makes a new connected transport; every transport one factory makes talks to the same
broker, so two of them behave like two services. The fixture closes them all after."""
