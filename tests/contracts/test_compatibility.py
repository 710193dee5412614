"""Every kind of change the check classifies, each with whom it breaks."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pytest
from pydantic import Field, StrictInt, StrictStr

from common_events import Event, Subjects
from common_events.cli.main import main
from common_events.contracts.compatibility import (
    ChangeKind,
    Mode,
    check_compatibility,
    compare,
)
from common_events.contracts.schema import Schema, export_schemas, write_schemas
from common_events.events.base import WireModel
from common_events.events.fields import Id, Price, Version

IntegerPrice = Annotated[StrictInt, Field(ge=0)]


def schemas(*models: type[Event]) -> dict[str, Schema]:
    return export_schemas({model.subject: model for model in models})


def only_change(old: dict[str, Schema], new: dict[str, Schema]) -> tuple[str, bool, bool]:
    """(detail, breaks consumers, breaks producers) of the one change between them."""
    (change,) = compare(old, new)
    return change.detail, change.breaks_consumers, change.breaks_producers


# -- ticket:created in several versions --------------------------------------------


class Ticket(Event):
    subject: ClassVar[Subjects] = Subjects.TICKET_CREATED
    id: Id
    version: Version
    title: StrictStr
    price: Price
    user_id: Id


class TicketWithOptionalCurrency(Ticket):
    currency: StrictStr | None = None


class TicketWithRequiredCurrency(Ticket):
    currency: StrictStr


class TicketWithOptionalNote(Ticket):
    note: StrictStr | None = None


class TicketWithoutTitle(Event):
    subject: ClassVar[Subjects] = Subjects.TICKET_CREATED
    id: Id
    version: Version
    price: Price
    user_id: Id


class TicketWithSellerId(Event):
    subject: ClassVar[Subjects] = Subjects.TICKET_CREATED
    id: Id
    version: Version
    title: StrictStr
    price: Price
    seller_id: Id


class TicketWithIntegerPrice(Event):
    subject: ClassVar[Subjects] = Subjects.TICKET_CREATED
    id: Id
    version: Version
    title: StrictStr
    price: IntegerPrice
    user_id: Id


class TicketWithOptionalTitle(Event):
    subject: ClassVar[Subjects] = Subjects.TICKET_CREATED
    id: Id
    version: Version
    title: StrictStr | None = None
    price: Price
    user_id: Id


class TicketWithAnyTitle(Ticket):
    pass


# -- order:created with a nested ticket and an enum ----------------------------------


class Status(StrEnum):
    CREATED = "created"
    CANCELLED = "cancelled"


class StatusWithRefunded(StrEnum):
    CREATED = "created"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class OrderTicket(WireModel):
    id: Id
    price: Price


class OrderTicketWithTextPrice(WireModel):
    id: Id
    price: StrictStr


class OrderTicketWithCurrency(WireModel):
    id: Id
    price: Price
    currency: StrictStr


class Order(Event):
    subject: ClassVar[Subjects] = Subjects.ORDER_CREATED
    id: Id
    status: Status
    ticket: OrderTicket


class OrderWithRefunded(Event):
    subject: ClassVar[Subjects] = Subjects.ORDER_CREATED
    id: Id
    status: StatusWithRefunded
    ticket: OrderTicket


class OrderWithTextPrice(Event):
    subject: ClassVar[Subjects] = Subjects.ORDER_CREATED
    id: Id
    status: Status
    ticket: OrderTicketWithTextPrice


class OrderWithCurrency(Event):
    subject: ClassVar[Subjects] = Subjects.ORDER_CREATED
    id: Id
    status: Status
    ticket: OrderTicketWithCurrency


class Expiration(Event):
    subject: ClassVar[Subjects] = Subjects.EXPIRATION_COMPLETE
    order_id: Id


# -- the classification --------------------------------------------------------------


def test_no_change() -> None:
    assert compare(schemas(Ticket, Order), schemas(Ticket, Order)) == []


def test_optional_field_added_is_compatible() -> None:
    assert only_change(schemas(Ticket), schemas(TicketWithOptionalCurrency)) == (
        "field currency added (optional)",
        False,
        False,
    )


def test_required_field_added_breaks_producers_on_the_old_version() -> None:
    # Old producers do not send it; the new consumers require it.
    assert only_change(schemas(Ticket), schemas(TicketWithRequiredCurrency)) == (
        "field currency added (required)",
        False,
        True,
    )


def test_optional_field_removed_is_compatible() -> None:
    assert only_change(schemas(TicketWithOptionalNote), schemas(Ticket)) == (
        "field note removed (was optional)",
        False,
        False,
    )


def test_required_field_removed_breaks_consumers_on_the_old_version() -> None:
    # Old consumers require it; the new producers leave it out.
    assert only_change(schemas(Ticket), schemas(TicketWithoutTitle)) == (
        "field title removed (was required)",
        True,
        False,
    )


def test_field_renamed_breaks_both_sides() -> None:
    (change,) = compare(schemas(Ticket), schemas(TicketWithSellerId))

    assert change.kind is ChangeKind.FIELD_RENAMED
    assert change.path == "sellerId"
    assert change.detail == "field userId renamed to sellerId (required -> required)"
    assert change.breaks_consumers and change.breaks_producers


def test_optional_field_renamed_is_compatible_for_the_schemas() -> None:
    class TicketWithOptionalComment(Ticket):
        comment: StrictStr | None = None

    (change,) = compare(schemas(TicketWithOptionalNote), schemas(TicketWithOptionalComment))

    assert change.kind is ChangeKind.FIELD_RENAMED
    assert (change.breaks_consumers, change.breaks_producers) == (False, False)


def test_type_changed_breaks_both_sides_and_names_the_nested_path() -> None:
    old, new = schemas(Order), schemas(OrderWithTextPrice)

    assert only_change(old, new) == ("field ticket.price changed type number -> string", True, True)
    report = check_compatibility(new, {"1.3.0": old}, Mode.FORWARD)
    assert report.lines()[0] == (
        "order:created: field ticket.price changed type number -> string: "
        "breaks consumers on 1.3.0 (breaks producers on 1.3.0; not checked in forward mode)"
    )


def test_type_widened_integer_to_number_breaks_consumers() -> None:
    # Old consumers reject 20.5, which new producers may send.
    assert only_change(schemas(TicketWithIntegerPrice), schemas(Ticket)) == (
        "field price widened type integer -> number",
        True,
        False,
    )


def test_type_narrowed_number_to_integer_breaks_producers() -> None:
    # New consumers reject 20.5, which old producers may send.
    assert only_change(schemas(Ticket), schemas(TicketWithIntegerPrice)) == (
        "field price narrowed type number -> integer",
        False,
        True,
    )


def test_enum_value_added_breaks_consumers() -> None:
    assert only_change(schemas(Order), schemas(OrderWithRefunded)) == (
        "field status enum value 'refunded' added",
        True,
        False,
    )


def test_enum_value_removed_breaks_producers() -> None:
    assert only_change(schemas(OrderWithRefunded), schemas(Order)) == (
        "field status enum value 'refunded' removed",
        False,
        True,
    )


def test_nested_required_field_added() -> None:
    assert only_change(schemas(Order), schemas(OrderWithCurrency)) == (
        "field ticket.currency added (required)",
        False,
        True,
    )


def test_field_now_optional_breaks_consumers_and_now_required_breaks_producers() -> None:
    assert only_change(schemas(Ticket), schemas(TicketWithOptionalTitle)) == (
        "field title now optional",
        True,
        False,
    )
    assert only_change(schemas(TicketWithOptionalTitle), schemas(Ticket)) == (
        "field title now required",
        False,
        True,
    )


def test_new_event_is_compatible() -> None:
    (change,) = compare(schemas(Ticket), schemas(Ticket, Expiration))

    assert change.kind is ChangeKind.EVENT_ADDED
    assert change.subject == "expiration:complete"
    assert not (change.breaks_consumers or change.breaks_producers)


def test_event_removed_breaks_both_sides() -> None:
    (change,) = compare(schemas(Ticket, Expiration), schemas(Ticket))

    assert change.kind is ChangeKind.EVENT_REMOVED
    assert change.breaks_consumers and change.breaks_producers


def test_constraints_tightened_and_loosened() -> None:
    old = schemas(Ticket)
    new = json.loads(json.dumps(old))
    new["ticket:created"]["properties"]["title"]["minLength"] = 3
    del new["ticket:created"]["properties"]["id"]["minLength"]

    changes = {change.detail: change for change in compare(old, new)}

    tightened = changes["field title tightened minLength 3 added"]
    loosened = changes["field id loosened minLength 1 removed"]
    assert (tightened.kind, tightened.breaks_consumers, tightened.breaks_producers) == (
        ChangeKind.CONSTRAINT_TIGHTENED,
        False,
        True,
    )
    assert (loosened.kind, loosened.breaks_consumers, loosened.breaks_producers) == (
        ChangeKind.CONSTRAINT_LOOSENED,
        True,
        False,
    )


def test_closed_consumers_break_on_an_added_optional_field() -> None:
    old = schemas(Ticket)
    old["ticket:created"]["additionalProperties"] = False

    (change,) = compare(old, schemas(TicketWithOptionalCurrency))

    assert change.detail == "field currency added (optional)"
    assert change.breaks_consumers and not change.breaks_producers


# -- modes, transitivity and the report ----------------------------------------------


@pytest.mark.parametrize(
    ("mode", "compatible"),
    [(Mode.BACKWARD, False), (Mode.FORWARD, True), (Mode.FULL, False)],
)
def test_the_mode_decides_which_side_counts(mode: Mode, compatible: bool) -> None:
    report = check_compatibility(
        schemas(TicketWithRequiredCurrency), {"1.0.0": schemas(Ticket)}, mode
    )

    assert report.compatible is compatible


def test_the_same_change_against_several_versions_is_reported_once() -> None:
    releases = {
        "1.0.0": schemas(TicketWithIntegerPrice),
        "1.1.0": schemas(TicketWithIntegerPrice),
        "1.2.0": schemas(Ticket),
    }

    report = check_compatibility(schemas(Ticket), releases, Mode.FULL)

    assert report.lines() == [
        "ticket:created: field price widened type integer -> number: "
        "breaks consumers on 1.0.0, 1.1.0",
        "1 of 1 change(s) break full compatibility against 1.0.0, 1.1.0, 1.2.0",
    ]


def test_a_compatible_report() -> None:
    report = check_compatibility(schemas(TicketWithOptionalCurrency), {"1.0.0": schemas(Ticket)})

    assert report.compatible
    assert report.lines() == [
        "ticket:created: field currency added (optional): compatible",
        "1 change(s), all compatible (full mode)",
    ]


# -- the command ---------------------------------------------------------------------


def _released_like_today(directory: Path, **edits: Any) -> Path:
    """Today's schemas written to ``directory`` with a change, as an older release."""
    old = export_schemas()
    for path, value in edits.items():
        subject, *keys = path.split("/")
        node = old[subject.replace("_", ":")]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    write_schemas(directory, old)
    return directory


