"""The Node validator and the Python models agree on what a listener accepts.

The same payloads go to both sides: ``decode_event`` (what a Python listener runs on
every message before its handler) and ``parseEventData`` of the installed
package, run by the Node service. Whatever Node accepts, Python accepts; the invalid
payloads (those of tests/events and the wire's edge cases) are rejected by both; valid
events (the Node wire fixtures, the samples, Hypothesis-generated events) are accepted
by both. Python reads a few spellings no service writes that the schemas do not allow
(``PYTHON_ONLY``); those are the only disagreements, and always in that direction.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common_events.contracts.samples import sample_events
from common_events.core.codec import EventDecodeError, decode_event
from common_events.events import EVENT_TYPES, Event, Subjects
from common_events.testing.strategies import any_event
from tests.events.test_node_wire import FIXTURES, WIRE
from tests.typescript.npm import output_of, run
from tests.typescript.service import NodeApp

pytestmark = pytest.mark.slow

SAMPLES = sample_events()
RUNS = {"commonjs": "strict", "module": "verbatimModuleSyntax"}


@dataclass(frozen=True)
class Case:
    label: str
    subject: str
    payload: bytes


@dataclass(frozen=True)
class Verdicts:
    python: bool
    node: bool
    node_value: bool | None
    """``validators[subject](JSON.parse(text))``; ``None`` where the text is not JSON."""
    node_errors: list[dict[str, str]]


def python_accepts(case: Case) -> bool:
    try:
        decode_event(EVENT_TYPES[Subjects(case.subject)], case.payload)
    except EventDecodeError:
        return False
    except OverflowError:
        # A date beyond year 9999 in UTC; see test_a_date_beyond_the_last_utc_year...
        return False
    return True


def verdicts(node_app: NodeApp, runs_as: str, cases: list[Case], workdir: Path) -> list[Verdicts]:
    build = node_app.build(RUNS[runs_as])
    assert build.ok, output_of(build.result)
    file = workdir / "payloads.json"
    file.write_text(
        json.dumps(
            [
                {"subject": case.subject, "payload": base64.b64encode(case.payload).decode()}
                for case in cases
            ]
        )
    )
    result = run(["node", build.main, "check", file], cwd=build.directory, timeout=120)
    assert result.returncode == 0, output_of(result)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["index"] for line in lines] == list(range(len(cases)))
    return [
        Verdicts(
            python=python_accepts(case),
            node=line["accepted"],
            node_value=line["valueAccepted"],
            node_errors=line.get("errors", []),
        )
        for case, line in zip(cases, lines, strict=True)
    ]


# -- the payloads ---------------------------------------------------------------------

TICKET = '{"id":"t1","version":%s,"title":"Concert","price":%s,"userId":"u1"}'
ORDER = (
    '{"id":"o1","version":0,"status":"created","userId":"u1","expiresAt":%s,'
    '"ticket":{"id":"t1","price":20}}'
)


def ticket(version: str = "0", price: str = "20") -> bytes:
    return (TICKET % (version, price)).encode()


def order(expires_at: str) -> bytes:
    return (ORDER % json.dumps(expires_at)).encode()


def ticket_with(**changes: Any) -> bytes:
    data: dict[str, Any] = json.loads(ticket())
    data.update(changes)
    return json.dumps(data).encode()


def nested(depth: int) -> bytes:
    """A valid ticket whose unknown field ``x`` nests ``depth`` levels in all."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return ticket()[:-1] + b',"x":' + inner.encode() + b"}"


TC = "ticket:created"
OC = "order:created"

