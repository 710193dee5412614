"""The schemas of every released version, kept in the package.

``common_events/contracts/schemas/<version>/`` holds one file per subject, written by
``common-events schema export`` when that version was released. They ship in the wheel,
so a service can check its own changes against what other services run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from common_events.contracts.schema import Schema, load_schema_texts

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def version_key(version: str) -> tuple[int, int, int]:
    """``"1.10.0"`` -> ``(1, 10, 0)``, for sorting releases; pre-release tags are not used."""
    match = _VERSION.fullmatch(version)
    if match is None:
        raise ValueError(f"{version!r} is not a release version (MAJOR.MINOR.PATCH)")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def major_of(version: str) -> int:
    return version_key(version)[0]


def snapshot_root() -> Traversable:
    """The packaged ``schemas`` folder (inside the wheel or the source tree)."""
    return resources.files("common_events.contracts") / "schemas"


def source_snapshot_directory(version: str) -> Path:
    """Where the snapshot of ``version`` belongs in a source checkout."""
    return Path(__file__).parent / "schemas" / version


def released_versions(root: Traversable | None = None) -> list[str]:
    """Every released version with a snapshot, oldest first."""
    root = snapshot_root() if root is None else root
    if not root.is_dir():
        return []
    versions = [
        entry.name for entry in root.iterdir() if entry.is_dir() and _VERSION.fullmatch(entry.name)
    ]
    return sorted(versions, key=version_key)


def load_release(version: str, root: Traversable | None = None) -> dict[str, Schema]:
    """The schemas of a released ``version``, keyed by subject."""
    root = snapshot_root() if root is None else root
    directory = root / version
    if not directory.is_dir():
        known = ", ".join(released_versions(root)) or "none"
        raise LookupError(f"no released schemas for version {version}; released: {known}")
    return load_schema_texts(
        {
            entry.name: entry.read_text(encoding="utf-8")
            for entry in directory.iterdir()
            if entry.name.endswith(".json")
        }
    )


def load_releases(root: Traversable | None = None) -> dict[str, dict[str, Schema]]:
    """Every release's schemas, oldest first."""
    return {version: load_release(version, root) for version in released_versions(root)}


def same_major_releases(
    version: str, releases: Mapping[str, dict[str, Schema]]
) -> dict[str, dict[str, Schema]]:
    """The releases ``version`` promises compatibility with: those of its own major
    version. A breaking change is allowed only together with a new major version."""
    major = major_of(version)
    return {release: schemas for release, schemas in releases.items() if major_of(release) == major}
