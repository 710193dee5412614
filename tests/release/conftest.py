from __future__ import annotations

from pathlib import Path

import pytest

from tests.release.support import Distributions, build_distributions


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cells(*names): the dependency-matrix cells a test looks at")


@pytest.fixture(scope="session")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> Distributions:
    """The sdist and wheel, built once for every release test of the session."""
    outdir: Path = tmp_path_factory.mktemp("dist")
    return build_distributions(outdir)