INVALID: list[Case] = [
    # tests/events/test_models.py: types are not coerced across kinds.
    *(
        Case(f"ticket {field}={value!r}", TC, ticket_with(**{field: value}))
        for field, value in [
            ("price", "20"),
            ("price", True),
            ("price", -1),
            ("id", 20),
            ("id", ""),
            ("userId", ""),
            ("version", -1),
            ("version", "1"),
            ("version", 1.5),
            ("title", 5),
        ]
    ),
    Case("version written 1.0", TC, ticket(version="1.0")),
    Case("version written 1e0", TC, ticket(version="1e0")),
    Case("version written 10e-1", TC, ticket(version="10e-1")),
    Case("version written 1E2", TC, ticket(version="1E2")),
    Case("version written -0.0", TC, ticket(version="-0.0")),
    Case("price NaN", TC, ticket(price="NaN")),
    Case("price Infinity", TC, ticket(price="Infinity")),
    Case("price 1e400", TC, ticket(price="1e400")),
    Case("missing userId", TC, b'{"id":"t1","version":0,"title":"Concert","price":20}'),
    # tests/events/test_models.py: dates.
    *(
        Case(f"expiresAt {value!r}", OC, (ORDER % json.dumps(value)).encode())
        for value in ["2026-11-27T06:40:00", 1764225600, "1764225600", "tomorrow", "2026-11-27"]
    ),
    Case(
        "status shipped", OC, order("2026-11-27T06:40:00.000Z").replace(b"created", b"shipped", 1)
    ),
    # Dates that match the pattern but name no instant Python holds.
    *(
        Case(f"expiresAt {value}", OC, order(value))
        for value in [
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T23:60:00Z",
            "2026-12-31T23:59:60Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00+12:60",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "2026-01-01T00:00:00.Z",
        ]
    ),
    Case(
        "nested ticket without price",
        OC,
        order("2026-11-27T06:40:00.000Z").replace(b',"price":20', b""),
    ),
    Case(
        "nested ticket price a string",
        OC,
        order("2026-11-27T06:40:00.000Z").replace(b'"price":20', b'"price":"20"'),
    ),
    Case("cancelled ticket without id", "order:cancelled", b'{"id":"o1","version":1,"ticket":{}}'),
    Case("expiration without orderId", "expiration:complete", b"{}"),
    Case("payment stripeId empty", "payment:created", b'{"id":"p1","orderId":"o1","stripeId":""}'),
    # Not well-formed text or JSON.
    Case("UTF-8 byte order mark", TC, b"\xef\xbb\xbf" + ticket()),
    Case("not UTF-8", TC, ticket().replace(b"Concert", b"Conc\xffrt")),
    Case("truncated UTF-8", TC, ticket().replace(b"Concert", b"Concer\xc3")),
    Case("encoded surrogate", TC, ticket().replace(b"Concert", b"\xed\xa0\x80")),
    Case("lone surrogate in title", TC, ticket().replace(b"Concert", b"\\ud800")),
    Case("lone low surrogate in id", TC, ticket().replace(b'"t1"', b'"\\udc00"')),
    Case("lone surrogate in an unknown field", TC, ticket()[:-1] + b',"x":"\\ud83d"}'),
    Case("lone surrogate in a key", TC, ticket()[:-1] + b',"\\ud800":1}'),
    Case("raw control character", TC, ticket().replace(b"Concert", b"Con\tcert")),
    Case("not JSON", TC, b"this is not JSON {"),
    Case("empty payload", TC, b""),
    Case("trailing comma", TC, ticket()[:-1] + b",}"),
    Case("trailing garbage", TC, ticket() + b"x"),
    Case("two documents", TC, ticket() + ticket()),
    Case("an array", TC, b"[" + ticket() + b"]"),
    Case("null", TC, b"null"),
    Case("a string", TC, b'"ticket"'),
    Case("a number", TC, b"20"),
    Case("last duplicate key invalid", TC, ticket()[:-1] + b',"price":"x"}'),
    Case("nested too deep", TC, nested(202)),
]

