"""How a subscription maps onto a JetStream push consumer.

One consumer per (durable name, subject): the reference services reuse one durable name
(their queue group) for every subject they listen to, while a JetStream consumer name is
unique per stream, so the subject is part of the name. Names are derived
deterministically, so two services with the same durable and queue group bind to the
same consumer and its deliver group splits the work between them.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

from common_events.transports.base import SubscriptionOptions

# JetStream consumer names may not hold whitespace, ".", "*", ">", path separators or
# control characters; they also name directories in the file store, so only a
# conservative set is kept.
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_PART = 48


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_")[:_MAX_PART] or "x"


def _digest(*parts: str) -> str:
    # The digest of the raw strings keeps two names apart whose safe forms collide
    # ("a.b" and "a_b"), and keeps the name the same in every process.
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:10]


def consumer_name(durable_or_group: str, subject: str) -> str:
    """The consumer for one durable (or queue group) on one subject."""
    return f"{_safe(durable_or_group)}__{_safe(subject)}_{_digest(durable_or_group, subject)}"


@dataclass(frozen=True, slots=True)
class ConsumerPlan:
    """The consumer a subscription binds to and where its messages are pushed."""

    name: str
    deliver_subject: str
    deliver_group: str | None
    durable: bool
    """Survives when nobody listens; otherwise the server removes it once idle."""
    filter_subject: str
    deliver_all: bool
    ack_wait: float
    max_ack_pending: int
    max_deliver: int | None
    """The server's bound on deliveries; ``None`` for unbounded, which is what
    ``plan_consumer`` always chooses (see there)."""
    inactive_threshold: float | None


def plan_consumer(
    subject: str,
    options: SubscriptionOptions,
    *,
    stream: str,
    deliver_prefix: str,
    ephemeral_inactive_threshold: float,
) -> ConsumerPlan:
    """Choose the consumer for ``options``.

    - durable (with or without a queue group): named after the durable name; the deliver
      group is the queue group, or the consumer name when there is none, so that two
      instances of one durable listener never both process a message.
    - queue group without durable: named after the group, removed by the server after
      ``ephemeral_inactive_threshold`` seconds without members.
    - neither: a consumer of its own with a random name, removed on close.
    """
    if options.durable_name:
        name = consumer_name(options.durable_name, subject)
        group: str | None = _safe(options.queue_group) if options.queue_group else name
        durable = True
    elif options.queue_group:
        name = consumer_name(f"group:{options.queue_group}", subject)
        group = _safe(options.queue_group)
        durable = False
    else:
        name = f"{_safe(subject)}_{uuid.uuid4().hex}"
        group = None
        durable = False
    return ConsumerPlan(
        name=name,
        deliver_subject=f"{deliver_prefix}.{stream}.{name}",
        deliver_group=group,
        durable=durable,
        filter_subject=subject,
        deliver_all=options.deliver_all_available,
        ack_wait=options.ack_wait,
        max_ack_pending=max(1, options.max_in_flight),
        # No server-side bound, whatever max_deliveries says: the core enforces it, and
        # a message leaves only once the core has stored its dead-letter record. Any
        # bound of the server's could stop delivering a message whose record could not
        # be published yet (a refused or unstored dead-letter subject): it would stay in
        # the stream but never come back to anyone, a silent loss.
        max_deliver=None,
        inactive_threshold=None if durable else ephemeral_inactive_threshold,
    )
