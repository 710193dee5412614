"""A TypeScript service written the course's way against the installed package:
it compiles under every common setting, runs as CommonJS and as an ES module, and
exchanges all six events with a Python service on a real NATS Streaming server."""

from __future__ import annotations

import asyncio
import json
import re
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import common_events
from common_events.contracts.samples import sample_events
from common_events.core.bus import Bus
from common_events.core.listener import Listener
from common_events.core.message import Message
from common_events.core.publisher import Publisher
from common_events.events import Event, Subjects
from tests.fixtures.stan import StanServer
from tests.typescript.npm import PACKAGE_NAME, output_of
from tests.typescript.service import SETTINGS, NodeApp, ServiceProcess, start_service

pytestmark = pytest.mark.slow

SAMPLES = sample_events()
RUNS = {"commonjs": "strict", "module": "verbatimModuleSyntax"}
"""The build each module format runs from."""


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_the_service_compiles(node_app: NodeApp, setting: str) -> None:
    build = node_app.build(setting)

    assert build.ok, output_of(build.result)
    assert build.main.is_file()


WRONG = f"""
import {{ Subjects, type TicketCreatedEvent }} from "{PACKAGE_NAME}";
import {{ Publisher }} from "./common/publisher.js";

export class WrongSubjectPublisher extends Publisher<TicketCreatedEvent> {{
  subject: Subjects.OrderCreated = Subjects.OrderCreated;
}}

export const wrongPrice: TicketCreatedEvent["data"] = {{
  id: "t1", version: 0, title: "Concert", price: "20", userId: "u1",
}};
"""


@pytest.mark.parametrize("setting", ["strict", "verbatimModuleSyntax"])
def test_a_wrong_subject_or_field_type_does_not_compile(node_app: NodeApp, setting: str) -> None:
    build = node_app.build(setting, extra_files={"wrong.ts": WRONG})

    assert not build.ok
    errors = set(re.findall(r"src/wrong\.ts\(\d+,\d+\): error (TS\d+)", build.result.stdout))
    # TS2416: the subject is not the event's; TS2322: a string is not a price.
    assert errors == {"TS2416", "TS2322"}, build.result.stdout


def test_verbatim_module_syntax_requires_import_type_for_types(node_app: NodeApp) -> None:
    source = (
        f'import {{ TicketCreatedEvent }} from "{PACKAGE_NAME}";\n'
        "export type T = TicketCreatedEvent;\n"
    )

    build = node_app.build("verbatimModuleSyntax", extra_files={"types.ts": source})

    # The setting really is on: a type imported as a value is an error (TS1484).
    assert "src/types.ts(1,10): error TS1484" in build.result.stdout, build.result.stdout


@pytest.mark.parametrize("setting", ["strict", "verbatimModuleSyntax"])
def test_the_package_readme_example_compiles(node_app: NodeApp, setting: str) -> None:
    readme = (node_app.directory / "node_modules" / PACKAGE_NAME / "README.md").read_text()
    (example,) = re.findall(r"```ts\n(.*?)```", readme, flags=re.DOTALL)

    build = node_app.build(setting, extra_files={"readme.ts": example})

    assert build.ok, output_of(build.result)


# -- on NATS Streaming, with a Python service ---------------------------------------


class Received:
    def __init__(self, expected: int) -> None:
        self.events: list[Event] = []
        self.expected = expected
        self.complete = asyncio.Event()

    def add(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) >= self.expected:
            self.complete.set()


def listener_class(event_type: type[Event], received: Received) -> type[Listener[Any]]:
    """A listener of the Python service: records each event and acknowledges it."""

    async def on_message(self: Any, event: Event, msg: Message) -> None:
        received.add(event)
        await msg.ack()

    def body(namespace: dict[str, Any]) -> None:
        namespace.update(queue_group="python-service", on_message=on_message)

    return types.new_class(
        f"{event_type.__name__}Recorder",
        (Listener[event_type],),  # type: ignore[valid-type]
        exec_body=body,
    )


def publisher_class(event_type: type[Event]) -> type[Publisher[Any]]:
    return types.new_class(f"{event_type.__name__}Publisher", (Publisher[event_type],))  # type: ignore[valid-type]


