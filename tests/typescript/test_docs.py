"""docs/npm-package.md works as written: every code block runs here.

The console commands run (with the registry of the tests for the example's URL), the
.npmrc is the one the install uses, the TypeScript compiles in a project that installed
the package from the registry, and the JavaScript runs there and prints what its
comments say.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.typescript.npm import PACKAGE_NAME, NpmRegistry, output_of, registry_key, run
from tests.typescript.service import NodeApp

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "npm-package.md"
EXAMPLE_REGISTRY = "https://npm.internal.example/"


def blocks(language: str) -> list[str]:
    return [
        body
        for found, body in re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
        if found == language
    ]


def expected_output(source: str) -> list[str]:
    """What the example's comments say it prints: a comment on a console.log line, and
    the comment lines right after one."""
    expected = []
    follows_output = False
    for line in source.splitlines():
        comment = re.match(r"\s*// (.*)$", line)
        if "console.log(" in line:
            if "// " in line:
                expected.append(line.rsplit("// ", 1)[1])
            follows_output = True
        elif comment and follows_output:
            expected.append(comment.group(1))
        else:
            follows_output = False
    return expected


def test_every_block_is_one_this_test_runs() -> None:
    found = re.findall(r"```(\w*)\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert {language for language, _ in found} == {"console", "ini", "ts", "js"}
    assert len(blocks("ts")) == 1
    assert len(blocks("js")) == 2


def test_the_console_commands_and_the_npmrc(
    npm_registry: NpmRegistry, npm_token: str, published_package: object, tmp_path: Path
) -> None:
    commands = [line for block in blocks("console") for line in block.splitlines() if line]
    (npmrc,) = blocks("ini")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".npmrc").write_text(
        npmrc.replace(EXAMPLE_REGISTRY, npm_registry.url).replace(
            registry_key(EXAMPLE_REGISTRY), registry_key(npm_registry.url)
        )
    )
    environment = npm_registry.npmrc(tmp_path / "unused") | {
        "npm_config_userconfig": str(home / ".npmrc"),
        "NPM_TOKEN": npm_token,
    }
    project = tmp_path / "service"
    project.mkdir()
    (project / "package.json").write_text('{"name": "service", "private": true}\n')
    ran = []

    for command in commands:
        words = shlex.split(command)
        if words[0] == "common-events":
            words = [sys.executable, "-m", "common_events.cli.main", *words[1:]]
        result = run(words, cwd=project, env=environment)
        assert result.returncode == 0, f"{command}\n{output_of(result)}"
        ran.append(command)

    assert len(ran) == 3
    written = json.loads((project / "build" / "npm" / "package.json").read_text())
    assert written["name"] == PACKAGE_NAME
    assert written["publishConfig"] == {"registry": EXAMPLE_REGISTRY}
    installed = project / "node_modules" / PACKAGE_NAME / "package.json"
    assert json.loads(installed.read_text())["version"] == published_package.version  # type: ignore[attr-defined]
    assert (project / "src" / "events.ts").read_text().startswith("// The events of common-events")


@pytest.mark.parametrize("setting", ["strict", "isolatedModules", "verbatimModuleSyntax"])
def test_the_typescript_example_compiles(node_app: NodeApp, setting: str) -> None:
    (source,) = blocks("ts")

    build = node_app.build(setting, extra_files={"doc.ts": source})

    assert build.ok, output_of(build.result)


@pytest.mark.parametrize("index", [0, 1], ids=["commonjs", "module"])
def test_the_javascript_examples_print_what_they_say(node_app: NodeApp, index: int) -> None:
    source = blocks("js")[index]
    is_module = bool(re.search(r"^import ", source, flags=re.M))
    script = node_app.directory / f"doc-{index}.{'mjs' if is_module else 'cjs'}"
    script.write_text(source)

    result = run(["node", script], cwd=node_app.directory, timeout=60)

    assert result.returncode == 0, output_of(result)
    assert result.stdout.splitlines() == expected_output(source)
    assert len(expected_output(source)) >= 2
