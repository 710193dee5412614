"""The TypeScript of the events (``schema typescript``) against a real, pinned ``tsc``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from common_events import OrderStatus, Subjects, __version__
from common_events.cli.main import main
from common_events.contracts.typescript import typescript_declarations, typescript_module

# `import type` where a name is only a type: verbatimModuleSyntax requires it, and the
# ".js" specifier is what an ES module under module nodenext must write.
VALID_SAMPLES = """
import {
  OrderStatus, Subjects,
  type AnyEvent, type EventOf, type ExpirationCompleteEvent, type OrderCancelledEvent,
  type OrderCreatedEvent, type PaymentCreatedEvent, type TicketCreatedEvent,
  type TicketUpdatedEvent,
} from "./events.js";

const ticketCreated: TicketCreatedEvent = {
  subject: Subjects.TicketCreated,
  data: { id: "t1", version: 0, title: "Concert", price: 20, userId: "u1" },
};
const ticketUpdated: TicketUpdatedEvent = {
  subject: Subjects.TicketUpdated,
  data: { id: "t1", version: 1, title: "Concert", price: 25.5, userId: "u1" },
};
const reserved: TicketUpdatedEvent = {
  subject: Subjects.TicketUpdated,
  data: { id: "t1", version: 2, title: "Concert", price: 25.5, userId: "u1", orderId: "o1" },
};
const orderCreated: OrderCreatedEvent = {
  subject: Subjects.OrderCreated,
  data: {
    id: "o1", version: 0, status: OrderStatus.AwaitingPayment, userId: "u1",
    expiresAt: new Date().toISOString(), ticket: { id: "t1", price: 20 },
  },
};
const orderCancelled: OrderCancelledEvent = {
  subject: Subjects.OrderCancelled,
  data: { id: "o1", version: 1, ticket: { id: "t1" } },
};
const expired: ExpirationCompleteEvent = {
  subject: Subjects.ExpirationComplete, data: { orderId: "o1" },
};
const paid: PaymentCreatedEvent = {
  subject: Subjects.PaymentCreated, data: { id: "p1", orderId: "o1", stripeId: "ch_1" },
};

