"""The documentation pages and their code blocks, with what each block asks of its test.

A page is README.md or any ``docs/*.md``. Its ```python blocks run in order as one
script (top-level ``await`` allowed, as in ``python -m asyncio``), unless an HTML comment
on the line before a block says otherwise:

- ``<!-- snippet: service -->``: a program of its own; it prints a line, then Ctrl-C
  (SIGINT) stops it and it exits 0;
- ``<!-- snippet: file NAME -->``: the file NAME of a small project (any language: a
  ``pyproject.toml`` too), whose tests pytest runs and which must all pass;
- ``<!-- snippet: tested by PATH -->``: another test runs this block.

A page that another test runs as a whole says so at its top:
``<!-- tested by tests/outbox/test_docs.py -->`` (several paths: comma-separated). That
file must exist, hold tests and mention the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

FENCE = re.compile(r"^```(?P<lang>[\w.+-]*)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
SNIPPET = re.compile(
    r"<!--\s*snippet:\s*(?P<kind>service|file|tested by)\b\s*(?P<arg>[^>]*?)\s*-->"
)
TESTED_BY = re.compile(r"<!--\s*tested by\s+(?P<paths>[^>]+?)\s*-->")


@dataclass(frozen=True)
class Block:
    page: Path
    lang: str
    source: str
    line: int
    """The line of the page where the code starts (after the fence)."""
    kind: str = "script"
    """``script`` (the default), ``service``, ``file`` or ``tested by``."""
    argument: str = ""

    @property
    def name(self) -> str:
        return f"{relative(self.page)} line {self.line}"


def relative(page: Path) -> str:
    return page.resolve().relative_to(ROOT).as_posix()


def pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        directive = SNIPPET.search(before)
        line = text.count("\n", 0, match.start("body")) + 1
        kind, argument = ("script", "")
        if directive is not None:
            kind, argument = directive["kind"], directive["arg"]
        found.append(Block(page, match["lang"], match["body"], line, kind, argument))
    return found


def python_blocks(page: Path) -> list[Block]:
    return [block for block in blocks(page) if block.lang == "python"]


def declared_tests(page: Path) -> list[str]:
    """The test files that the page says run it, if any."""
    match = TESTED_BY.search(page.read_text(encoding="utf-8"))
    if match is None:
        return []
    return [path.strip() for path in match["paths"].split(",") if path.strip()]


def check_tested_by(page: Path, path: str) -> None:
    """The test file exists, holds tests and mentions the page."""
    test_file = ROOT / path
    where = f"{relative(page)} says it is tested by {path}"
    assert test_file.is_file(), f"{where}, which does not exist"
    source = test_file.read_text(encoding="utf-8")
    assert re.search(r"^\s*(async )?def test_", source, re.M), f"{where}, which holds no test"
    assert page.name in source, f"{where}, which never mentions {page.name}"
