"""The schemas of every released version, kept in the package.

``common_events/contracts/schemas/<version>/`` holds one file per subject, written by
``common-events schema export`` when that version was released. They ship in the wheel,
so a service can check its own changes against what other services run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from common_events.contracts.compatibility import CompatibilityReport, Mode, check_compatibility
from common_events.contracts.schema import Schema, load_schema_texts

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True, slots=True)
class ReleasePlan:
    """Whether ``version`` may be released with today's models.

    The contracts decide the major version, for the Python package and the npm package
    alike (they share the version): a change that breaks a release of the same major
    version is allowed only in a new major version. A final release also ships the
    snapshot of its own schemas, which must be today's.
    """

    version: str
    mode: Mode
    previous: str | None
    """The latest release before ``version``, of any major version."""
    report: CompatibilityReport | None
    """Today's models against the earlier releases of ``version``'s major version;
    ``None`` when ``version`` starts a major version."""
    breaks_previous: bool
    """Whether today's models break ``previous`` (what made a new major necessary)."""
    snapshot_problem: str | None

    @property
    def allowed(self) -> bool:
        compatible = self.report is None or self.report.compatible
        return compatible and self.snapshot_problem is None

    @property
    def next_major(self) -> str:
        return f"{major_of(_release_part(self.version)) + 1}.0.0"

    def lines(self) -> list[str]:
        lines = []
        if self.report is None:
            since = (
                f"; the contracts {'break' if self.breaks_previous else 'do not break'} "
                f"{self.previous}"
                if self.previous
                else ""
            )
            lines.append(
                f"{self.version} starts major version {major_of(_release_part(self.version))}"
                f": no earlier release to stay compatible with{since}"
            )
        else:
            lines += self.report.lines()
            if self.report.compatible:
                on = ", ".join(self.report.baselines)
                lines.append(f"{self.version}: no breaking change since {on}")
            else:
                lines.append(
                    f"{self.version} breaks a contract of its major version: release it "
                    f"as {self.next_major} (the Python and the npm package alike), or "
                    "make the change compatible"
                )
        if self.snapshot_problem is not None:
            lines.append(self.snapshot_problem)
        return lines


def release_plan(
    version: str,
    today: Mapping[str, Schema],
    releases: Mapping[str, dict[str, Schema]] | None = None,
    *,
    mode: Mode = Mode.FULL,
) -> ReleasePlan:
    """Check ``version`` (``1.3.0``, or a pre-release such as ``2.0.0rc1``) against the
    releases before it (default: the packaged snapshots)."""
    releases = load_releases() if releases is None else releases
    release = _release_part(version)
    earlier = {
        other: schemas
        for other, schemas in releases.items()
        if version_key(other) < version_key(release)
    }
    previous = max(earlier, key=version_key) if earlier else None
    same_major = same_major_releases(release, earlier)
    report = check_compatibility(today, same_major, mode) if same_major else None
    breaks_previous = (
        previous is not None
        and not check_compatibility(today, {previous: earlier[previous]}, mode).compatible
    )
    return ReleasePlan(
        version=version,
        mode=mode,
        previous=previous,
        report=report,
        breaks_previous=breaks_previous,
        snapshot_problem=_snapshot_problem(version, today, releases),
    )


def _release_part(version: str) -> str:
    """``2.0.0rc1`` -> ``2.0.0``; a version that does not start with X.Y.Z is refused."""
    match = re.match(r"\d+\.\d+\.\d+", version)
    if match is None:
        raise ValueError(f"{version!r} is not a release version (MAJOR.MINOR.PATCH...)")
    return match.group(0)


def _snapshot_problem(
    version: str, today: Mapping[str, Schema], releases: Mapping[str, dict[str, Schema]]
) -> str | None:
    if _release_part(version) != version:
        return None  # a pre-release ships no snapshot
    if version not in releases:
        return (
            f"no snapshot of {version}'s schemas: write it with `common-events schema "
            f"export common_events/contracts/schemas/{version}` and commit it"
        )
    if releases[version] != dict(sorted(today.items())):
        return (
            f"the snapshot of {version} differs from the models: {version} is released "
            "already, or the snapshot is stale; export it again for an unreleased version"
        )
    return None
