"""Every Python block of README.md and of every docs page runs: here, as the page's
script, program or test project (``tests/docs/pages.py`` says how a page asks), or in
the test the page names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.conftest import PageRuns
from tests.docs.pages import check_tested_by, declared_tests, pages, python_blocks, relative

PAGES = pages()


@pytest.mark.parametrize("page", PAGES, ids=[relative(page) for page in PAGES])
def test_every_python_block_of_the_page_runs(page: Path, page_runs: PageRuns) -> None:
    named = declared_tests(page)
    if named:
        for path in named:
            check_tested_by(page, path)
        return
    for block in python_blocks(page):
        if block.kind == "tested by":
            check_tested_by(page, block.argument)
    run = page_runs(page)
    assert not run.problems, "\n".join(run.problems)
    for part in [run.script, *run.services, run.tests]:
        if part is not None:
            assert part.returncode == 0, part.describe()
    if run.tests is not None:
        summary = run.tests.stdout.strip().splitlines()[-1]
        assert " passed" in summary and "skipped" not in summary, run.tests.describe()
    runnable = [block for block in python_blocks(page) if block.kind != "tested by"]
    assert run.ran_anything or not runnable


def test_the_pages_are_found() -> None:
    names = {relative(page) for page in PAGES}
    assert {"README.md", "docs/conformance.md", "docs/outbox.md"} <= names