@pytest.fixture
async def bus(stan_server: StanServer) -> AsyncIterator[Bus]:
    bus = await common_events.connect(
        stan_server.url, cluster_id=stan_server.cluster_id, client_id="python-service"
    )
    yield bus
    await bus.close()


@pytest.fixture
async def services() -> AsyncIterator[list[ServiceProcess]]:
    running: list[ServiceProcess] = []
    yield running
    for service in running:
        await service.stop()


def wire(event: Event) -> Any:
    return json.loads(event.model_dump_json())


@pytest.mark.parametrize("runs_as", list(RUNS))
async def test_python_events_reach_the_node_service(
    runs_as: str,
    node_app: NodeApp,
    stan_server: StanServer,
    bus: Bus,
    services: list[ServiceProcess],
) -> None:
    build = node_app.build(RUNS[runs_as])
    assert build.ok, output_of(build.result)
    node = await start_service(
        build, "listen", stan_server.nats_url, stan_server.cluster_id, "node-listener"
    )
    services.append(node)
    await node.wait_until(lambda service: bool(service.of_kind("ready")))

    for event in SAMPLES.values():
        await publisher_class(type(event))(bus).publish(event)
    # A payload no Python listener accepts (an integer written as 1.0) is refused too.
    invalid = b'{"id":"t1","version":1.0,"title":"Concert","price":20,"userId":"u1"}'
    await bus.publish("ticket:created", invalid)

    await node.wait_until(
        lambda service: (
            len(service.of_kind("message")) == len(SAMPLES)
            and len(service.of_kind("rejected")) == 1
        )
    )
    received = {message["subject"]: message for message in node.of_kind("message")}
    assert {subject: message["data"] for subject, message in received.items()} == {
        subject.value: wire(event) for subject, event in SAMPLES.items()
    }
    order = received["order:created"]
    assert order["awaiting"] is False  # the sample's status is "created"
    # The Node side read the date as a Date and wrote it back the same.
    assert order["expiresAt"] == wire(SAMPLES[Subjects.ORDER_CREATED])["expiresAt"]
    (rejected,) = node.of_kind("rejected")
    assert rejected["subject"] == "ticket:created"
    assert rejected["errors"] == [
        {
            "path": "/version",
            "keyword": "type",
            "message": "must be an integer written without a fraction or an exponent",
        }
    ]


@pytest.mark.parametrize("runs_as", list(RUNS))
async def test_node_events_reach_the_python_service(
    runs_as: str,
    node_app: NodeApp,
    stan_server: StanServer,
    bus: Bus,
    services: list[ServiceProcess],
    tmp_path: Path,
) -> None:
    build = node_app.build(RUNS[runs_as])
    assert build.ok, output_of(build.result)
    received = Received(len(SAMPLES))
    listeners = [
        await listener_class(type(event), received)(bus).listen() for event in SAMPLES.values()
    ]
    messages = [
        {"subject": subject.value, "data": wire(event)} for subject, event in SAMPLES.items()
    ]
    # The Node publisher checks its data as a Python listener would, before sending.
    bad_price = {**wire(SAMPLES[Subjects.TICKET_CREATED]), "price": "20"}
    messages.append({"subject": "ticket:created", "data": bad_price})
    file = tmp_path / "messages.json"
    file.write_text(json.dumps(messages))

    try:
        node = await start_service(
            build,
            "publish",
            stan_server.nats_url,
            stan_server.cluster_id,
            "node-publisher",
            str(file),
        )
        services.append(node)
        await node.wait_until(lambda service: bool(service.of_kind("exit")))
        assert await node.process.wait() == 0, node.events

        assert [e["subject"] for e in node.of_kind("published")] == [s.value for s in SAMPLES]
        (refused,) = node.of_kind("refused")
        assert refused["errors"] == [
            {"path": "/price", "keyword": "type", "message": "must be number"}
        ]
        await asyncio.wait_for(received.complete.wait(), 15)
        assert sorted(received.events, key=lambda e: e.subject.value) == sorted(
            SAMPLES.values(), key=lambda e: e.subject.value
        )
    finally:
        for listener in listeners:
            await listener.close(drain_timeout=1)
