"""``schema check --release``: the contracts decide the major version of a release."""

from __future__ import annotations

import json

import pytest

from common_events.cli.main import main
from common_events.contracts.compatibility import Mode
from common_events.contracts.schema import Schema, export_schemas
from common_events.contracts.snapshots import release_plan

TODAY = export_schemas()


def copy(schemas: dict[str, Schema]) -> dict[str, Schema]:
    copied: dict[str, Schema] = json.loads(json.dumps(schemas))
    return copied


def with_price_as_string(schemas: dict[str, Schema]) -> dict[str, Schema]:
    changed = copy(schemas)
    changed["ticket:created"]["properties"]["price"] = {"type": "string"}
    return changed


def snapshot(schemas: dict[str, Schema]) -> dict[str, Schema]:
    """What load_release returns: sorted by subject."""
    return dict(sorted(copy(schemas).items()))


def test_a_compatible_minor_release_is_allowed() -> None:
    releases = {"1.0.0": snapshot(TODAY), "1.1.0": snapshot(TODAY)}

    plan = release_plan("1.1.0", TODAY, releases)

    assert plan.allowed
    assert plan.report is not None
    assert plan.report.baselines == ("1.0.0",)
    assert plan.lines()[-1] == "1.1.0: no breaking change since 1.0.0"


def test_a_breaking_change_needs_a_new_major_version() -> None:
    older = with_price_as_string(TODAY)
    releases = {"1.0.0": older, "1.2.0": older, "1.3.0": snapshot(TODAY)}

    plan = release_plan("1.3.0", TODAY, releases)

    assert not plan.allowed
    assert plan.next_major == "2.0.0"
    text = "\n".join(plan.lines())
    assert "ticket:created: field price changed type string -> number" in text
    assert "release it as 2.0.0 (the Python and the npm package alike)" in text


def test_a_new_major_version_may_break_the_previous_one() -> None:
    releases = {"1.3.0": with_price_as_string(TODAY), "2.0.0": snapshot(TODAY)}

    plan = release_plan("2.0.0", TODAY, releases)

    assert plan.allowed
    assert plan.report is None
    assert plan.previous == "1.3.0"
    assert plan.breaks_previous
    assert plan.lines() == [
        "2.0.0 starts major version 2: no earlier release to stay compatible with; "
        "the contracts break 1.3.0"
    ]


def test_only_releases_before_the_version_count() -> None:
    # A later release of the same major (a patch of an older line) is not a baseline.
    releases = {"1.0.0": snapshot(TODAY), "1.5.0": with_price_as_string(TODAY)}

    plan = release_plan("1.1.0rc1", TODAY, releases)

    assert plan.allowed
    assert plan.report is not None
    assert plan.report.baselines == ("1.0.0",)


def test_a_final_release_ships_its_own_snapshot_of_todays_models() -> None:
    missing = release_plan("1.1.0", TODAY, {"1.0.0": snapshot(TODAY)})
    stale = release_plan(
        "1.1.0", TODAY, {"1.0.0": snapshot(TODAY), "1.1.0": with_price_as_string(TODAY)}
    )
    pre_release = release_plan("1.1.0rc1", TODAY, {"1.0.0": snapshot(TODAY)})

    assert not missing.allowed
    assert missing.snapshot_problem is not None
    assert "common-events schema export common_events/contracts/schemas/1.1.0" in (
        missing.snapshot_problem
    )
    assert not stale.allowed
    assert "differs from the models" in str(stale.snapshot_problem)
    assert pre_release.allowed


def test_the_mode_is_applied() -> None:
    # A field that became optional breaks only consumers on the older version.
    older = copy(TODAY)
    older["ticket:updated"]["required"] = [*older["ticket:updated"]["required"], "orderId"]
    releases = {"1.0.0": older, "1.1.0": snapshot(TODAY)}

    assert release_plan("1.1.0", TODAY, releases, mode=Mode.BACKWARD).allowed
    assert not release_plan("1.1.0", TODAY, releases, mode=Mode.FORWARD).allowed


def test_schema_check_release_command_on_the_packaged_snapshots(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema", "check", "--release", "0.1.0"]) == 0
    assert "0.1.0 starts major version 0" in capsys.readouterr().out

    assert main(["schema", "check", "--release", "0.999.0"]) == 1  # no snapshot of 0.999.0
    assert "no snapshot of 0.999.0" in capsys.readouterr().out

    assert main(["schema", "check", "--release", "next"]) == 2
    assert "not a release version" in capsys.readouterr().err

    assert main(["schema", "check", "--release", "0.999.0", "--against", "0.1.0"]) == 2
