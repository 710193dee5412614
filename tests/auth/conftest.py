"""Operators, accounts and users made with ``nsc``, servers that trust them, and a watch
on every log record of each test for the secrets the test made.

Without ``nsc`` (``scripts/install-nsc.sh``) or a server binary the tests skip with the
reason, except under ``COMMON_EVENTS_REQUIRE_SERVERS=1``, where they fail.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.nsc import Operator, find_nsc
from tests.auth.support import SecretWatch
from tests.support.logs import attached
from tests.support.servers import missing


@pytest.fixture(autouse=True)
def nkeys_installed() -> None:
    """nats-py signs with the ``nkeys`` package (its ``nkeys`` extra)."""
    if importlib.util.find_spec("nkeys") is None:
        missing("the nkeys package is not installed: pip install 'common-events[nkeys]'")


@pytest.fixture(autouse=True)
def watch() -> Iterator[SecretWatch]:
    """Every record at DEBUG; after the test, none may hold a JWT or seed it made."""
    with attached(SecretWatch()) as handler:
        yield handler
    if handler.secrets:
        handler.check(*handler.texts)


@pytest.fixture(scope="session")
def nsc_binary() -> Path:
    return find_nsc()


@pytest.fixture
def operator(nsc_binary: Path, tmp_path: Path, watch: SecretWatch) -> Operator:
    """An operator with a system account and the account ``APP`` (JetStream enabled)."""
    return Operator(nsc_binary, tmp_path / "nsc", on_creds=watch.add_creds)


@pytest.fixture
def foreign_operator(nsc_binary: Path, tmp_path: Path, watch: SecretWatch) -> Operator:
    """Another operator, whose users no server of ``operator`` knows."""
    return Operator(nsc_binary, tmp_path / "nsc-foreign", name="ELSEWHERE",
                    on_creds=watch.add_creds)  # fmt: skip
