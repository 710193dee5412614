from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.runner import PageRun, run_page


class PageRuns:
    """Each page runs once per test session; its tests read the same run."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._runs: dict[Path, PageRun] = {}

    def __call__(self, page: Path) -> PageRun:
        if page not in self._runs:
            self._runs[page] = run_page(page, self._factory.mktemp(page.stem))
        return self._runs[page]


@pytest.fixture(scope="session")
def page_runs(tmp_path_factory: pytest.TempPathFactory) -> PageRuns:
    return PageRuns(tmp_path_factory)
