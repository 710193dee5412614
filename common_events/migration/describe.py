"""The consumers a ``Listener`` binds to, described for a service in another language.

A Node service that moves to JetStream joins the same consumers as the Python services
of its queue group (the official ``nats`` client: ``jsm.consumers.add(stream, config)``
then a queue subscription on the deliver subject). The description gives, per subject,
the consumer's name and its configuration in the JetStream API's own JSON (durations
in nanoseconds), so that it can be passed as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from common_events.migration.positions import (
    DEFAULT_ACK_WAIT,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_MAX_IN_FLIGHT,
)
from common_events.transports.base import SubscriptionOptions
from common_events.transports.jetstream import ConsumerPlan, plan_consumer

logger = logging.getLogger(__name__)

NANOSECONDS = 1_000_000_000


def consumer_config(plan: ConsumerPlan) -> dict[str, Any]:
    """``plan`` as the JetStream API's ConsumerConfig JSON (what ``bind_consumer`` makes
    for a new consumer)."""
    config: dict[str, Any] = {
        "name": plan.name,
        "deliver_policy": "all" if plan.deliver_all else "new",
        "ack_policy": "explicit",
        "ack_wait": round(plan.ack_wait * NANOSECONDS),
        "max_deliver": plan.max_deliver if plan.max_deliver is not None else -1,
        "max_ack_pending": plan.max_ack_pending,
        "filter_subject": plan.filter_subject,
        "deliver_subject": plan.deliver_subject,
    }
    if plan.durable:
        config["durable_name"] = plan.name
    if plan.deliver_group:
        config["deliver_group"] = plan.deliver_group
    if plan.inactive_threshold is not None:
        config["inactive_threshold"] = round(plan.inactive_threshold * NANOSECONDS)
    return config


def describe_consumers(
    queue_group: str,
    subjects: Sequence[str],
    *,
    durable_name: str | None = None,
    durable: bool = True,
    ack_wait: float = DEFAULT_ACK_WAIT,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_deliveries: int = DEFAULT_MAX_DELIVERIES,
    stream: str = "EVENTS",
    deliver_prefix: str = "_INBOX.common-events",
) -> dict[str, Any]:
    """What a member of ``queue_group`` needs to join the group's consumers, per subject.

    The defaults are ``Listener``'s; pass a listener class's own settings where they
    differ (all members of a group must agree on them, or each start updates them).
    """
    options = SubscriptionOptions(
        queue_group=queue_group,
        durable_name=(durable_name or queue_group) if durable else None,
        deliver_all_available=True,
        ack_wait=ack_wait,
        max_in_flight=max_in_flight,
        max_deliveries=max_deliveries,
    )
    consumers = []
    for subject in subjects:
        plan = plan_consumer(
            subject,
            options,
            stream=stream,
            deliver_prefix=deliver_prefix,
            ephemeral_inactive_threshold=30.0,
        )
        consumers.append(
            {
                "subject": subject,
                "name": plan.name,
                "deliverSubject": plan.deliver_subject,
                "deliverGroup": plan.deliver_group,
                "config": consumer_config(plan),
            }
        )
    return {
        "stream": stream,
        "queueGroup": queue_group,
        "maxDeliveries": max_deliveries,
        "rules": (
            "ack each message once handled; one not acked within ack_wait comes back. "
            "The server does not bound deliveries: a member dead-letters a message itself "
            "on its maxDeliveries-th failed delivery (publish the record to "
            "dead-letter:<subject>, then ack), as the Python Listener does"
        ),
        "consumers": consumers,
    }
