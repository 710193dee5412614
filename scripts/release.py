#!/usr/bin/env python3
"""Cut a release of common-events: check the tag, build, check, upload.

    python scripts/release.py check-tag v0.1.0
    python scripts/release.py build [--outdir dist]
    python scripts/release.py upload --repository-url https://pypi.internal.example/ [--outdir dist]
    python scripts/release.py all --tag v0.1.0 --repository-url ... [--outdir dist]

Upload credentials come from TWINE_USERNAME / TWINE_PASSWORD, never from the command
line (it would show in process lists and CI logs). Exit codes say what went wrong, so
CI and people can tell a typo from a real conflict:

    0 done   1 a tool failed   2 tag and __version__ differ   3 version already on the index
    4 the index refused the credentials

Only the standard library here; ``build`` and ``twine`` run as ``python -m``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION_FILE = ROOT / "common_events" / "__init__.py"
DISTRIBUTION = "common_events"  # the file-name form of "common-events"

# SemVer 2.0.0 as PEP 440 spells it for the cases we publish: 1.2.3, 1.2.3rc1, 1.2.3.post1.
VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$")

EXIT_TOOL_FAILED = 1
EXIT_TAG_MISMATCH = 2
EXIT_ALREADY_RELEASED = 3
EXIT_REFUSED_CREDENTIALS = 4


class ReleaseError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def package_version(version_file: Path = VERSION_FILE) -> str:
    """``__version__`` as written in the package, read without importing it (the release
    job need not have the package's dependencies installed)."""
    match = re.search(r'^__version__\s*=\s*"([^"]+)"\s*$', version_file.read_text(), re.M)
    if match is None:
        raise ReleaseError(f'no __version__ = "..." line in {version_file}', EXIT_TOOL_FAILED)
    version = match.group(1)
    if not VERSION_PATTERN.match(version):
        raise ReleaseError(
            f"__version__ {version!r} in {version_file} is not MAJOR.MINOR.PATCH", EXIT_TOOL_FAILED
        )
    return version


def check_tag(tag: str, version: str) -> None:
    """The tag must be ``v`` + ``__version__`` exactly (``refs/tags/`` is allowed)."""
    name = tag.removeprefix("refs/tags/")
    if name != f"v{version}":
        raise ReleaseError(
            f"tag {name!r} does not match __version__ {version!r} in "
            f"{VERSION_FILE.relative_to(ROOT)}: tag v{version}, or bump __version__ "
            "and tag again",
            EXIT_TAG_MISMATCH,
        )


def run(command: Sequence[str], *, capture: bool = False) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(command), flush=True)
    return subprocess.run(
        command, cwd=ROOT, text=True, check=False, capture_output=capture, stdin=subprocess.DEVNULL
    )


def artifacts(outdir: Path, version: str) -> list[Path]:
    """The sdist and the wheel of ``version`` in ``outdir`` (and nothing older)."""
    found = sorted(outdir.glob(f"{DISTRIBUTION}-{version}.tar.gz")) + sorted(
        outdir.glob(f"{DISTRIBUTION}-{version}-*.whl")
    )
    if len(found) != 2:
        names = ", ".join(p.name for p in found) or "nothing"
        raise ReleaseError(
            f"expected one sdist and one wheel of {version} in {outdir}, found {names}; "
            "run the build step first",
            EXIT_TOOL_FAILED,
        )
    return found


def build(outdir: Path, version: str) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    # Files of an earlier build must not be checked or uploaded with this one's.
    for stale in outdir.glob(f"{DISTRIBUTION}-*"):
        stale.unlink()
    if run([sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)]).returncode:
        raise ReleaseError("python -m build failed (see above)", EXIT_TOOL_FAILED)
    built = artifacts(outdir, version)
    checked = run([sys.executable, "-m", "twine", "check", "--strict", *map(str, built)])
    if checked.returncode:
        raise ReleaseError("twine check --strict failed (see above)", EXIT_TOOL_FAILED)
    return built


def upload(outdir: Path, version: str, repository_url: str) -> None:
    files = artifacts(outdir, version)
    result = run(
        [
            sys.executable,
            "-m",
            "twine",
            "--no-color",
            "upload",
            # --verbose prints the body of the index's answer, which is where it says
            # "already exists"; without it twine shows only "400 Bad Request".
            "--verbose",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            repository_url,
            *map(str, files),
        ],
        capture=True,
    )
    output = result.stdout + result.stderr
    sys.stdout.write(output)
    if result.returncode == 0:
        print(f"release: uploaded common-events {version} to {repository_url}")
        return
    # pypiserver and PyPI answer 400 with "already exists" in the body, other indexes
    # (older pypiserver, some proxies) 409 Conflict.
    if re.search(r"\b409\b|already exists", output, re.I):
        raise ReleaseError(
            f"common-events {version} is already on {repository_url}. An index never "
            "replaces a published version: bump __version__ in common_events/__init__.py, "
            "add a CHANGELOG section and tag the new version",
            EXIT_ALREADY_RELEASED,
        )
    if re.search(r"\b(401|403)\b|credentials", output, re.I):
        raise ReleaseError(
            f"{repository_url} refused the credentials: set TWINE_USERNAME and "
            "TWINE_PASSWORD to an account that may upload",
            EXIT_REFUSED_CREDENTIALS,
        )
    raise ReleaseError(f"twine upload to {repository_url} failed (see above)", EXIT_TOOL_FAILED)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    steps = parser.add_subparsers(dest="step", required=True)
    tag_step = steps.add_parser("check-tag", help="check that TAG is v + __version__")
    tag_step.add_argument("tag")
    build_step = steps.add_parser("build", help="build sdist and wheel, twine check --strict")
    upload_step = steps.add_parser("upload", help="upload the built files of __version__")
    all_step = steps.add_parser("all", help="check-tag, build and upload")
    all_step.add_argument("--tag", required=True)
    for step in (build_step, upload_step, all_step):
        step.add_argument("--outdir", type=Path, default=ROOT / "dist")
    for step in (upload_step, all_step):
        step.add_argument("--repository-url", required=True, help="the index's upload URL")
    args = parser.parse_args(argv)
    if "outdir" in args:
        args.outdir = args.outdir.resolve()  # the tools run in the repository root

    try:
        version = package_version()
        if args.step in ("check-tag", "all"):
            check_tag(args.tag, version)
            print(f"release: tag matches __version__ {version}")
        if args.step in ("build", "all"):
            for path in build(args.outdir, version):
                print(f"release: built {path}")
        if args.step in ("upload", "all"):
            upload(args.outdir, version, args.repository_url)
    except ReleaseError as error:
        print(f"release: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
