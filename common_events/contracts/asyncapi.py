"""An AsyncAPI 3.0 document of the events, to browse and review them like an HTTP API.

One channel per subject (its address is the subject), one message per channel whose
payload is the subject's JSON Schema (draft 2020-12, given as a multi-format schema),
a ``send`` and a ``receive`` operation per channel, and the listeners' delivery
defaults (durable, ack wait, max in flight, ...) on the ``receive`` operation's
bindings. Those defaults live in ``common_events.core``, which this layer does not
import: the caller passes them in (``common-events asyncapi`` does).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

from common_events.contracts.schema import DIALECT, Schema, export_schemas, member_name
from common_events.events.subjects import Subjects

logger = logging.getLogger(__name__)

ASYNCAPI_VERSION = "3.0.0"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
NATS_BINDING_VERSION = "0.1.0"
DEFAULTS_EXTENSION = "x-common-events-listener"
"""The operation-binding extension that carries the listeners' delivery defaults."""

DocumentFormat = Literal["yaml", "json"]


def asyncapi_document(
    *,
    version: str,
    schemas: Mapping[str, Schema] | None = None,
    examples: Mapping[str, Mapping[str, Any]] | None = None,
    receive_defaults: Mapping[str, Any] | None = None,
    dead_letter_address: Callable[[str], str] | None = None,
    dead_letter_schema: Schema | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document as plain JSON data.

    ``examples`` maps a subject to an example payload (wire JSON). ``receive_defaults``
    (camelCase keys) are put on every ``receive`` operation. With ``dead_letter_address``
    and ``dead_letter_schema``, each subject's dead-letter channel is described too.
    """
    schemas = export_schemas() if schemas is None else schemas
    examples = examples or {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    component_schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    known = [subject.value for subject in Subjects]
    ordered = [s for s in known if s in schemas] + sorted(s for s in schemas if s not in known)
    for subject in ordered:
        schema = schemas[subject]
        name = member_name(subject)
        channel_id = name[:1].lower() + name[1:]
        schema_id = str(schema.get("title") or f"{name}Event")
        summary = _first_line(schema.get("description"))
        component_schemas[schema_id] = {"schemaFormat": SCHEMA_FORMAT, "schema": schema}
        message: dict[str, Any] = {
            "name": name,
            "title": schema_id,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{schema_id}"},
        }
        if summary:
            message["summary"] = summary
        if subject in examples:
            message["examples"] = [{"name": "sample", "payload": dict(examples[subject])}]
        messages[name] = message
        channel: dict[str, Any] = {"address": subject, "title": subject}
        if summary:
            channel["description"] = summary
        channel["messages"] = {name: {"$ref": f"#/components/messages/{name}"}}
        channels[channel_id] = channel
        channel_ref = {"$ref": f"#/channels/{channel_id}"}
        message_ref = {"$ref": f"#/channels/{channel_id}/messages/{name}"}
        operations[f"send{name}"] = {
            "action": "send",
            "channel": channel_ref,
            "summary": f"Publish {subject} (Publisher[{schema_id}]).",
            "messages": [message_ref],
        }
        receive: dict[str, Any] = {
            "action": "receive",
            "channel": channel_ref,
            "summary": f"Listen to {subject} (Listener[{schema_id}]).",
            "description": (
                "Every instance of a service joins the service's queue group "
                "(`Listener.queue_group`, required), so each event is handled once per "
                "service. The listener acknowledges explicitly; an unacknowledged event "
                "comes back after the ack wait."
            ),
            "messages": [message_ref],
            "bindings": {"nats": {"bindingVersion": NATS_BINDING_VERSION}},
        }
        if receive_defaults is not None:
            defaults = dict(receive_defaults)
            if dead_letter_address is not None:
                defaults["deadLetterChannel"] = dead_letter_address(subject)
            receive["bindings"][DEFAULTS_EXTENSION] = defaults
        operations[f"receive{name}"] = receive

        if dead_letter_address is not None and dead_letter_schema is not None:
            dead_id = f"deadLetter{name}"
            channels[dead_id] = {
                "address": dead_letter_address(subject),
                "title": dead_letter_address(subject),
                "description": (
                    f"{subject} messages that could never be handled (invalid JSON, "
                    "an invalid event, or past max deliveries), with the reason."
                ),
                "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
            }

    if dead_letter_address is not None and dead_letter_schema is not None:
        component_schemas["DeadLetter"] = {
            "schemaFormat": SCHEMA_FORMAT,
            "schema": {"$schema": DIALECT, **dead_letter_schema},
        }
        messages["DeadLetter"] = {
            "name": "DeadLetter",
            "title": "DeadLetter",
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/DeadLetter"},
        }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "common-events",
            "version": version,
            "description": (
                "The events of the ticketing system. Each payload is the event's data as "
                "UTF-8 JSON with camelCase keys and no envelope, byte for byte what the "
                "Node services send."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": component_schemas, "messages": messages},
    }


def dump_document(document: Mapping[str, Any], document_format: DocumentFormat) -> str:
    """The document as YAML or JSON text.

    YAML needs PyYAML (the ``yaml`` extra). Without it the JSON text is written instead:
    JSON is valid YAML 1.2, so every AsyncAPI tool still reads it, and a hand-written
    YAML emitter would be one more thing to get quoting right in.
    """
    if document_format == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    try:
        # Imported by name so that type-checking the package needs no PyYAML stubs.
        yaml: Any = importlib.import_module("yaml")
    except ModuleNotFoundError:
        logger.warning(
            "PyYAML is not installed (pip install 'common-events[yaml]'); writing JSON, "
            "which is valid YAML 1.2"
        )
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    text: str = yaml.safe_dump(
        dict(document), sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )
    return text


def _first_line(text: Any) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return None
    return text.strip().splitlines()[0].replace("``", "`")
