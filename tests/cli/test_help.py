"""Every command and option of ``common-events`` says in plain text what it does."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from common_events.cli.main import build_parser

# reStructuredText and Sphinx markup a person should never see in a terminal.
MARKUP = re.compile(r"``|:(?:class|func|meth|mod|attr|ref|data):`|^\.\. |\*\*\w", re.MULTILINE)


def every_parser() -> list[tuple[str, argparse.ArgumentParser]]:
    found: list[tuple[str, argparse.ArgumentParser]] = []

    def walk(parser: argparse.ArgumentParser) -> None:
        found.append((parser.prog, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command in dict.fromkeys(action.choices.values()):
                    walk(command)

    walk(build_parser())
    return found


PARSERS = every_parser()


def test_every_command_is_found() -> None:
    progs = {prog for prog, _ in PARSERS}
    assert {
        "common-events demo",
        "common-events monitor",
        "common-events asyncapi",
        "common-events schema export",
        "common-events schema check",
        "common-events schema typescript",
        "common-events schema npm",
    } <= progs


@pytest.mark.parametrize(("prog", "parser"), PARSERS, ids=[prog for prog, _ in PARSERS])
def test_every_option_and_argument_has_help(prog: str, parser: argparse.ArgumentParser) -> None:
    assert parser.description, f"{prog} has no description"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"{prog} {choice.dest} has no help"
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{prog} {name} has no help"


@pytest.mark.parametrize(("prog", "parser"), PARSERS, ids=[prog for prog, _ in PARSERS])
def test_help_is_plain_text(prog: str, parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert not MARKUP.search(text), f"{prog} --help shows markup:\n{text}"


def test_demo_help_from_the_command_line_is_plain_text() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "common_events.cli.main", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "``" not in result.stdout
    assert result.stdout.startswith("usage: common-events demo")
    # The examples keep their lines.
    assert "\n  common-events demo --url memory://\n" in result.stdout
