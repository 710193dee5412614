"""``common-events asyncapi``: an AsyncAPI 3.0 document of every subject."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common_events import __version__
from common_events.contracts.asyncapi import DocumentFormat, asyncapi_document, dump_document
from common_events.contracts.samples import sample_events
from common_events.contracts.schema import model_schema
from common_events.core.dead_letter import DeadLetter, dead_letter_subject
from common_events.core.listener import Listener


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "asyncapi",
        help="write an AsyncAPI 3.0 document of every subject",
        description=(
            "An AsyncAPI 3.0 document: one channel per subject with its message and "
            "payload schema, and the listeners' delivery defaults as operation bindings."
        ),
    )
    parser.add_argument(
        "--format",
        choices=["yaml", "json"],
        default="yaml",
        help=(
            "yaml (default; without the yaml extra, JSON is written, which is valid "
            "YAML 1.2) or json"
        ),
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", type=Path, help="write here instead of stdout"
    )
    parser.set_defaults(func=run)


def listener_defaults() -> dict[str, Any]:
    """``Listener``'s class defaults, as the document shows them (camelCase)."""
    return {
        "durable": Listener.durable,
        "durableName": "the queue group's name",
        "deliverAllAvailable": Listener.deliver_all_available,
        "manualAck": True,
        "ackWaitSeconds": Listener.ack_wait,
        "maxInFlight": Listener.max_in_flight,
        "maxDeliveries": Listener.max_deliveries,
        "retryDelaySeconds": Listener.retry_delay,
    }


def build_document() -> dict[str, Any]:
    examples = {
        subject.value: event.model_dump(mode="json") for subject, event in sample_events().items()
    }
    return asyncapi_document(
        version=__version__,
        examples=examples,
        receive_defaults=listener_defaults(),
        dead_letter_address=dead_letter_subject,
        dead_letter_schema=model_schema(DeadLetter),
    )


def run(args: argparse.Namespace) -> int:
    document_format: DocumentFormat = args.format
    text = dump_document(build_document(), document_format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(args.output)
    return 0
