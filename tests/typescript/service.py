"""The Node service of tests/typescript/service: built in a fresh project that installed
the generated package from the private registry, and run as the tests need it."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.node_process import JsonLineProcess
from tests.typescript.npm import TSC, run

SOURCES = Path(__file__).parent / "service" / "src"

# What `tsc --init` gives a course project, and what every setting below shares.
BASE_OPTIONS: dict[str, Any] = {
    "strict": True,
    "esModuleInterop": True,
    "target": "es2020",
    "types": ["node"],
    "rootDir": "src",
    "outDir": "out",
    "pretty": False,
}


@dataclass(frozen=True)
class Setting:
    """One way to compile the service: a package type and compiler options."""

    name: str
    package_type: str
    options: dict[str, Any]
    runs_as: str


SETTINGS = {
    setting.name: setting
    for setting in (
        # --strict alone, as the course compiles it (module commonjs, node10 resolution).
        Setting("strict", "commonjs", {"module": "commonjs"}, "commonjs"),
        # One file at a time, as Vite, esbuild, swc and Next.js compile.
        Setting(
            "isolatedModules",
            "commonjs",
            {"module": "commonjs", "isolatedModules": True},
            "commonjs",
        ),
        # Node's own resolution through the exports map, for a CommonJS package.
        Setting(
            "nodenext-commonjs",
            "commonjs",
            {"module": "nodenext", "isolatedModules": True},
            "commonjs",
        ),
        # An ES module project that writes imports exactly as they run.
        Setting(
            "verbatimModuleSyntax",
            "module",
            {"module": "nodenext", "verbatimModuleSyntax": True},
            "module",
        ),
    )
}


@dataclass
class Build:
    setting: Setting
    directory: Path
    result: subprocess.CompletedProcess[str]

    @property
    def ok(self) -> bool:
        return self.result.returncode == 0

    @property
    def main(self) -> Path:
        return self.directory / "out" / "main.js"


@dataclass
class NodeApp:
    """A fresh Node project with the package installed; builds of the service in it."""

    directory: Path
    environment: dict[str, str]
    builds: dict[str, Build] = field(default_factory=dict)

    def build(self, name: str, *, extra_files: dict[str, str] | None = None) -> Build:
        """Compile the service with setting ``name`` (once; cached unless ``extra_files``
        adds sources, which always builds a new copy)."""
        if name in self.builds and not extra_files:
            return self.builds[name]
        setting = SETTINGS[name]
        label = name if not extra_files else f"{name}-{len(list(self.directory.iterdir()))}"
        directory = self.directory / label
        shutil.rmtree(directory, ignore_errors=True)
        shutil.copytree(SOURCES, directory / "src")
        for relative, text in (extra_files or {}).items():
            (directory / "src" / relative).write_text(text)
        (directory / "package.json").write_text(json.dumps({"type": setting.package_type}) + "\n")
        config = {"compilerOptions": {**BASE_OPTIONS, **setting.options}, "include": ["src"]}
        (directory / "tsconfig.json").write_text(json.dumps(config, indent=2))
        result = run(["node", TSC, "-p", directory], cwd=directory, timeout=300)
        build = Build(setting, directory, result)
        if not extra_files:
            self.builds[name] = build
        return build


class ServiceProcess(JsonLineProcess):
    """One running ``node out/main.js`` and the JSON lines it reported."""

    name = "the Node service"
    within = 30.0
    stop_grace = 10.0


async def start_service(build: Build, *args: str) -> ServiceProcess:
    return await ServiceProcess.start("node", build.main, *args, cwd=build.directory)
