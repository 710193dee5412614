"""Building the distributions once per session for the release tests."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSION_FILE = ROOT / "common_events" / "__init__.py"


def package_version() -> str:
    """``__version__`` as the release tooling reads it (from the file, not the import)."""
    match = re.search(r'^__version__\s*=\s*"([^"]+)"\s*$', VERSION_FILE.read_text(), re.M)
    assert match is not None, f"no __version__ line in {VERSION_FILE}"
    return match.group(1)


@dataclass(frozen=True)
class Distributions:
    version: str
    directory: Path
    sdist: Path
    wheel: Path

    @property
    def files(self) -> list[Path]:
        return [self.sdist, self.wheel]

    def wheel_metadata(self) -> str:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.read(f"common_events-{self.version}.dist-info/METADATA").decode()


def build_distributions(outdir: Path) -> Distributions:
    """``python -m build`` (isolated, as a release job runs it) into ``outdir``."""
    version = package_version()
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"python -m build failed:\n{result.stdout}\n{result.stderr}"
    sdists = list(outdir.glob("common_events-*.tar.gz"))
    wheels = list(outdir.glob("common_events-*.whl"))
    assert [p.name for p in sdists] == [f"common_events-{version}.tar.gz"], sdists
    assert [p.name for p in wheels] == [f"common_events-{version}-py3-none-any.whl"], wheels
    return Distributions(version, outdir, sdists[0], wheels[0])
