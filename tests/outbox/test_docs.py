"""Every code block of docs/outbox.md runs, in order, and does what the page says."""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, func, select
from sqlalchemy import inspect as inspect_schema
from sqlalchemy.ext.asyncio import create_async_engine

from common_events.outbox import OutboxRecord, ProcessedDelivery, metadata
from tests.outbox.postgres import PostgresServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "outbox.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


async def run_block(source: str, namespace: dict[str, Any], number: int) -> None:
    # dont_inherit: this module's ``from __future__ import annotations`` must not turn
    # the example's annotations into strings, as a service's module would not.
    code = compile(
        source,
        f"docs/outbox.md block {number}",
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        await result


async def until(check: Any, timeout: float = 15.0) -> None:
    # The events travel between the two services' databases asynchronously: poll the
    # orders database until it shows the effect.
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@pytest.fixture
def doc_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)  # the examples' SQLite files land here
    return {"__name__": "outbox_docs"}


async def test_every_block_runs_and_the_two_services_agree(doc_namespace: dict[str, Any]) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 6
    ns = doc_namespace
    for number, block in enumerate(blocks, start=1):
        await run_block(block, ns, number)

    async def orders_has_the_new_price() -> bool:
        async with ns["orders_sessions"]() as session:
            ticket = await session.get(ns["OrderableTicket"], ns["concert"].id)
            return ticket is not None and ticket.price == 25.0 and ticket.version == 1

    try:
        await until(orders_has_the_new_price)
        async with ns["engine"].connect() as connection:
            unsent = await connection.scalar(
                select(func.count()).select_from(OutboxRecord).where(OutboxRecord.sent_at.is_(None))
            )
        assert unsent == 0
        async with ns["orders_engine"].connect() as connection:
            keys = await connection.scalar(select(func.count()).select_from(ProcessedDelivery))
        assert keys == 2
        assert ns["forgotten"] == 0

        # The service of "In a service" starts, runs and stops with its relay.
        stop = asyncio.Event()
        service = asyncio.create_task(ns["main"](stop))
        await asyncio.sleep(0)  # let it start before it is told to stop
        stop.set()
        await asyncio.wait_for(service, timeout=20)
    finally:
        for listener in ns["listeners"]:
            await listener.close()
        await ns["relay"].close()
        await ns["bus"].close()
        await ns["engine"].dispose()
        await ns["orders_engine"].dispose()


def migrate(connection: Connection, namespace: dict[str, Any]) -> None:
    with Operations.context(MigrationContext.configure(connection)):
        namespace["upgrade"]()
    differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    with Operations.context(MigrationContext.configure(connection)):
        namespace["downgrade"]()
    assert inspect_schema(connection).get_table_names() == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_the_alembic_migration_makes_exactly_the_outbox_tables(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    (migration,) = [block for block in python_blocks() if "def upgrade()" in block]
    namespace: dict[str, Any] = {"__name__": "migration"}
    exec(compile(migration, "docs/outbox.md migration", "exec", dont_inherit=True), namespace)
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.url(server.create_database())
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(migrate, namespace)
    finally:
        await engine.dispose()


README = DOC.parents[1] / "README.md"
README_SECTION = "## Outbox and idempotency"


def section(markdown: str, heading: str) -> str | None:
    start = markdown.find(f"\n{heading}\n")
    if start < 0:
        return None
    end = markdown.find("\n## ", start + len(heading) + 2)
    return markdown[start : end if end >= 0 else len(markdown)]


async def run_outbox_section(markdown: str) -> None:
    """Run the README section's two examples in order; the orders service ends up with
    the ticket the tickets service committed."""
    blocks = re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)
    assert len(blocks) == 2
    ns: dict[str, Any] = {"__name__": "readme_outbox"}
    for number, block in enumerate(blocks, start=1):
        await run_block(block, ns, number)

    async def orders_has_the_ticket() -> bool:
        async with ns["orders_db"].connect() as connection:
            found = await connection.scalar(select(func.count()).select_from(ns["Ticket"]))
            return bool(found)

    try:
        await until(orders_has_the_ticket)
    finally:
        await ns["listener"].close()
        await ns["relay"].close()
        await ns["bus"].close()
        await ns["tickets_db"].dispose()
        await ns["orders_db"].dispose()


async def test_the_readme_outbox_section_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = section(README.read_text(encoding="utf-8"), README_SECTION)
    if text is None:
        pytest.skip(f"README.md has no {README_SECTION!r} section yet")
    monkeypatch.chdir(tmp_path)
    await run_outbox_section(text)
