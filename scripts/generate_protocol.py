"""Regenerate ``protocol_pb2.py`` and ``protocol_pb2.pyi`` from ``protocol.proto``.

    python scripts/generate_protocol.py            # rewrite the committed files
    python scripts/generate_protocol.py --check    # exit 1 if they differ from the output

The generator is pinned on purpose. Since protobuf 5.26, protoc writes a
``runtime_version.ValidateProtobufRuntimeVersion(...)`` call into every ``_pb2.py``,
which refuses any protobuf runtime older than the generator: the module generated
by a protoc of 2026 would force that year's protobuf on every service that installs
this package. The protoc of grpcio-tools 1.62 (protobuf 25.x) is the last one without
that call; what it writes (a serialized descriptor handed to
``google.protobuf.internal.builder``) runs unchanged on every protobuf from 3.20, the
release that added ``builder``, through 7.x. The protobuf runtime still does all
the encoding and decoding.

The generator lives in its own environment under ``.venv-matrix/`` (its pins would
hold back the development environment's protobuf), created on first use.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "common_events" / "transports" / "stan"
PROTO = PROTO_DIR / "protocol.proto"
OUTPUTS = ("protocol_pb2.py", "protocol_pb2.pyi")

GENERATOR = "grpcio-tools==1.62.3"
GENERATOR_ENV = ROOT / ".venv-matrix" / "generator-grpcio-tools-1.62.3"


class GeneratorUnavailable(RuntimeError):
    """The pinned generator cannot be installed (no package index, say)."""


def generator_python() -> Path:
    """The Python of the generator's environment, created once."""
    python = GENERATOR_ENV / "bin" / "python"
    marker = GENERATOR_ENV / ".installed"
    if not marker.exists():
        venv.create(GENERATOR_ENV, clear=True, with_pip=False)
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", GENERATOR],
            timeout=600,
            check=False,
        )
        if installed.returncode != 0:
            raise GeneratorUnavailable(f"pip could not install {GENERATOR}")
        marker.write_text(GENERATOR + "\n")
    return python


def generate(outdir: Path) -> dict[str, str]:
    """Run the pinned protoc into ``outdir``; the generated files by name."""
    subprocess.run(
        [
            str(generator_python()),
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={outdir}",
            f"--pyi_out={outdir}",
            str(PROTO),
        ],
        check=True,
        timeout=120,
    )
    return {name: (outdir / name).read_text() for name in OUTPUTS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare the committed files with the generator's output instead of writing",
    )
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            fresh = generate(Path(scratch))
    except GeneratorUnavailable as error:
        print(f"generate_protocol: {error}", file=sys.stderr)
        return 2
    if not args.check:
        for name, text in fresh.items():
            (PROTO_DIR / name).write_text(text)
            print(f"wrote {(PROTO_DIR / name).relative_to(ROOT)}")
        return 0
    stale = 0
    for name, text in fresh.items():
        committed = (PROTO_DIR / name).read_text()
        if committed != text:
            stale += 1
            sys.stdout.writelines(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    f"committed/{name}",
                    f"generated/{name}",
                )
            )
    if stale:
        print(
            f"{stale} generated file(s) differ from protocol.proto; run "
            "python scripts/generate_protocol.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