def test_check_command_exits_1_with_the_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = _released_like_today(
        tmp_path / "1.3.0",
        **{"order_created/properties/ticket/properties/price": {"type": "string"}},
    )

    status = main(["schema", "check", "--against", str(release), "--mode", "forward"])

    out = capsys.readouterr().out
    assert status == 1
    assert (
        f"order:created: field ticket.price changed type string -> number: "
        f"breaks consumers on {release}"
    ) in out


def test_check_command_exits_0_when_the_break_is_outside_the_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Today's status enum has a value the "release" lacks: only old consumers break.
    release = _released_like_today(
        tmp_path / "old",
        **{"order_created/properties/status/enum": ["created", "cancelled", "awaiting:payment"]},
    )

    assert main(["schema", "check", "--against", str(release), "--mode", "backward"]) == 0
    assert main(["schema", "check", "--against", str(release), "--mode", "forward"]) == 1
    assert main(["schema", "check", "--against", str(release)]) == 1
    assert "field status enum value 'complete' added" in capsys.readouterr().out


def test_check_command_against_the_packaged_releases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "check", "--against", "0.1.0"]) == 0
    assert main(["schema", "check", "--no-transitive"]) == 0
    assert main(["schema", "check"]) == 0
    assert "no changes against 0.1.0" in capsys.readouterr().out


def test_check_command_refuses_an_unknown_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "check", "--against", "9.9.9"]) == 2
    assert "neither a directory nor a released version" in capsys.readouterr().err
