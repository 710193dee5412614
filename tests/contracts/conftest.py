from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NODE_PROJECT = Path(__file__).parents[1] / "typescript"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/typescript/node_modules, installed from its lock file when missing."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("Node.js and npm are needed to check the TypeScript and AsyncAPI output")
    subprocess.run(["bash", str(NODE_PROJECT / "install.sh")], check=True, timeout=300)
    return NODE_PROJECT / "node_modules"
