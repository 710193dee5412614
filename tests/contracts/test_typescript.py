from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from common_events import OrderStatus, Subjects, __version__
from common_events.cli.main import main
from common_events.contracts.typescript import typescript_declarations

VALID_SAMPLES = """
import {
  AnyEvent, ExpirationCompleteEvent, OrderCancelledEvent, OrderCreatedEvent, OrderStatus,
  PaymentCreatedEvent, Subjects, TicketCreatedEvent, TicketUpdatedEvent,
} from "./events";

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
export { subject, status, priceOf };
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
TSCONFIG = {
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


def tsc(node_modules: Path, directory: Path, source: str) -> subprocess.CompletedProcess[str]:
    (directory / "events.d.ts").write_text(typescript_declarations(), encoding="utf-8")
    (directory / "sample.ts").write_text(source, encoding="utf-8")
    (directory / "tsconfig.json").write_text(json.dumps(TSCONFIG), encoding="utf-8")
    command = ["node", str(node_modules / "typescript" / "bin" / "tsc"), "-p", str(directory)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_valid_samples_compile(node_modules: Path, tmp_path: Path) -> None:
    result = tsc(node_modules, tmp_path, VALID_SAMPLES)

    assert result.returncode == 0, result.stdout + result.stderr


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
    assert "export const enum OrderStatus {\n  Created" in text
    assert '  AwaitingPayment = "awaiting:payment",' in text
    ticket_updated = text.split("export interface TicketUpdatedEvent {", 1)[1].split("\n}\n")[0]
    assert "  subject: Subjects.TicketUpdated;" in ticket_updated
    assert "    userId: string;" in ticket_updated
    assert "    orderId?: string;" in ticket_updated
    assert "    status: OrderStatus;" in text
    assert "    expiresAt: string;" in text


@pytest.mark.parametrize("to_file", [False, True])
def test_schema_typescript_command(
    to_file: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "types" / "events.d.ts"
    arguments = ["schema", "typescript", *(["-o", str(output)] if to_file else [])]

    assert main(arguments) == 0

    written = output.read_text() if to_file else capsys.readouterr().out
    assert written == typescript_declarations(version=__version__)