VALID: list[Case] = [
    *(
        Case(f"node wire {name}", str(model.subject), (WIRE / name).read_bytes())
        for name, model in FIXTURES
    ),
    *(Case(f"sample {s}", str(s), e.model_dump_json().encode()) for s, e in SAMPLES.items()),
    Case("last duplicate key valid", TC, ticket(price='"x","price":20')),
    Case("version 1.0 overwritten by 1", TC, ticket(version='1.0,"version":1')),
    Case("version -0", TC, ticket(version="-0")),
    Case("version beyond 2**53", TC, ticket(version="100000000000000000000000")),
    Case("price 20.0", TC, ticket(price="20.0")),
    Case("price 2e1", TC, ticket(price="2e1")),
    Case("price 1E+2", TC, ticket(price="1E+2")),
    Case("price -0.0", TC, ticket(price="-0.0")),
    Case("price -1e-400", TC, ticket(price="-1e-400")),
    Case("price 1e308", TC, ticket(price="1" + "0" * 308)),
    Case("whitespace around", TC, b" \n\t" + ticket() + b"\r\n "),
    Case("escaped NUL", TC, ticket().replace(b"Concert", b"\\u0000")),
    Case("surrogate pair", TC, ticket().replace(b"Concert", b"\\ud83d\\ude00")),
    Case("unknown fields of any kind", TC, ticket()[:-1] + b',"venue":{"seats":[1,2.5,null]}}'),
    Case("nested as deep as allowed", TC, nested(201)),
    *(
        Case(f"expiresAt {value}", OC, order(value))
        for value in [
            "2024-02-29T00:00:00Z",
            "2000-02-29T12:00:00.5+01:00",
            "2026-11-27T07:40:00.000+01:00",
            "2026-01-01T00:00:00+23:59",
            "2026-01-01T00:00:00-00:00",
            "2026-01-01T00:00:00.123456789Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.9999999Z",
            "9999-12-31T22:59:59-01:00",
        ]
    ),
]

PYTHON_ONLY: list[Case] = [
    # Python's models read snake_case too, for Python callers; no service writes it.
    Case("snake_case userId", TC, ticket().replace(b'"userId"', b'"user_id"')),
    # An absent optional field written as null reads as absent in Python.
    Case("orderId null", "ticket:updated", ticket()[:-1] + b',"orderId":null}'),
    # Python reads other ISO-8601 spellings; the schema asks for toISOString()'s.
    Case("lower case t and z", OC, order("2026-11-27t06:40:00z")),
    Case("space for T", OC, order("2026-11-27 06:40:00Z")),
    Case("offset without colon", OC, order("2026-11-27T06:40:00+0100")),
]


# -- systematic mutations of every field of every event ------------------------------

RAW = "\x00raw:"
"""A string value written into the JSON as the bare text after the marker."""

MUTANTS: list[Any] = [
    None,
    "",
    "x",
    0,
    -1,
    1.5,
    10**30,
    True,
    [],
    {},
    "2026-13-01T00:00:00Z",
    "2026-11-27T06:40:00.000Z",
    RAW + "1.0",
    RAW + "2e0",
    RAW + "-0",
    RAW + "-0.0",
]


def field_paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, item in value.items():
        yield (*prefix, key)
        if isinstance(item, dict):
            yield from field_paths(item, (*prefix, key))


def mutated(data: dict[str, Any], path: tuple[str, ...], value: Any, remove: bool) -> bytes:
    copy: dict[str, Any] = json.loads(json.dumps(data))
    node = copy
    for key in path[:-1]:
        node = node[key]
    if remove:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    text = json.dumps(copy, separators=(",", ":"))
    if isinstance(value, str) and value.startswith(RAW):
        text = text.replace(json.dumps(value), value.removeprefix(RAW))
    return text.encode()


