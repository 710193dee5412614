"""The README's quick start works as written."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_shows_the_two_commands_first() -> None:
    text = README.read_text()
    first_console = re.search(r"```console\n(.*?)```", text, flags=re.DOTALL)
    assert first_console is not None
    commands = [line.split("#")[0].strip() for line in first_console.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


def test_readme_usage_example_runs_and_stops_on_sigint(tmp_path: Path) -> None:
    (example,) = [block for block in python_blocks() if "run_service" in block]
    script = tmp_path / "service.py"
    script.write_text(example)
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the listener handled the event
        assert line.split() == ["t1", "Concert", "20.0"]
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
