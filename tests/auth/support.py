"""What every authentication test checks: no secret shown anywhere, one clear line on a
refusal, and what the broker stores read back with a credential it accepts."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import common_events
from common_events.errors import AuthenticationError
from common_events.transports.base import SubscriptionOptions, TransportMessage
from tests.auth.nsc import secrets_of

SUBJECT = "ticket:created"


class SecretWatch(logging.Handler):
    """Every log record of the test (DEBUG and up, as a log file would show it, with
    tracebacks) and every secret the test made; ``check()`` finds any secret in them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []
        self.secrets: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr(record.args))
        self.texts.append(repr(record.msg))

    def add_creds(self, creds: Path) -> None:
        self.secrets.update(secrets_of(creds))

    def add_seed_file(self, path: Path) -> None:
        self.secrets.add(path.read_text().strip())

    def check(self, *texts: str) -> None:
        assert self.secrets, "no secret registered: the check would prove nothing"
        for text in texts:
            for secret in self.secrets:
                assert secret not in text, f"a secret leaked into: {text[:300]}"
                # A JWT's signature alone, or the seed without its first letters.
                assert secret[-40:] not in text, f"part of a secret leaked into: {text[:300]}"

    def saw(self, part: str) -> list[str]:
        return [text for text in self.texts if part in text]


def error_text(error: BaseException) -> str:
    """What a traceback of ``error`` shows: its text, causes and contexts, and repr."""
    return "".join(traceback.format_exception(error)) + repr(error)


async def refused(
    watch: SecretWatch,
    connect: Callable[[], Awaitable[Any]],
    *expected: str,
    kind: type[BaseException] = AuthenticationError,
) -> str:
    """Connecting fails with ``kind``: one line that holds each of ``expected`` and no
    secret (neither does its traceback). Returns the line."""
    with pytest.raises(kind) as raised:
        bus = await connect()
        await bus.close()
    line = str(raised.value)
    assert "\n" not in line, line
    for part in expected:
        assert part in line, f"{part!r} not in {line!r}"
    watch.check(error_text(raised.value))
    return line


def assert_bus_secret_free(watch: SecretWatch, bus: common_events.Bus) -> None:
    transport: Any = bus.transport
    watch.check(bus.url, repr(bus), repr(transport), repr(getattr(transport, "options", "")))


async def read_all(
    bus: common_events.Bus, subject: str = SUBJECT, quiet: float = 0.3
) -> list[bytes]:
    """Every message stored on ``subject``, read from the start and acknowledged."""
    got: list[bytes] = []
    arrived = asyncio.Event()

    async def handle(message: TransportMessage) -> None:
        got.append(message.data)
        await message.ack()
        arrived.set()

    subscription = await bus.subscribe(
        subject, handle, SubscriptionOptions(deliver_all_available=True, ack_wait=5.0)
    )
    try:
        while True:
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), quiet)
            except TimeoutError:
                return got
    finally:
        await subscription.close()


async def stored(url: str, creds: Path) -> list[bytes]:
    """What ``read_all`` reads on ``url`` as the user of ``creds``."""
    async with await common_events.connect(url, creds_file=creds) as bus:
        return await read_all(bus)