def mutations() -> list[Case]:
    cases = []
    for subject, event in SAMPLES.items():
        data = json.loads(event.model_dump_json())
        for path in field_paths(data):
            name = ".".join(path)
            cases.append(
                Case(f"{subject} without {name}", subject.value, mutated(data, path, None, True))
            )
            for value in MUTANTS:
                payload = mutated(data, path, value, False)
                shown = value.removeprefix(RAW) if isinstance(value, str) else repr(value)
                cases.append(Case(f"{subject} {name}={shown}", subject.value, payload))
    return cases


MUTATIONS = mutations()
# The only mutations Python reads and Node refuses: null for the optional orderId.
PYTHON_ONLY_MUTATIONS = {"ticket:updated orderId=None"}
# Written with a fraction or an exponent, an integer is 1 again once parsed: only the
# wire check (parseEventData) can refuse it, as Python does.
HIDDEN_BY_PARSING = {
    f"{subject} version={literal}"
    for subject in ("ticket:created", "ticket:updated", "order:created", "order:cancelled")
    for literal in ("1.0", "2e0", "-0.0")
}


# -- the tests ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_date_beyond_the_utc_years_is_an_invalid_event_for_python(value: str) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(EVENT_TYPES[Subjects.ORDER_CREATED], order(value))


@pytest.fixture(params=list(RUNS))
def runs_as(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def test_invalid_payloads_are_rejected_by_both(
    node_app: NodeApp, runs_as: str, tmp_path: Path
) -> None:
    results = verdicts(node_app, runs_as, INVALID, tmp_path)

    accepted = {
        case.label: (result.python, result.node)
        for case, result in zip(INVALID, results, strict=True)
        if result.python or result.node
    }
    assert accepted == {}
    for case, result in zip(INVALID, results, strict=True):
        assert result.node_errors, case.label  # every rejection says why


def test_valid_payloads_are_accepted_by_both(
    node_app: NodeApp, runs_as: str, tmp_path: Path
) -> None:
    results = verdicts(node_app, runs_as, VALID, tmp_path)

    rejected = {
        case.label: (result.python, result.node, result.node_errors)
        for case, result in zip(VALID, results, strict=True)
        if not (result.python and result.node and result.node_value)
    }
    assert rejected == {}


def test_what_only_python_reads(node_app: NodeApp, runs_as: str, tmp_path: Path) -> None:
    results = verdicts(node_app, runs_as, PYTHON_ONLY, tmp_path)

    assert [(r.python, r.node) for r in results] == [(True, False)] * len(PYTHON_ONLY)


def test_every_mutation_of_every_field_gets_the_same_verdict(
    node_app: NodeApp, runs_as: str, tmp_path: Path
) -> None:
    results = verdicts(node_app, runs_as, MUTATIONS, tmp_path)

    node_only = [
        c.label for c, r in zip(MUTATIONS, results, strict=True) if r.node and not r.python
    ]
    python_only = {
        c.label for c, r in zip(MUTATIONS, results, strict=True) if r.python and not r.node
    }
    assert node_only == []
    assert python_only == PYTHON_ONLY_MUTATIONS
    # Both sides did reject most mutations: the test says something.
    rejected = sum(not r.python for r in results)
    assert rejected > len(MUTATIONS) // 2
    # The validator of parsed values agrees with the wire check, except where parsing
    # hides how a number was written.
    differ = {
        c.label
        for c, r in zip(MUTATIONS, results, strict=True)
        if r.node_value is not None and r.node_value != r.node
    }
    assert differ == HIDDEN_BY_PARSING


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=st.lists(any_event(), min_size=40, max_size=40))
def test_generated_events_are_accepted_by_both(
    node_app: NodeApp, tmp_path_factory: pytest.TempPathFactory, events: list[Event]
) -> None:
    cases = [Case(repr(e), str(e.subject), e.model_dump_json().encode()) for e in events]

    results = verdicts(node_app, "module", cases, tmp_path_factory.mktemp("generated"))

    rejected = [
        (case.label, result.node_errors)
        for case, result in zip(cases, results, strict=True)
        if not (result.python and result.node)
    ]
    assert rejected == []
