"""``python -m orders_service``: run the orders service's listeners until stopped.

Configuration comes from the environment, as in the reference deployment:
``COMMON_EVENTS_URL`` (``stan://nats-srv:4222?cluster_id=ticketing`` style, or
``nats://`` / ``memory://``) and ``ORDERS_DB`` (the SQLite file).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from common_events import connect, run_service
from sqlalchemy.ext.asyncio import async_sessionmaker

from orders_service.events import TicketCreatedListener, TicketUpdatedListener
from orders_service.store import create_schema, open_database


async def main(
    url: str | None = None,
    database: str | None = None,
    *,
    stop: asyncio.Event | None = None,
    **connect_options: Any,
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set), then shut down cleanly.

    ``connect_options`` go to ``connect()`` (``cluster_id=``, or ``broker=`` to share an
    in-process broker with a test).
    """
    engine = open_database(database or os.environ.get("ORDERS_DB", "orders.sqlite3"))
    try:
        await create_schema(engine)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        bus = await connect(url, **connect_options)  # url None: $COMMON_EVENTS_URL
        await run_service(
            bus,
            TicketCreatedListener(bus, sessions),
            TicketUpdatedListener(bus, sessions),
            stop=stop,
        )
    finally:
        await engine.dispose()


def run() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main())


if __name__ == "__main__":
    run()
