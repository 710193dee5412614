"""This package against its own released schemas: what every service relies on."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from common_events import __version__
from common_events.contracts.compatibility import Mode, check_compatibility
from common_events.contracts.schema import export_schemas
from common_events.contracts.snapshots import (
    load_release,
    load_releases,
    released_versions,
    same_major_releases,
    snapshot_root,
    version_key,
)


def test_releases_are_found_in_the_package_in_version_order() -> None:
    versions = released_versions()

    assert "0.1.0" in versions
    assert versions == sorted(versions, key=version_key)
    assert snapshot_root().joinpath("0.1.0").is_dir()
    assert version_key("1.10.0") > version_key("1.9.3")
    for schemas in load_releases().values():
        for schema in schemas.values():
            Draft202012Validator.check_schema(schema)


def test_no_breaking_change_since_a_release_of_the_same_major_version() -> None:
    releases = same_major_releases(__version__, load_releases())

    report = check_compatibility(export_schemas(), releases, Mode.FULL)

    assert report.compatible, (
        "the event models break compatibility with released versions of the same major "
        f"version; raise the major version (now {__version__}) or make the change "
        "compatible:\n" + str(report)
    )


def test_a_released_version_keeps_its_schemas() -> None:
    # Once released, a version's contract is fixed: changing the models means a new
    # version and a new snapshot (common-events schema export
    # common_events/contracts/schemas/<version>).
    if __version__ not in released_versions():
        pytest.skip(f"{__version__} is not released yet; its snapshot is written at release")
    released = load_release(__version__)

    assert released == dict(sorted(export_schemas().items())), (
        f"the models changed after {__version__} was released; raise the version and "
        "export a new snapshot"
    )


def test_only_releases_of_the_same_major_version_must_stay_compatible() -> None:
    today = export_schemas()
    breaking = json.loads(json.dumps(today))
    breaking["ticket:created"]["properties"]["price"] = {"type": "string"}
    releases = {"1.2.0": breaking, "2.0.0": today}

    same_major = same_major_releases("2.1.0", releases)
    raised = same_major_releases("3.0.0", releases)
    not_raised = same_major_releases("1.3.0", releases)

    assert check_compatibility(today, same_major).compatible
    assert raised == {}
    assert not check_compatibility(today, not_raised).compatible
