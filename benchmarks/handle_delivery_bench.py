"""The core's cost per delivery: ``Listener.handle_delivery`` with no broker I/O.

    python benchmarks/handle_delivery_bench.py [--deliveries N] [--repeat R]

A delivery that validates, a handler that acknowledges, a stand-in for the transport's
message whose ack costs nothing: what is left is the listener's own work (decode and
validate, the failure policy, the handler call, settling). Printed in microseconds per
delivery, best of ``--repeat``, with no middleware, then with one and three that only
pass through (the cost of the chain itself). No server needed.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from common_events import Listener, Message, TicketUpdatedEvent, connect
from common_events.core import DeliveryContext, HandleNext, Middleware, Outcome

EVENT = TicketUpdatedEvent(id="t1", version=2, title="x", price=1, user_id="u1")
DATA = EVENT.model_dump_json().encode()
STORED_AT = datetime.now(UTC)
NO_HEADERS: Mapping[str, str] = {}


class Delivered:
    """A transport message whose broker side does nothing."""

    __slots__ = ()
    subject = "ticket:updated"
    data = DATA
    sequence = 5
    delivery_count = 1
    redelivered = False
    timestamp = STORED_AT
    headers = NO_HEADERS

    async def ack(self) -> None:
        pass

    async def nak(self, delay: float | None = None) -> None:
        pass

    async def in_progress(self) -> bool:
        return True


class Acknowledging(Listener[TicketUpdatedEvent]):
    queue_group = "bench"

    async def on_message(self, event: TicketUpdatedEvent, msg: Message) -> None:
        await msg.ack()


class PassThrough(Middleware):
    async def handle(self, context: DeliveryContext, call_next: HandleNext) -> Outcome:
        return await call_next(context)


async def per_delivery(middlewares: int, deliveries: int, repeat: int) -> float:
    middleware = [PassThrough() for _ in range(middlewares)]
    async with await connect("memory://", middleware=middleware) as bus:
        listener = Acknowledging(bus)
        message = Delivered()
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(deliveries):
                await listener.handle_delivery(message)
            best = min(best, time.perf_counter() - start)
    return best / deliveries * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for middlewares in (0, 1, 3):
        micros = await per_delivery(middlewares, args.deliveries, args.repeat)
        print(f"handle_delivery, {middlewares} pass-through middleware(s): {micros:6.2f} us")


if __name__ == "__main__":
    asyncio.run(main())
