#!/usr/bin/env python3
"""Cut a release of common-events and its npm package: check, build, upload, publish.

    python scripts/release.py check-tag v0.1.0
    python scripts/release.py build [--outdir dist]
    python scripts/release.py check-contracts
    python scripts/release.py npm-pack --name @ticketing/common-events --registry URL
    python scripts/release.py npm-check --registry URL
    python scripts/release.py upload --repository-url https://pypi.internal.example/
    python scripts/release.py npm-publish --registry URL
    python scripts/release.py all --tag v0.1.0 --repository-url URL \
        [--npm-name @ticketing/common-events --npm-registry URL]

Every step but check-tag and check-contracts takes ``--outdir`` (default ``dist``).

Both packages carry ``__version__``, and the contracts decide its major version
(``check-contracts`` runs ``common-events schema check --release``). ``check-contracts``
and ``npm-pack`` run the installed common-events, which must be this version (the built
wheel, in the release job). ``npm-check`` runs before anything is uploaded, so a
refused login or a version already on the npm registry stops the release before the
Python index has it.

Credentials come from the environment, never from the command line (it would show in
process lists and CI logs): TWINE_USERNAME / TWINE_PASSWORD for the index; NPM_TOKEN,
or NPM_USERNAME / NPM_PASSWORD, for the npm registry. Exit codes say what went wrong,
so CI and people can tell a typo from a real conflict:

    0 done   1 a tool failed   2 tag and __version__ differ
    3 version already on the index or the npm registry   4 credentials refused
    5 the contracts break a release of the same major version

Only the standard library here; ``build``, ``twine`` and ``common-events`` run as
``python -m``, and ``npm`` as itself.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
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
EXIT_CONTRACT_BREAK = 5

# What npm and the registries answer when a version is there already: npm itself, when
# it sees the version in the registry's metadata; verdaccio 409; npmjs.org 403.
ALREADY_PUBLISHED = re.compile(
    r"cannot publish over the previously published versions|EPUBLISHCONFLICT|\bE409\b", re.I
)
REFUSED_LOGIN = re.compile(r"\bE401\b|\bENEEDAUTH\b|\bE403\b|unauthorized|forbidden", re.I)


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


def run(
    command: Sequence[str],
    *,
    capture: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(command), flush=True)
    return subprocess.run(
        command,
        cwd=cwd,
        text=True,
        check=False,
        capture_output=capture,
        stdin=subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
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


def check_contracts(version: str) -> None:
    """The contracts decide the major version: ``common-events schema check --release``."""
    installed = installed_version()
    if installed != version:
        raise ReleaseError(
            f"the installed common-events is {installed}, this tree is {version}: install "
            "the built wheel (pip install dist/*.whl) first",
            EXIT_TOOL_FAILED,
        )
    result = run(
        [sys.executable, "-m", "common_events.cli.main", "schema", "check", "--release", version]
    )
    if result.returncode == 1:
        raise ReleaseError(
            f"the contracts do not allow releasing {version} (see above): a breaking change "
            "needs a new major version, for the Python and the npm package alike",
            EXIT_CONTRACT_BREAK,
        )
    if result.returncode:
        raise ReleaseError("common-events schema check failed (see above)", EXIT_TOOL_FAILED)


def installed_version() -> str:
    result = subprocess.run(
        [sys.executable, "-c", "import common_events; print(common_events.__version__)"],
        cwd=Path(tempfile.gettempdir()),  # the installed package, not the working tree's
        text=True,
        capture_output=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode:
        raise ReleaseError(
            f"common-events is not installed here: {result.stderr.strip()}", EXIT_TOOL_FAILED
        )
    return result.stdout.strip()


# -- the npm package --------------------------------------------------------------


def release_part(version: str) -> str:
    """``1.2.0rc1`` -> ``1.2.0``."""
    match = re.match(r"\d+\.\d+\.\d+", version)
    if match is None:
        raise ReleaseError(f"{version!r} does not start with MAJOR.MINOR.PATCH", EXIT_TOOL_FAILED)
    return match.group(0)


def npm_tarballs(outdir: Path) -> list[Path]:
    return sorted(outdir.glob("*.tgz"))


def tarball_manifest(tarball: Path) -> dict[str, object]:
    with tarfile.open(tarball, "r:gz") as archive:
        member = archive.extractfile("package/package.json")
        if member is None:
            raise ReleaseError(f"{tarball} holds no package/package.json", EXIT_TOOL_FAILED)
        manifest: dict[str, object] = json.loads(member.read())
    return manifest


def npm_tarball(outdir: Path, version: str) -> tuple[Path, str, str]:
    """The one npm tarball in ``outdir``, its package name and npm version."""
    found = npm_tarballs(outdir)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "nothing"
        raise ReleaseError(
            f"expected one npm tarball in {outdir}, found {names}; run npm-pack first",
            EXIT_TOOL_FAILED,
        )
    manifest = tarball_manifest(found[0])
    name, npm_version = str(manifest.get("name")), str(manifest.get("version"))
    # npm spells pre-releases 1.2.0-rc.1; the release part must be this version's.
    if npm_version.split("-")[0] != release_part(version):
        raise ReleaseError(
            f"{found[0].name} is version {npm_version}, not {version}", EXIT_TOOL_FAILED
        )
    return found[0], name, npm_version


def npm_pack(outdir: Path, version: str, name: str, registry: str | None) -> Path:
    """Write the npm package with the installed common-events, then ``npm pack`` it."""
    installed = installed_version()
    if installed != version:
        raise ReleaseError(
            f"the installed common-events is {installed}, this tree is {version}: install "
            "the built wheel (pip install dist/*.whl) first",
            EXIT_TOOL_FAILED,
        )
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in npm_tarballs(outdir):
        stale.unlink()
    with tempfile.TemporaryDirectory(prefix="common-events-npm-") as work:
        package = Path(work) / "package"
        command = [sys.executable, "-m", "common_events.cli.main", "schema", "npm", str(package)]
        command += ["--name", name] + (["--registry", registry] if registry else [])
        if run(command).returncode:
            raise ReleaseError("common-events schema npm failed (see above)", EXIT_TOOL_FAILED)
        packed = run(
            ["npm", "pack", str(package), "--pack-destination", str(outdir)],
            env=npm_environment(Path(work), registry, credentials=False),
        )
        if packed.returncode:
            raise ReleaseError("npm pack failed (see above)", EXIT_TOOL_FAILED)
    return npm_tarball(outdir, version)[0]


def npm_environment(home: Path, registry: str | None, *, credentials: bool) -> dict[str, str]:
    """The environment npm runs in: a user configuration of its own that names the
    registry and refers to the credentials in the environment (npm expands
    ``${VARIABLE}``), so no secret is written to a file or a command line."""
    environment = {
        key: value for key, value in os.environ.items() if not key.lower().startswith("npm_config_")
    }
    lines = []
    if registry is not None:
        lines.append(f"registry={registry}")
        if credentials:
            key = "//" + registry.split("://", 1)[1]
            if os.environ.get("NPM_TOKEN"):
                lines.append(f"{key}:_authToken=${{NPM_TOKEN}}")
            elif os.environ.get("NPM_USERNAME") and os.environ.get("NPM_PASSWORD"):
                login = f"{os.environ['NPM_USERNAME']}:{os.environ['NPM_PASSWORD']}"
                environment["RELEASE_NPM_AUTH"] = base64.b64encode(login.encode()).decode()
                lines.append(f"{key}:_auth=${{RELEASE_NPM_AUTH}}")
            else:
                raise ReleaseError(
                    "no npm credentials: set NPM_TOKEN, or NPM_USERNAME and NPM_PASSWORD",
                    EXIT_REFUSED_CREDENTIALS,
                )
    userconfig = home / "release.npmrc"
    userconfig.write_text("\n".join(lines) + "\n")
    userconfig.chmod(0o600)
    environment["npm_config_userconfig"] = str(userconfig)
    environment["npm_config_update_notifier"] = "false"
    return environment


def npm_check(outdir: Path, version: str, registry: str, home: Path) -> tuple[Path, str, str]:
    """The registry takes the credentials and does not have this version yet."""
    tarball, name, npm_version = npm_tarball(outdir, version)
    environment = npm_environment(home, registry, credentials=True)
    who = run(["npm", "whoami", "--registry", registry], capture=True, env=environment)
    if who.returncode:
        sys.stdout.write(who.stdout + who.stderr)
        if REFUSED_LOGIN.search(who.stdout + who.stderr):
            raise ReleaseError(
                f"{registry} refused the npm credentials: set NPM_TOKEN (or NPM_USERNAME "
                "and NPM_PASSWORD) to an account that may publish",
                EXIT_REFUSED_CREDENTIALS,
            )
        raise ReleaseError(f"npm whoami on {registry} failed (see above)", EXIT_TOOL_FAILED)
    print(f"release: {registry} knows us as {who.stdout.strip()}")
    view = run(
        ["npm", "view", f"{name}@{npm_version}", "version", "--registry", registry],
        capture=True,
        env=environment,
    )
    if view.returncode == 0 and view.stdout.strip():
        raise ReleaseError(
            f"{name} {npm_version} is already on {registry}. A registry never replaces a "
            "published version: bump __version__ and tag the new version",
            EXIT_ALREADY_RELEASED,
        )
    if view.returncode and "E404" not in view.stdout + view.stderr:
        sys.stdout.write(view.stdout + view.stderr)
        # With a password npm answers whoami itself; the registry's refusal shows here,
        # where a private scope needs a login to be read.
        if REFUSED_LOGIN.search(view.stdout + view.stderr):
            raise ReleaseError(
                f"{registry} refused the npm credentials when reading {name}",
                EXIT_REFUSED_CREDENTIALS,
            )
        raise ReleaseError(f"npm view on {registry} failed (see above)", EXIT_TOOL_FAILED)
    return tarball, name, npm_version


def npm_publish(outdir: Path, version: str, registry: str) -> None:
    with tempfile.TemporaryDirectory(prefix="common-events-npm-") as home:
        tarball, name, npm_version = npm_check(outdir, version, registry, Path(home))
        command = ["npm", "publish", str(tarball), "--registry", registry]
        if "-" in npm_version:
            command += ["--tag", "next"]  # a pre-release is not what `npm install` gets
        result = run(
            command,
            capture=True,
            env=npm_environment(Path(home), registry, credentials=True),
        )
    output = result.stdout + result.stderr
    sys.stdout.write(output)
    if result.returncode == 0:
        print(f"release: published {name} {npm_version} to {registry}")
        return
    if ALREADY_PUBLISHED.search(output):
        raise ReleaseError(
            f"{name} {npm_version} is already on {registry}; bump __version__ and tag the "
            "new version",
            EXIT_ALREADY_RELEASED,
        )
    if REFUSED_LOGIN.search(output):
        raise ReleaseError(
            f"{registry} refused to publish {name} with these credentials",
            EXIT_REFUSED_CREDENTIALS,
        )
    raise ReleaseError(f"npm publish to {registry} failed (see above)", EXIT_TOOL_FAILED)


def require_npm() -> None:
    if shutil.which("npm") is None:
        raise ReleaseError("npm is not installed (Node.js 20 or later)", EXIT_TOOL_FAILED)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    steps = parser.add_subparsers(dest="step", required=True)
    tag_step = steps.add_parser("check-tag", help="check that TAG is v + __version__")
    tag_step.add_argument("tag")
    build_step = steps.add_parser("build", help="build sdist and wheel, twine check --strict")
    upload_step = steps.add_parser("upload", help="upload the built files of __version__")
    steps.add_parser(
        "check-contracts",
        help="check that the contracts allow __version__ (a breaking change needs a new major)",
    )
    pack_step = steps.add_parser(
        "npm-pack", help="write the npm package of __version__ and npm pack it into OUTDIR"
    )
    pack_step.add_argument("--name", required=True, help="e.g. @ticketing/common-events")
    pack_step.add_argument("--registry", help="the registry it is published to")
    npm_check_step = steps.add_parser(
        "npm-check", help="check the npm credentials and that the version is not published"
    )
    publish_step = steps.add_parser("npm-publish", help="publish the npm tarball of OUTDIR")
    for step in (npm_check_step, publish_step):
        step.add_argument("--registry", required=True, help="the npm registry's URL")
    all_step = steps.add_parser(
        "all", help="check-tag, build, upload (and check-contracts and the npm steps)"
    )
    all_step.add_argument("--tag", required=True)
    all_step.add_argument("--npm-name", help="also publish the npm package under this name")
    all_step.add_argument("--npm-registry", help="... to this registry")
    for step in (build_step, upload_step, pack_step, npm_check_step, publish_step, all_step):
        step.add_argument("--outdir", type=Path, default=ROOT / "dist")
    for step in (upload_step, all_step):
        step.add_argument("--repository-url", required=True, help="the index's upload URL")
    args = parser.parse_args(argv)
    if "outdir" in args:
        args.outdir = args.outdir.resolve()  # the tools run in the repository root
    npm = args.step in ("npm-pack", "npm-check", "npm-publish") or (
        args.step == "all" and args.npm_name is not None
    )
    if args.step == "all" and (args.npm_name is None) != (args.npm_registry is None):
        parser.error("all: give both --npm-name and --npm-registry, or neither")

    try:
        version = package_version()
        if npm:
            require_npm()
        if args.step in ("check-tag", "all"):
            check_tag(args.tag, version)
            print(f"release: tag matches __version__ {version}")
        if args.step in ("build", "all"):
            for path in build(args.outdir, version):
                print(f"release: built {path}")
        if args.step == "check-contracts" or (args.step == "all" and npm):
            check_contracts(version)
            print(f"release: the contracts allow {version}")
        if args.step == "npm-pack" or (args.step == "all" and npm):
            name = args.name if args.step == "npm-pack" else args.npm_name
            registry = args.registry if args.step == "npm-pack" else args.npm_registry
            print(f"release: packed {npm_pack(args.outdir, version, name, registry)}")
        if args.step == "npm-check" or (args.step == "all" and npm):
            registry = args.registry if args.step == "npm-check" else args.npm_registry
            with tempfile.TemporaryDirectory(prefix="common-events-npm-") as home:
                _, name, npm_version = npm_check(args.outdir, version, registry, Path(home))
            print(f"release: {registry} takes {name} {npm_version}")
        if args.step in ("upload", "all"):
            upload(args.outdir, version, args.repository_url)
        if args.step == "npm-publish" or (args.step == "all" and npm):
            registry = args.registry if args.step == "npm-publish" else args.npm_registry
            npm_publish(args.outdir, version, registry)
    except ReleaseError as error:
        print(f"release: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
