"""docs/authentication.md works as written: its nsc commands make an operator, an
account, a user and a server configuration that a real server accepts, and its service
example connects with the ``.creds`` file (JetStream and NATS Streaming) and with an
NKey seed, and is refused once the user is revoked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.auth.nsc import find_nsc, user_nkey
from tests.auth.support import SecretWatch
from tests.fixtures.jetstream import ServerFactory
from tests.fixtures.stan import ServerFactory as StanServerFactory

DOC = Path(__file__).resolve().parents[2] / "docs" / "authentication.md"


def blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(\w*)\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def the_block(language: str) -> str:
    (block,) = [text for kind, text in blocks() if kind == language]
    return block


def test_every_block_is_one_this_module_runs() -> None:
    assert sorted(kind for kind, _ in blocks()) == ["console", "python"]


def run_console(block: str, cwd: Path) -> None:
    """Each ``$`` line in a shell of its own, with nsc's stores under ``cwd``: the
    commands run as a reader types them, without touching anyone's ~/.local/share/nats."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("XDG_")}
    env.update(HOME=str(cwd / "home"), NKEYS_PATH=str(cwd / "home" / "keys"))
    env["PATH"] = f"{find_nsc().parent}{os.pathsep}{env.get('PATH', '')}"
    for line in block.splitlines():
        if not line.startswith("$ "):
            continue
        result = subprocess.run(["bash", "-c", line[2:]], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"


def run_service(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "service.py"
    script.write_text(the_block("python"))
    return subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_commands_and_the_service_example_work(
    nats_server_factory: ServerFactory,
    stan_server_factory: StanServerFactory,
    watch: SecretWatch,
    tmp_path: Path,
) -> None:
    run_console(the_block("console"), tmp_path)
    creds = tmp_path / "orders-service.creds"
    watch.add_creds(creds)
    server = await nats_server_factory((tmp_path / "server.conf").read_text())

    done = run_service(tmp_path, NATS_URL=server.url, NATS_CREDS=str(creds))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["connected", "to", server.url]

    # NATS Streaming, its embedded server in operator mode as the page says: -c with the
    # resolver's configuration, -sc with the streaming part's own credentials.
    streaming = tmp_path / "streaming.conf"
    streaming.write_text(f'credentials: "{creds}"\n')
    stan_server = stan_server_factory(
        extra_args=("-c", str(tmp_path / "server.conf"), "-sc", str(streaming))
    )
    done = run_service(tmp_path, NATS_URL=stan_server.url, NATS_CREDS=str(creds))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["connected", "to", stan_server.url]

    # Revoked, as the page says: the service fails with one line that says what to check.
    run_console(
        "$ nsc revocations add-user --account orders --name orders-service\n"
        "$ nsc generate config --mem-resolver --config-file server.conf --force\n",
        tmp_path,
    )
    revoked = await nats_server_factory((tmp_path / "server.conf").read_text())
    done = run_service(tmp_path, NATS_URL=revoked.url, NATS_CREDS=str(creds))
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("common_events.errors.AuthenticationError: NATS at"), last
    assert "user 'orders-service' may have been revoked" in last
    watch.check(done.stdout, done.stderr)


async def test_the_service_example_with_an_nkey_seed(
    nats_server_factory: ServerFactory, watch: SecretWatch, tmp_path: Path
) -> None:
    seed = tmp_path / "orders.nk"
    public = user_nkey(find_nsc(), seed)
    watch.add_seed_file(seed)
    server = await nats_server_factory(f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}')
    done = run_service(tmp_path, NATS_URL=server.url, NATS_NKEY_SEED=str(seed))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["connected", "to", server.url]
    watch.check(done.stdout, done.stderr)
