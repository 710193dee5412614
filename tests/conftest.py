from __future__ import annotations

import pytest

from tests.support.factory import TransportFactory

# Each transport adds its fixture module here and its name to TRANSPORTS; the module
# defines ``<name>_transport_factory`` (see tests/fixtures/memory.py).
pytest_plugins = [
    "tests.fixtures.memory",
    "tests.fixtures.stan",
    "tests.fixtures.jetstream",
]

TRANSPORTS = [
    "memory",
    "stan",
    "jetstream",
]


@pytest.fixture(params=TRANSPORTS)
def transport_factory(request: pytest.FixtureRequest) -> TransportFactory:
    factory: TransportFactory = request.getfixturevalue(f"{request.param}_transport_factory")
    return factory
