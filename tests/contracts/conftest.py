from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import missing

NODE_PROJECT = Path(__file__).parents[1] / "typescript"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/typescript/node_modules, installed from its lock file when missing.

    Without Node.js the tests that need it skip, or fail under
    COMMON_EVENTS_REQUIRE_SERVERS=1 (CI installs Node)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        missing("Node.js and npm are needed to check the TypeScript and AsyncAPI output")
    subprocess.run(["bash", str(NODE_PROJECT / "install.sh")], check=True, timeout=600)
    return NODE_PROJECT / "node_modules"
