from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from common_events import Listener, Subjects, __version__, dead_letter_subject
from common_events.cli.asyncapi import build_document
from common_events.cli.main import main
from common_events.contracts.asyncapi import DEFAULTS_EXTENSION, SCHEMA_FORMAT, dump_document
from common_events.contracts.schema import export_schemas


def resolve(document: dict[str, Any], reference: str) -> Any:
    assert reference.startswith("#/"), reference
    node: Any = document
    for part in reference[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in references(item)]
    return []


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def test_every_subject_is_a_channel_with_its_schema(document: dict[str, Any]) -> None:
    schemas = export_schemas()
    channels = {channel["address"]: channel for channel in document["channels"].values()}

    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["version"] == __version__
    for subject in Subjects:
        channel = channels[subject.value]
        (message_ref,) = channel["messages"].values()
        message = resolve(document, message_ref["$ref"])
        payload = resolve(document, message["payload"]["$ref"])
        assert message["contentType"] == "application/json"
        assert payload == {"schemaFormat": SCHEMA_FORMAT, "schema": schemas[subject.value]}
        # The example is a valid event of the subject.
        (example,) = message["examples"]
        jsonschema.Draft202012Validator(schemas[subject.value]).validate(example["payload"])
        assert dead_letter_subject(subject.value) in channels


def test_each_subject_has_a_send_and_a_receive_operation_with_the_defaults(
    document: dict[str, Any],
) -> None:
    by_channel: dict[str, set[str]] = {}
    for operation in document["operations"].values():
        channel = resolve(document, operation["channel"]["$ref"])
        by_channel.setdefault(channel["address"], set()).add(operation["action"])
        for message in operation["messages"]:
            # An operation's messages are the channel's own (AsyncAPI 3.0 requires it).
            assert message["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
        if operation["action"] == "receive":
            defaults = operation["bindings"][DEFAULTS_EXTENSION]
            assert defaults["durable"] is Listener.durable
            assert defaults["ackWaitSeconds"] == Listener.ack_wait
            assert defaults["maxInFlight"] == Listener.max_in_flight
            assert defaults["maxDeliveries"] == Listener.max_deliveries
            assert defaults["deadLetterChannel"] == dead_letter_subject(channel["address"])
            assert operation["bindings"]["nats"] == {"bindingVersion": "0.1.0"}

    assert by_channel == {subject.value: {"send", "receive"} for subject in Subjects}


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    found = references(document)

    assert found
    for reference in found:
        resolve(document, reference)


def test_the_document_is_valid_asyncapi_3(document: dict[str, Any], node_modules: Path) -> None:
    official = json.loads(
        (node_modules / "@asyncapi" / "specs" / "schemas" / "3.0.0.json").read_text()
    )
    validator = jsonschema.validators.validator_for(official)(official)

    assert list(validator.iter_errors(document)) == []
    # And the official schema is strict enough to notice a wrong action.
    broken = json.loads(json.dumps(document))
    next(iter(broken["operations"].values()))["action"] = "publish"
    assert list(validator.iter_errors(broken))


@pytest.mark.parametrize("document_format", ["yaml", "json"])
def test_asyncapi_command_writes_the_document(
    document_format: str, document: dict[str, Any], tmp_path: Path
) -> None:
    output = tmp_path / f"asyncapi.{document_format}"

    status = main(["asyncapi", "--format", document_format, "-o", str(output)])

    assert status == 0
    text = output.read_text(encoding="utf-8")
    if document_format == "yaml":
        yaml = pytest.importorskip("yaml", reason="PyYAML (the yaml extra) writes YAML")
        loaded = yaml.safe_load(text)
    else:
        loaded = json.loads(text)
    assert loaded == document
    if document_format == "yaml":
        assert text.startswith("asyncapi: 3.0.0\n")


def test_yaml_falls_back_to_json_without_pyyaml(
    document: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)

    text = dump_document(document, "yaml")

    assert json.loads(text) == document
