"""Node tooling for the tests: the pinned tools of tests/typescript, npm run in a clean
environment, and a real private npm registry (verdaccio) on a loopback port.

The registry works as a company's does: the private scope lives only there and needs a
login to read or publish, users come from a password file and nobody can register, and
every other package is proxied from the public registry npm is configured with (a
private registry is a mirror too). ``npm`` runs with its own user configuration and
cache, so nothing on the machine can point it elsewhere.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from common_events.testing.servers import free_loopback_port
from tests.support.servers import missing

NODE_PROJECT = Path(__file__).parent
NODE_MODULES = NODE_PROJECT / "node_modules"
TSC = NODE_MODULES / "typescript" / "bin" / "tsc"
VERDACCIO = NODE_MODULES / "verdaccio" / "bin" / "verdaccio"
SCOPE = "@ticketing"
PACKAGE_NAME = f"{SCOPE}/common-events"
USERNAME = "releaser"
PASSWORD = "correct horse battery staple"
PUBLIC_REGISTRY = "https://registry.npmjs.org/"
READY_TIMEOUT = 60.0


def run(
    command: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        check=False,
    )


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def public_registry() -> str:
    """The registry npm on this machine is configured with (a mirror, or npmjs.org)."""
    result = run(["npm", "config", "get", "registry"], timeout=60)
    url = result.stdout.strip() if result.returncode == 0 else ""
    return url if url.startswith(("http://", "https://")) else PUBLIC_REGISTRY


def reachable(url: str) -> bool:
    """Whether the registry at ``url`` answers at all (npm's own ping)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/-/ping", timeout=15):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if not with 200
    except (OSError, urllib.error.URLError):
        return False


def npm_environment(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without anything that steers npm, plus a user
    configuration file and a cache of ``home``'s own."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.lower().startswith("npm_config_")
        and name not in {"NODE_AUTH_TOKEN", "NPM_TOKEN", "NODE_OPTIONS", "NODE_PATH"}
    }
    home.mkdir(parents=True, exist_ok=True)
    environment |= {
        "npm_config_userconfig": str(home / ".npmrc"),
        "npm_config_cache": str(home / "npm-cache"),
        "npm_config_update_notifier": "false",
        "npm_config_audit": "false",
        "npm_config_fund": "false",
        # Record where every package came from, to check it was this registry.
        "npm_config_omit_lockfile_registry_resolved": "false",
    }
    return environment | extra


def registry_key(url: str) -> str:
    """``//127.0.0.1:4873/``: how .npmrc names a registry for its credentials."""
    return "//" + url.split("://", 1)[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Credentials:
    """What goes into an .npmrc for the registry; secrets as ``${VARIABLE}`` references
    (npm expands them), so no secret is written to a file."""

    lines: tuple[str, ...]
    environment: Mapping[str, str]


class RegistryStartError(RuntimeError):
    """verdaccio exited or did not answer; the message holds its log."""


def _die_with_parent() -> None:
    # In the child before exec (Linux): SIGKILL when the test run dies, so no registry
    # is left on its port.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class NpmRegistry:
    """One verdaccio process with its own storage, password file and configuration."""

    def __init__(self, workdir: Path, *, uplink: str) -> None:
        self.workdir = workdir
        self.uplink = uplink
        self.port = free_loopback_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "verdaccio.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        digest = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
        (self.workdir / "htpasswd").write_text(f"{USERNAME}:{{SHA}}{digest}:releaser\n")
        config = {
            "storage": str(self.storage),
            "auth": {
                # max_users -1: no one registers; a wrong password is only refused.
                "htpasswd": {"file": str(self.workdir / "htpasswd"), "max_users": -1}
            },
            "uplinks": {"public": {"url": self.uplink, "timeout": "120s", "maxage": "30m"}},
            "packages": {
                # The private scope is never looked up upstream and needs a login.
                f"{SCOPE}/*": {
                    "access": "$authenticated",
                    "publish": "$authenticated",
                    "unpublish": "$authenticated",
                },
                "**": {"access": "$all", "publish": "$authenticated", "proxy": "public"},
            },
            "web": {"enable": False},
            "middlewares": {"audit": {"enabled": False}},
            "log": {"type": "stdout", "format": "json", "level": "warn"},
        }
        # JSON is YAML, which is what verdaccio reads.
        (self.workdir / "config.yaml").write_text(json.dumps(config, indent=2))
        command = [
            "node",
            str(VERDACCIO),
            "--config",
            str(self.workdir / "config.yaml"),
            "--listen",
            f"127.0.0.1:{self.port}",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RegistryStartError(
                    f"verdaccio did not start on {self.url}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}-/ping", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def login(self, username: str = USERNAME, password: str = PASSWORD) -> str | None:
        """A token for ``username`` (npm's legacy login), or ``None`` when refused."""
        body = json.dumps({"name": username, "password": password}).encode()
        request = urllib.request.Request(
            f"{self.url}-/user/org.couchdb.user:{username}",
            data=body,
            method="PUT",
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic "
                + base64.b64encode(f"{username}:{password}".encode()).decode(),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                token = json.loads(response.read()).get("token")
        except urllib.error.HTTPError:
            return None
        return str(token) if token else None

    def token_credentials(self, token: str) -> Credentials:
        return Credentials(
            lines=(f"{registry_key(self.url)}:_authToken=${{COMMON_EVENTS_TEST_NPM_TOKEN}}",),
            environment={"COMMON_EVENTS_TEST_NPM_TOKEN": token},
        )

    def password_credentials(self, username: str, password: str) -> Credentials:
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        return Credentials(
            lines=(f"{registry_key(self.url)}:_auth=${{COMMON_EVENTS_TEST_NPM_AUTH}}",),
            environment={"COMMON_EVENTS_TEST_NPM_AUTH": auth},
        )

    def npmrc(self, home: Path, credentials: Credentials | None = None) -> dict[str, str]:
        """Write ``home/.npmrc`` for this registry alone; the environment npm needs."""
        lines = [f"registry={self.url}", f"{SCOPE}:registry={self.url}"]
        if credentials is not None:
            lines += credentials.lines
        home.mkdir(parents=True, exist_ok=True)
        (home / ".npmrc").write_text("\n".join(lines) + "\n")
        return npm_environment(home, **(credentials.environment if credentials else {}))

    def stored(self, name: str = PACKAGE_NAME) -> dict[str, str]:
        """The tarballs stored for ``name``, with their SHA-256."""
        directory = self.storage / name
        if not directory.is_dir():
            return {}
        return {path.name: sha256(path) for path in sorted(directory.glob("*.tgz"))}

    def stored_versions(self, name: str = PACKAGE_NAME) -> list[str]:
        manifest = self.storage / name / "package.json"
        if not manifest.is_file():
            return []
        return sorted(json.loads(manifest.read_text()).get("versions", {}))


def start_registry(workdir: Path) -> NpmRegistry:
    """A running registry in ``workdir`` that proxies the machine's public registry;
    skips (fails under COMMON_EVENTS_REQUIRE_SERVERS=1) when that does not answer."""
    uplink = public_registry()
    if not reachable(uplink):
        missing(
            f"{uplink} does not answer; the private registry proxies the public packages "
            "(ajv, node-nats-streaming, @types/node) from it"
        )
    registry = NpmRegistry(workdir, uplink=uplink)
    try:
        registry.start()
    except RegistryStartError as error:
        pytest.fail(str(error))
    return registry


def node_available() -> str | None:
    """Why the Node tests cannot run here, or ``None`` when they can."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed; the Node tests need Node.js 20 and npm"
    return None


def install_tools() -> subprocess.CompletedProcess[str]:
    """tests/typescript/install.sh: tsc and verdaccio from the lock file."""
    return run(["bash", str(NODE_PROJECT / "install.sh")], timeout=600)
