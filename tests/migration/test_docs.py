"""docs/migrating-to-jetstream.md followed end to end: the demo scenario's services move
from NATS Streaming to JetStream under traffic, with the guide's commands run as written,
and every event is handled once by every service that listens to it."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from common_events.testing.servers import EmbeddedNatsServer, StanServer
from tests.migration.conftest import NODE_DIR, CliProcess, run_cli, until

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrating-to-jetstream.md"

pytestmark = pytest.mark.timeout(240)


def blocks(kind: str | None = None) -> list[str]:
    found = re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    return [text for language, text in found if kind is None or language == kind]


def commands(block: str) -> list[str]:
    return [line[2:] for line in block.splitlines() if line.startswith("$ ")]


def test_every_block_is_one_the_guide_test_runs() -> None:
    found = re.findall(r"```(\w+)\n", DOC.read_text(encoding="utf-8"))
    assert sorted(set(found)) == ["console", "js", "python"]
    assert len(blocks("python")) == 2 and len(blocks("console")) == 5 and len(blocks("js")) == 1


class Shell:
    """The guide's console lines, run by bash with its four variables set."""

    def __init__(self, stan: StanServer, nats_server: EmbeddedNatsServer) -> None:
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "STAN_URL": stan.url,
            "STAN_CLUSTER": stan.cluster_id,
            "STAN_MONITOR": stan.monitor_url,
            "NATS_URL": nats_server.url,
        }
        self.background: list[CliProcess] = []

    async def run(self, line: str, **more: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", line,
            env={**self.env, **more},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, f"$ {line}\n{out.decode()}{err.decode()}"
        return out.decode()

    async def start(self, line: str) -> CliProcess:
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", f"exec {line}",
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        cli = CliProcess(process)
        self.background.append(cli)
        return cli

    async def close(self) -> None:
        for cli in self.background:
            if cli.process.returncode is None:
                cli.kill()
            await cli.wait()


def load_services() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "guide"}
    for number, source in enumerate(blocks("python"), start=1):
        code = compile(
            source, f"docs/migrating-to-jetstream.md block {number}", "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True,
        )  # fmt: skip
        exec(code, namespace)
    return namespace


class Traffic:
    """tickets-service's HTTP traffic: a ticket sold every few milliseconds, paused
    while tickets-service restarts."""

    def __init__(self, tickets: Any) -> None:
        self.tickets = tickets
        self.sold: list[int] = []
        self.lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            async with self.lock:
                if self._stop.is_set():
                    return
                await self.tickets.sell(n)
            self.sold.append(n)
            n += 1
            await asyncio.sleep(0.01)

    async def more(self, count: int = 20) -> None:
        target = len(self.sold) + count
        await until(lambda: len(self.sold) >= target, 30)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait({self._task})


async def test_the_guide_moves_the_demo_services_under_traffic(
    stan: StanServer,
    nats_server: EmbeddedNatsServer,
) -> None:
    guide = load_services()
    Service, handled = guide["Service"], guide["handled"]
    stan_url = f"{stan.url}?cluster_id={stan.cluster_id}"
    nats_url = nats_server.url
    names = ["search-service", "expiration-service", "tickets-service", "orders-service"]
    services = {name: Service(name, stan_url, stan_url) for name in names}
    for service in services.values():
        await service.start()
    traffic = Traffic(services["tickets-service"])
    shell = Shell(stan, nats_server)
    look, copy, bridge_on, move, check = blocks("console")
    try:
        await traffic.more(30)
        # Step 1: look, then copy the history.
        monitor, dry_run = commands(look)
        assert "ticket:created" in await shell.run(monitor)
        assert "Dry run: nothing was changed." in await shell.run(dry_run)
        (copy_line,) = commands(copy)
        assert "every subject matches." in await shell.run(copy_line)

        # Step 2: the bridge.
        (bridge_line,) = commands(bridge_on)
        bridge = await shell.start(bridge_line)
        await bridge.wait_for_line("bridge running")
        await traffic.more()

        # Step 3: the listeners, one service at a time, publishers still on STAN.
        (move_line,) = commands(move)
        for name in names:
            async with traffic.lock:
                await services[name].stop()
                output = await shell.run(move_line, SERVICE=name)
                assert "created" in output, output
                services[name] = Service(name, nats_url, stan_url)
                await services[name].start()
                if name == "tickets-service":
                    traffic.tickets = services[name]
            await traffic.more()

        # Step 4: the publishers.
        for name in names:
            async with traffic.lock:
                await services[name].stop()
                services[name] = Service(name, nats_url, nats_url)
                await services[name].start()
                if name == "tickets-service":
                    traffic.tickets = services[name]
            await traffic.more()
        await traffic.stop()

        # Every ticket sold went through every service once.
        expected = {}
        for n in traffic.sold:
            ticket, order = f"ticket-{n}", f"order-ticket-{n}"
            expected.update({
                ("orders:ticket", ticket): 1, ("search:updated", ticket): 1,
                ("expiration:order", order): 1, ("orders:expiration", order): 1,
                ("tickets:cancelled", ticket): 1,
            })  # fmt: skip
        await until(lambda: set(handled) >= set(expected), 60)

        # Step 5: the bridge off, and the check.
        bridge.terminate()
        assert await bridge.wait() == 0, bridge.output
        (check_line,) = commands(check)
        final = await shell.run(check_line)
        assert "0 message(s) copied" in final and "every subject matches." in final, final
    finally:
        await traffic.stop()
        for service in services.values():
            if hasattr(service, "_task") and not service._task.done():
                await service.stop()
        await shell.close()
    assert dict(handled) == expected, {k: v for k, v in handled.items() if v != 1}
    print(f"{len(traffic.sold)} tickets sold while the four services moved")


async def test_the_node_snippet_joins_a_queue_group(
    nats_server: EmbeddedNatsServer, jetstream_peer: Path, tmp_path: Path
) -> None:
    from common_events.core import stream_subjects
    from common_events.transports import jetstream

    transport = await jetstream.connect(nats_server.url, subjects=stream_subjects())
    await transport.close()
    described = await run_cli(
        "migrate", "--describe-consumers", "payments-service", "--subject", "payment:created"
    )
    assert described.status == 0, described.stderr
    (snippet,) = blocks("js")
    script = tmp_path / "snippet.js"
    script.write_text(
        "const { connect, consumerOpts } = require('nats')\n"
        "const description = " + described.stdout + "\n"
        ";(async () => {\n"
        f"  const nc = await connect({{ servers: {json.dumps(nats_server.url)} }})\n"
        "  const jsm = await nc.jetstreamManager()\n"
        "  const js = nc.jetstream()\n" + snippet + "  console.log('joined')\n"
        "  await nc.close()\n"
        "})().catch((err) => { console.error(err); process.exit(1) })\n"
    )
    process = await asyncio.create_subprocess_exec(
        str(jetstream_peer), str(script), cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == "joined"
