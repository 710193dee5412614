"""Runs a page's blocks as ``tests/docs/pages.py`` describes, each part in a process of
its own, in a directory of its own, against real brokers behind the placeholder URLs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.docs.pages import Block, blocks, relative
from tests.docs.servers import Brokers, unserved_urls

HARNESS = Path(__file__).with_name("harness.py")
SCRIPT_TIMEOUT = 300.0
SERVICE_FIRST_LINE_TIMEOUT = 60.0
SERVICE_STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Run:
    """One process: what ran and what it said."""

    what: str
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"{self.what} exited with {self.returncode}\n--- stdout\n{self.stdout}"
            f"\n--- stderr\n{self.stderr}"
        )


@dataclass
class PageRun:
    page: Path
    script: Run | None = None
    services: list[Run] = field(default_factory=list)
    tests: Run | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ran_anything(self) -> bool:
        return self.script is not None or bool(self.services) or self.tests is not None


def clean_environment() -> dict[str, str]:
    """The environment of a reader's shell: none of this test run's settings."""
    environment = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "COMMON_EVENTS_URL", "PYTEST_CURRENT_TEST"):
        environment.pop(name, None)
    return environment


def run_page(page: Path, workdir: Path) -> PageRun:
    result = PageRun(page)
    runnable = [b for b in blocks(page) if b.kind in ("script", "service", "file")]
    runnable = [b for b in runnable if b.lang == "python" or b.kind == "file"]
    for block in runnable:
        for url in unserved_urls(block.source):
            result.problems.append(
                f"{block.name}: no test broker behind {url!r}; use a placeholder of "
                "tests/docs/servers.py (stan://nats-srv:4222, nats://nats-srv:4222, "
                "tls://nats-srv:4222, nats://a:4222,nats://b:4222,nats://c:4222) or say "
                "which test runs the page (<!-- tested by PATH -->)"
            )
    if result.problems or not runnable:
        return result
    brokers = Brokers(workdir / "brokers")
    try:
        script = [b for b in runnable if b.kind == "script"]
        services = [b for b in runnable if b.kind == "service"]
        files = [b for b in runnable if b.kind == "file"]
        if script:
            result.script = _run_script(script, brokers, workdir / "script")
        for number, block in enumerate(services, start=1):
            result.services.append(_run_service(block, brokers, workdir / f"service{number}"))
        if files:
            result.tests = _run_project(files, brokers, workdir / "project")
    finally:
        brokers.close()
    return result


def padded(block: Block, source: str) -> str:
    """The source with as many lines before it as the page has: a traceback's line
    numbers are the page's."""
    return "\n" * (block.line - 1) + source


def _prepare(block_list: list[Block], brokers: Brokers, directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    brokers.serve("".join(block.source for block in block_list), directory)
    return [brokers.replace(block.source) for block in block_list]


def _run_script(script: list[Block], brokers: Brokers, directory: Path) -> Run:
    sources = _prepare(script, brokers, directory)
    page = relative(script[0].page)
    blocks_file = directory / "blocks.json"
    blocks_file.write_text(
        json.dumps(
            [
                {"name": f"{page} (block at line {block.line})", "source": padded(block, source)}
                for block, source in zip(script, sources, strict=True)
            ]
        ),
        encoding="utf-8",
    )
    completed = subprocess.run(
        [sys.executable, str(HARNESS), str(blocks_file)],
        cwd=directory,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
    )
    return Run(
        f"the script of {page} ({len(script)} blocks)",
        completed.returncode,
        completed.stdout,
        completed.stderr,
    )


def _run_service(block: Block, brokers: Brokers, directory: Path) -> Run:
    """Start the program, wait for its first line, Ctrl-C it, and expect exit 0."""
    (source,) = _prepare([block], brokers, directory)
    program = directory / "service.py"
    program.write_text(padded(block, source), encoding="utf-8")
    stderr_path = directory / "stderr.txt"
    what = f"the program at {block.name}"
    lines: list[str] = []
    printed = threading.Event()
    with stderr_path.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(program)],
            cwd=directory,
            env=clean_environment(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                printed.set()
            printed.set()  # end of output

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            if printed.wait(SERVICE_FIRST_LINE_TIMEOUT) and lines:
                process.send_signal(signal.SIGINT)
            else:
                what += f" (printed nothing within {SERVICE_FIRST_LINE_TIMEOUT:g}s; killed)"
                process.kill()
            try:
                status = process.wait(SERVICE_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                what += f" (still running {SERVICE_STOP_TIMEOUT:g}s after Ctrl-C; killed)"
                process.kill()
                process.wait()
                status = -signal.SIGKILL
            reader.join(SERVICE_STOP_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if not lines:
        status = status or -signal.SIGKILL
    return Run(what, status, "".join(lines), stderr_path.read_text(encoding="utf-8"))


def _run_project(files: list[Block], brokers: Brokers, directory: Path) -> Run:
    sources = _prepare(files, brokers, directory)
    for block, source in zip(files, sources, strict=True):
        path = directory / block.argument
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider"],
        cwd=directory,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
    )
    names = ", ".join(block.argument for block in files)
    return Run(
        f"pytest on the files of {relative(files[0].page)} ({names})",
        completed.returncode,
        completed.stdout,
        completed.stderr,
    )
