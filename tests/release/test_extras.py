"""The optional extras, installed from the built wheel, work in an environment of their own.

``pip install 'common-events[sql,otel,prometheus,nkeys]'`` from the wheel into a new
virtual environment, then, from outside the repository, with what that environment
holds: import the optional parts, and run one event through them, from a service's
transaction (``Outbox.add``) through the outbox relay and the in-memory bus (traced and
counted by the ``otel`` and ``prometheus`` middlewares) to an idempotent listener's
SQLite database (aiosqlite); and derive a user's public key from an NKey seed file.
Without an extra, ``import common_events`` still works and the optional part names the
extra to install.

The environments are cached under ``.venv-matrix/`` as the dependency matrix's are
(``tests/release/matrix.py``): keyed on this Python and the wheel's ``Requires-Dist``,
refreshed with the freshly built wheel on later runs, and checked with ``pip check``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.release.matrix import Environment, InstallFailed, prepare
from tests.release.support import Distributions
from tests.support.servers import missing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EXTRAS = ("sql", "otel", "prometheus", "nkeys")

WITH_EXTRAS = Environment(
    name="extras-all",
    requirements=(),
    expected={},
    suites=(),
    tools=(),
    extras=",".join(EXTRAS),
)
WITHOUT_EXTRAS = Environment(
    name="extras-none", requirements=(), expected={}, suites=(), tools=(), extras=""
)

ROUND_TRIP = r"""
import asyncio, importlib.metadata, json, os
from pathlib import Path

import nkeys
from prometheus_client import CollectorRegistry
from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import common_events
from common_events import TicketCreatedEvent, connect
from common_events.observability.otel import Tracing
from common_events.observability.prometheus import Metrics
from common_events.outbox import IdempotentListener, Outbox, OutboxRelay, create_tables
from common_events.transports.nats_connection.credentials import read_seed_file


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str]


class TicketCopier(IdempotentListener[TicketCreatedEvent]):
    queue_group = "extras-check"

    async def handle(self, event, session, msg):
        session.add(Ticket(id=event.id, title=event.title))


async def main():
    engine = create_async_engine(f"sqlite+aiosqlite:///{Path.cwd() / 'service.sqlite3'}")
    await create_tables(engine)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    registry = CollectorRegistry()
    bus = await connect("memory://", middleware=[Tracing(), Metrics(registry)])
    outbox = Outbox()
    relay = OutboxRelay(bus, engine, outbox=outbox)
    copier = TicketCopier(bus, sessions)
    await copier.listen()

    async with sessions.begin() as session:
        outbox.add(
            session,
            TicketCreatedEvent(id="t1", version=0, title="Concert", price=20, user_id="u1"),
        )
    published = await relay.publish_pending()

    async def copies():
        async with engine.connect() as connection:
            return await connection.scalar(select(func.count()).select_from(Ticket))

    async with asyncio.timeout(10):
        while not await copies():
            await asyncio.sleep(0.02)
    pending = await relay.pending()
    async with engine.connect() as connection:
        rows = [list(row) for row in await connection.execute(select(Ticket.id, Ticket.title))]
    await copier.close()
    await bus.close()
    await engine.dispose()

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    Path("user.nk").write_bytes(seed)

    def sample(name, **labels):
        return registry.get_sample_value(f"common_events_{name}", labels)

    print(json.dumps({
        "file": common_events.__file__,
        "versions": {
            name: importlib.metadata.version(name)
            for name in ("common-events", "sqlalchemy", "aiosqlite", "asyncpg", "greenlet",
                         "opentelemetry-api", "prometheus-client", "nkeys")
        },
        "published": published,
        "pending": pending,
        "copies": rows,
        "confirmed": sample(
            "published_messages_total", subject="ticket:created", outcome="confirmed"
        ),
        "acked": sample(
            "handled_deliveries_total",
            subject="ticket:created",
            queue_group="extras-check",
            outcome="acked",
        ),
        "public_key": read_seed_file("user.nk").public_key,
        "expected_public_key": nkeys.from_seed(bytearray(seed)).public_key.decode(),
    }))


asyncio.run(main())
"""

WITHOUT = r"""
import importlib, json, sys

import common_events

needs = {}
for module in ("common_events.outbox", "common_events.observability.otel",
               "common_events.observability.prometheus"):
    try:
        importlib.import_module(module)
    except ImportError as error:
        needs[module] = str(error)
print(json.dumps({
    "file": common_events.__file__,
    "needs": needs,
    "loaded": sorted(
        name for name in ("sqlalchemy", "aiosqlite", "opentelemetry", "prometheus_client")
        if name in sys.modules
    ),
}))
"""


def environment_python(environment: Environment, distributions: Distributions) -> Path:
    try:
        return prepare(environment, distributions)
    except InstallFailed as error:
        if error.unreachable:
            missing(f"cannot download what the {environment.name} environment needs:\n{error}")
        raise


def run_outside(python: Path, script: str, cwd: Path) -> dict[str, object]:
    """``script`` in ``python``'s environment, from ``cwd`` (outside the repository), in
    isolated mode: only what the environment installed can be imported."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("PYTHON")
    }
    result = subprocess.run(
        [str(python), "-I", "-c", script],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    found: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    assert Path(str(found["file"])).is_relative_to(python.parent.parent), found["file"]
    return found


@pytest.fixture(scope="module")
def with_extras(distributions: Distributions) -> Path:
    return environment_python(WITH_EXTRAS, distributions)


@pytest.fixture(scope="module")
def without_extras(distributions: Distributions) -> Path:
    return environment_python(WITHOUT_EXTRAS, distributions)


def test_an_outbox_round_trip_runs_with_the_extras_installed_from_the_wheel(
    with_extras: Path, distributions: Distributions, tmp_path: Path
) -> None:
    found = run_outside(with_extras, ROUND_TRIP, tmp_path)

    versions = found["versions"]
    assert isinstance(versions, dict)
    assert versions["common-events"] == distributions.version
    assert int(str(versions["sqlalchemy"]).split(".")[0]) == 2
    # One event from the service's transaction to the listener's database, once.
    assert (found["published"], found["pending"]) == (1, 0)
    assert found["copies"] == [["t1", "Concert"]]
    assert (found["confirmed"], found["acked"]) == (1.0, 1.0)
    assert found["public_key"] == found["expected_public_key"]
    assert str(found["public_key"]).startswith("U")


def test_without_the_extras_the_optional_parts_name_the_extra_to_install(
    without_extras: Path, tmp_path: Path
) -> None:
    found = run_outside(without_extras, WITHOUT, tmp_path)

    assert found["loaded"] == []
    needs = found["needs"]
    assert isinstance(needs, dict)
    assert sorted(needs) == [
        "common_events.observability.otel",
        "common_events.observability.prometheus",
        "common_events.outbox",
    ]
    for module, extra in (
        ("common_events.outbox", "sql"),
        ("common_events.observability.otel", "otel"),
        ("common_events.observability.prometheus", "prometheus"),
    ):
        assert f"pip install 'common-events[{extra}]'" in needs[module], needs[module]
