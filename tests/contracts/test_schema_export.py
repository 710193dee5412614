"""The exported JSON Schemas and the pydantic models agree on what the wire carries."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from common_events import EVENT_TYPES, Event, Subjects, event_type
from common_events.cli.main import main
from common_events.contracts.samples import sample_events
from common_events.contracts.schema import (
    DATE_TIME_PATTERN,
    export_schemas,
    read_schemas,
    schema_file_name,
    write_schemas,
)
from common_events.testing import strategies

SCHEMAS = export_schemas()
VALIDATORS = {subject: Draft202012Validator(schema) for subject, schema in SCHEMAS.items()}


def wire(event: Event) -> Any:
    return json.loads(event.model_dump_json())


def test_one_valid_draft_2020_12_schema_per_subject() -> None:
    assert list(SCHEMAS) == [subject.value for subject in Subjects]
    for subject, schema in SCHEMAS.items():
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["x-subject"] == subject
        assert schema["title"] == EVENT_TYPES[Subjects(subject)].__name__
        assert schema["type"] == "object"
        assert "$defs" not in json.dumps(schema)


def test_the_schema_describes_the_wire_json() -> None:
    ticket = SCHEMAS["ticket:updated"]
    order = SCHEMAS["order:created"]

    assert list(ticket["properties"]) == ["id", "version", "title", "price", "userId", "orderId"]
    assert ticket["required"] == ["id", "version", "title", "price", "userId"]
    assert ticket["properties"]["id"] == {"type": "string", "minLength": 1}
    assert ticket["properties"]["version"] == {"type": "integer", "minimum": 0}
    assert ticket["properties"]["price"] == {"type": "number", "minimum": 0}
    # Absent on the wire when unset, never null.
    assert ticket["properties"]["orderId"] == {"type": "string", "minLength": 1}
    assert order["properties"]["status"]["enum"] == [
        "created",
        "cancelled",
        "awaiting:payment",
        "complete",
    ]
    assert order["properties"]["expiresAt"] == {
        "type": "string",
        "format": "date-time",
        "pattern": DATE_TIME_PATTERN,
    }
    assert order["properties"]["ticket"]["required"] == ["id", "price"]
    assert order["properties"]["ticket"]["properties"]["price"] == {"type": "number", "minimum": 0}
    assert SCHEMAS["expiration:complete"]["required"] == ["orderId"]
    assert SCHEMAS["payment:created"]["required"] == ["id", "orderId", "stripeId"]


@settings(max_examples=150, deadline=None)
@given(strategies.any_event())
def test_every_wire_json_the_models_write_is_valid_for_the_schema(event: Event) -> None:
    payload = wire(event)

    errors = [error.message for error in VALIDATORS[event.subject.value].iter_errors(payload)]

    assert errors == []
    assert type(event).model_validate(payload) == event


def _missing_required_fields() -> list[tuple[str, str, Any]]:
    """Every sample event with one required field (at any depth) left out."""
    cases = []
    for subject, event in sample_events().items():
        payload = wire(event)
        for name in SCHEMAS[subject.value]["required"]:
            broken = copy.deepcopy(payload)
            del broken[name]
            cases.append((subject.value, f"without {name}", broken))
            if isinstance(payload[name], dict):
                for inner in payload[name]:
                    broken = copy.deepcopy(payload)
                    del broken[name][inner]
                    cases.append((subject.value, f"without {name}.{inner}", broken))
    return cases


def _with(subject: Subjects, **changes: Any) -> Any:
    payload = wire(sample_events()[subject])
    for path, value in changes.items():
        node = payload
        *parents, leaf = path.split("__")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return payload


WRONG_VALUES = [
    ("price as a string", Subjects.TICKET_CREATED, {"price": "20"}),
    ("negative price", Subjects.TICKET_CREATED, {"price": -1}),
    ("price as a boolean", Subjects.TICKET_CREATED, {"price": True}),
    ("empty id", Subjects.TICKET_CREATED, {"id": ""}),
    ("numeric id", Subjects.TICKET_CREATED, {"id": 5}),
    ("null userId", Subjects.TICKET_CREATED, {"userId": None}),
    ("negative version", Subjects.TICKET_UPDATED, {"version": -1}),
    ("fractional version", Subjects.TICKET_UPDATED, {"version": 1.5}),
    ("version as a string", Subjects.TICKET_UPDATED, {"version": "1"}),
    ("empty orderId", Subjects.TICKET_UPDATED, {"orderId": ""}),
    ("title as a number", Subjects.TICKET_UPDATED, {"title": 7}),
    ("unknown status", Subjects.ORDER_CREATED, {"status": "shipped"}),
    ("status in capitals", Subjects.ORDER_CREATED, {"status": "CREATED"}),
    ("expiresAt without offset", Subjects.ORDER_CREATED, {"expiresAt": "2026-11-27T06:40:00"}),
    ("expiresAt as a number", Subjects.ORDER_CREATED, {"expiresAt": 1764225600000}),
    ("expiresAt not a date", Subjects.ORDER_CREATED, {"expiresAt": "tomorrow"}),
    ("nested price as a string", Subjects.ORDER_CREATED, {"ticket__price": "20"}),
    ("nested empty id", Subjects.ORDER_CANCELLED, {"ticket__id": ""}),
    ("ticket as a string", Subjects.ORDER_CANCELLED, {"ticket": "t1"}),
    ("empty stripeId", Subjects.PAYMENT_CREATED, {"stripeId": ""}),
    ("orderId as a number", Subjects.EXPIRATION_COMPLETE, {"orderId": 1}),
]

REJECTED = [
    *_missing_required_fields(),
    *((subject.value, name, _with(subject, **changes)) for name, subject, changes in WRONG_VALUES),
    ("ticket:created", "an array", [1, 2]),
    ("ticket:created", "a string", "ticket"),
]


@pytest.mark.parametrize(
    ("subject", "payload"),
    [pytest.param(subject, payload, id=f"{subject} {name}") for subject, name, payload in REJECTED],
)
def test_what_the_models_reject_the_schema_rejects(subject: str, payload: Any) -> None:
    with pytest.raises(ValidationError):
        event_type(subject).model_validate_json(json.dumps(payload))

    assert not VALIDATORS[subject].is_valid(payload)


def test_the_samples_are_valid() -> None:
    for subject, event in sample_events().items():
        VALIDATORS[subject.value].validate(wire(event))


def test_write_and_read_back(tmp_path: Path) -> None:
    written = write_schemas(tmp_path / "out", SCHEMAS)

    assert sorted(path.name for path in written) == sorted(
        schema_file_name(subject) for subject in SCHEMAS
    )
    assert schema_file_name("ticket:created") == "ticket.created.json"
    assert read_schemas(tmp_path / "out") == dict(sorted(SCHEMAS.items()))


def test_a_schema_without_its_subject_is_refused(tmp_path: Path) -> None:
    (tmp_path / "stray.json").write_text('{"type": "object"}')

    with pytest.raises(ValueError, match=r"stray\.json is not an event schema"):
        read_schemas(tmp_path)


def test_schema_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["schema", "export", str(tmp_path / "schemas")])

    assert status == 0
    assert read_schemas(tmp_path / "schemas") == dict(sorted(SCHEMAS.items()))
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str(tmp_path / "schemas" / schema_file_name(s)) for s in SCHEMAS]
