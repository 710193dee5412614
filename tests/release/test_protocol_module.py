"""The generated NATS Streaming protocol module: what the pinned generator writes, and
nothing in it that ties a service to one protobuf release.

Which protobuf runtimes it really runs on is the dependency matrix's job
(tests/release/test_dependency_matrix.py runs the STAN tests on each major).
"""

from __future__ import annotations

import subprocess
import sys

from tests.release.support import ROOT
from tests.support.servers import missing

PACKAGE_DIR = ROOT / "common_events" / "transports" / "stan"
SCRIPT = ROOT / "scripts" / "generate_protocol.py"


def test_the_committed_module_is_what_the_pinned_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode == 2:
        missing(f"the pinned protobuf generator cannot be installed:\n{result.stderr}")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_module_checks_no_runtime_version() -> None:
    # protoc >= 26 writes a check that refuses every protobuf older than itself; the
    # module would then decide the protobuf of every service that installs us.
    text = (PACKAGE_DIR / "protocol_pb2.py").read_text()
    assert "runtime_version" not in text
    assert "google.protobuf.internal import builder" in text
    # The serialized descriptor is the whole contract: the classes are built from it.
    assert "AddSerializedFile(" in text
