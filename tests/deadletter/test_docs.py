"""docs/dead-letters.md: every code block runs, and says what the document says."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from common_events.transports.base import TransportMessage
from tests.deadletter.conftest import ConnectBus
from tests.deadletter.support import KB, SUBJECT, Recording, binary_poison, publish_raw

DOCUMENT = Path(__file__).parents[2] / "docs" / "dead-letters.md"


def blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(\w*)\n(.*?)```", DOCUMENT.read_text(), flags=re.DOTALL)


def test_the_only_code_block_is_the_python_reader_run_below() -> None:
    assert [language for language, _ in blocks()] == ["python"]


async def test_the_reader_reads_every_form(
    connect_bus: ConnectBus, capsys: pytest.CaptureFixture[str]
) -> None:
    ((_, code),) = blocks()
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOCUMENT), "exec"), namespace)
    read = asyncio.Queue[None]()
    documented = namespace["on_dead_letter"]

    async def on_dead_letter(message: TransportMessage) -> None:
        await documented(message)
        read.put_nowait(None)

    namespace["on_dead_letter"] = on_dead_letter  # what audit_dead_letters subscribes
    bus = await connect_bus()
    await namespace["audit_dead_letters"](bus, SUBJECT)
    await publish_raw(bus, [b"{not json", binary_poison(800 * KB)])

    listener = await Recording(bus).listen()
    async with asyncio.timeout(15):
        for _ in range(2):
            await read.get()
    await listener.close()

    lines = sorted(capsys.readouterr().out.splitlines())
    assert lines[0] == "ticket:created #1 invalid_json: 9 bytes included"
    if bus.transport.carries_headers:
        assert lines[1] == "ticket:created #2 invalid_json: 800000 bytes included"
    else:
        assert lines[1] == (
            "ticket:created #2 invalid_json: not included, stored on ticket:created at sequence 2"
        )
