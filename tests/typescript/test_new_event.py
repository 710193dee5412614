"""A new event model reaches the Node services through the package, with no hand edit:
generated, packed with ``npm pack``, installed with ``npm install``, compiled and run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common_events import EVENT_TYPES
from common_events.contracts.npm import npm_package, write_npm_package
from common_events.contracts.schema import export_schemas
from tests.contracts.test_npm_package import TicketDeletedEvent
from tests.typescript.npm import PACKAGE_NAME, TSC, NpmRegistry, output_of, run

pytestmark = pytest.mark.slow

SOURCE = f"""
import {{
  InvalidEventError, Subjects, parseEventData, validateTicketDeleted, validators,
  type EventOf, type TicketDeletedEvent,
}} from "{PACKAGE_NAME}";

const deleted: TicketDeletedEvent = {{ subject: Subjects.TicketDeleted, data: {{ id: "t1" }} }};
const same: EventOf<Subjects.TicketDeleted> = deleted;
let refused: unknown = null;
try {{
  parseEventData(Subjects.TicketDeleted, '{{"id": ""}}');
}} catch (error) {{
  refused = error instanceof InvalidEventError ? error.errors : String(error);
}}
console.log(JSON.stringify({{
  subject: same.subject,
  valid: validateTicketDeleted(deleted.data),
  invalid: validators[Subjects.TicketDeleted]({{}}),
  parsed: parseEventData(Subjects.TicketDeleted, '{{"id": "t2"}}'),
  refused,
}}));
"""


def test_a_new_event_appears_in_the_installed_package(
    npm_registry: NpmRegistry, npm_token: str, tmp_path: Path
) -> None:
    schemas = export_schemas({**EVENT_TYPES, "ticket:deleted": TicketDeletedEvent})  # type: ignore[dict-item]
    write_npm_package(
        tmp_path / "package",
        npm_package(PACKAGE_NAME, python_version="0.1.0", schemas=schemas),
    )
    environment = npm_registry.npmrc(tmp_path / "home", npm_registry.token_credentials(npm_token))
    packed = run(
        ["npm", "pack", tmp_path / "package", "--pack-destination", tmp_path],
        cwd=tmp_path,
        env=environment,
    )
    assert packed.returncode == 0, output_of(packed)
    tarball = tmp_path / "ticketing-common-events-0.1.0.tgz"
    assert tarball.is_file()
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "package.json").write_text('{"name": "app", "private": true, "type": "module"}\n')
    (app / "src" / "main.ts").write_text(SOURCE)
    config = {
        "compilerOptions": {
            "strict": True,
            "module": "nodenext",
            "verbatimModuleSyntax": True,
            "target": "es2020",
            "types": [],
            "outDir": "out",
            "rootDir": "src",
        },
        "include": ["src"],
    }
    (app / "tsconfig.json").write_text(json.dumps(config))

    installed = run(["npm", "install", tarball], cwd=app, env=environment)
    assert installed.returncode == 0, output_of(installed)
    compiled = run(["node", TSC, "-p", app], cwd=app)
    assert compiled.returncode == 0, output_of(compiled)
    ran = run(["node", app / "out" / "main.js"], cwd=app, timeout=60)

    assert ran.returncode == 0, output_of(ran)
    assert json.loads(ran.stdout) == {
        "subject": "ticket:deleted",
        "valid": True,
        "invalid": False,
        "parsed": {"id": "t2"},
        "refused": [
            {
                "path": "/id",
                "keyword": "minLength",
                "message": "must NOT have fewer than 1 characters",
            }
        ],
    }