// The string values are the wire's; a listener narrows AnyEvent on the subject.
const subject: "ticket:created" = Subjects.TicketCreated;
const status: "awaiting:payment" = OrderStatus.AwaitingPayment;
function priceOf(event: AnyEvent): number | undefined {
  return event.subject === Subjects.TicketUpdated ? event.data.price : undefined;
}
export const all: AnyEvent[] = [
  ticketCreated, ticketUpdated, reserved, orderCreated, orderCancelled, expired, paid,
];
const created: EventOf<Subjects.TicketCreated> = ticketCreated;
export { subject, status, priceOf, created };
"""

# Each sample is one line that must fail with its error code: TS2741 (a required
# property is missing) or TS2322 (a value of the wrong type).
INVALID_SAMPLES: dict[str, tuple[str, str]] = {
    "missing required userId": (
        "TS2741",
        "export const a: TicketCreatedEvent = { subject: Subjects.TicketCreated, "
        'data: { id: "t1", version: 0, title: "Concert", price: 20 } };',
    ),
    "price as a string": (
        "TS2322",
        "export const b: TicketCreatedEvent = { subject: Subjects.TicketCreated, "
        'data: { id: "t1", version: 0, title: "Concert", price: "20", userId: "u1" } };',
    ),
    "missing nested ticket.price": (
        "TS2741",
        "export const c: OrderCreatedEvent = { subject: Subjects.OrderCreated, "
        'data: { id: "o1", version: 0, status: OrderStatus.Created, userId: "u1", '
        'expiresAt: "2026-11-27T06:40:00.000Z", ticket: { id: "t1" } } };',
    ),
    "a status that is not an OrderStatus": (
        "TS2322",
        "export const d: OrderCreatedEvent = { subject: Subjects.OrderCreated, "
        'data: { id: "o1", version: 0, status: "shipped", userId: "u1", '
        'expiresAt: "2026-11-27T06:40:00.000Z", ticket: { id: "t1", price: 20 } } };',
    ),
    "the subject of another event": (
        "TS2322",
        "export const e: ExpirationCompleteEvent = { subject: Subjects.OrderCreated, "
        'data: { orderId: "o1" } };',
    ),
}
INVALID_HEADER = (
    "import { ExpirationCompleteEvent, OrderCreatedEvent, OrderStatus, Subjects, "
    'TicketCreatedEvent } from "./events";'
)


# Only the two files: no @types packages, no type-checking of the standard library.
TSCONFIG: dict[str, Any] = {
    "compilerOptions": {
        "noEmit": True,
        "strict": True,
        "skipLibCheck": True,
        "types": [],
        "lib": ["es2020"],
        "target": "es2020",
        "module": "commonjs",
        "pretty": False,
    },
    "files": ["sample.ts"],
}

# The settings of the build tools that compile one file at a time (Vite, esbuild, swc,
# Next.js), and of a Node ES module project.
SETTINGS: dict[str, dict[str, Any]] = {
    "strict": {},
    "isolatedModules": {"isolatedModules": True},
    "verbatimModuleSyntax": {"verbatimModuleSyntax": True, "module": "nodenext"},
}


def tsc(
    node_modules: Path,
    directory: Path,
    source: str,
    *,
    options: dict[str, Any] | None = None,
    events: str | None = None,
    events_file: str = "events.d.ts",
) -> subprocess.CompletedProcess[str]:
    """Compile ``source`` (sample.ts) next to the events' TypeScript with ``options``."""
    config = json.loads(json.dumps(TSCONFIG))
    config["compilerOptions"].update(options or {})
    if config["compilerOptions"]["module"] == "nodenext":
        # Under nodenext a .ts file is an ES module where package.json says so.
        (directory / "package.json").write_text('{"type": "module"}\n', encoding="utf-8")
    (directory / events_file).write_text(events or typescript_declarations(), encoding="utf-8")
    (directory / "sample.ts").write_text(source, encoding="utf-8")
    (directory / "tsconfig.json").write_text(json.dumps(config), encoding="utf-8")
    command = ["node", str(node_modules / "typescript" / "bin" / "tsc"), "-p", str(directory)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_valid_samples_compile(node_modules: Path, tmp_path: Path, setting: str) -> None:
    result = tsc(node_modules, tmp_path, VALID_SAMPLES, options=SETTINGS[setting])

    assert result.returncode == 0, result.stdout + result.stderr


def test_const_enums_would_not_compile_under_isolated_modules(
    node_modules: Path, tmp_path: Path
) -> None:
    # What the declarations used to be, and why they are not any more.
    const_enums = typescript_declarations().replace("export declare enum", "export const enum")

    result = tsc(
        node_modules,
        tmp_path,
        VALID_SAMPLES,
        options=SETTINGS["isolatedModules"],
        events=const_enums,
    )

    assert "TS2748" in result.stdout


def test_the_module_defines_the_enums_at_run_time(node_modules: Path, tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is needed to run the compiled module")
    run = (
        VALID_SAMPLES
        + "declare const console: { log(text: string): void };\n"
        + "console.log(JSON.stringify([Subjects.TicketCreated, OrderStatus.AwaitingPayment,"
        + " all.length, priceOf(reserved)]));\n"
    )
    options = {**SETTINGS["verbatimModuleSyntax"], "noEmit": False, "outDir": "out"}

    result = tsc(
        node_modules,
        tmp_path,
        run,
        options=options,
        events=typescript_module(),
        events_file="events.ts",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ran = subprocess.run(
        ["node", str(tmp_path / "out" / "sample.js")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == ["ticket:created", "awaiting:payment", 7, 25.5]


def test_a_missing_required_field_or_a_wrong_type_does_not_compile(
    node_modules: Path, tmp_path: Path
) -> None:
    samples = list(INVALID_SAMPLES.values())
    source = "\n".join([INVALID_HEADER, *(line for _, line in samples)]) + "\n"

    result = tsc(node_modules, tmp_path, source)

    assert result.returncode != 0
    errors = {
        int(match.group(1)): match.group(2)
        for match in re.finditer(r"sample\.ts\((\d+),\d+\): error (TS\d+)", result.stdout)
    }
    # Line 1 imports; sample i is on line i + 2, and each one fails on its own.
    expected = {number + 2: code for number, (code, _) in enumerate(samples)}
    assert errors == expected, result.stdout


def test_the_declarations_mirror_the_models() -> None:
    text = typescript_declarations(version=__version__)

    for subject in Subjects:
        assert f' = "{subject.value}",' in text
    for status in OrderStatus:
        assert f' = "{status.value}",' in text
    assert "export declare enum OrderStatus {\n  Created" in text
    assert "const enum" not in text
    assert '  AwaitingPayment = "awaiting:payment",' in text
    ticket_updated = text.split("export interface TicketUpdatedEvent {", 1)[1].split("\n}\n")[0]
    assert "  subject: Subjects.TicketUpdated;" in ticket_updated
    assert "    userId: string;" in ticket_updated
    assert "    orderId?: string;" in ticket_updated
    assert "    status: OrderStatus;" in text
    assert "    expiresAt: string;" in text


def test_the_module_has_the_same_declarations_with_values() -> None:
    declarations = typescript_declarations(version=__version__)
    module = typescript_module(version=__version__)

    assert module == declarations.replace("export declare enum", "export enum")


@pytest.mark.parametrize(
    ("arguments", "file", "module"),
    [
        ([], None, False),
        (["--module"], None, True),
        (["-o", "{out}/types/events.d.ts"], "types/events.d.ts", False),
        (["-o", "{out}/src/events.ts"], "src/events.ts", True),
    ],
)
def test_schema_typescript_command(
    arguments: list[str],
    file: str | None,
    module: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = [argument.format(out=tmp_path) for argument in arguments]

    assert main(["schema", "typescript", *arguments]) == 0

    written = (tmp_path / file).read_text() if file else capsys.readouterr().out
    expected = typescript_module if module else typescript_declarations
    assert written == expected(version=__version__)
