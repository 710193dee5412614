"""Durable positions: from a NATS Streaming durable queue group to a JetStream consumer.

For each durable on a channel (read from the monitoring endpoint) the consumer that the
package's ``Listener`` would bind to for that queue group and subject is planned
(``plan_consumer``: the same name, deliver subject and deliver group), and where it
starts: the first message after the last one the group acknowledged on STAN.

That position is exact only while the group is stopped with nothing unacknowledged: a
member still running may acknowledge more after the position was read, and which of
several sent messages are still unacknowledged the monitor does not say. Otherwise the
plan refuses, saying what to do, unless told ``at_least_once``. A stopped group's
unacknowledged messages are read by joining it (the server hands them to a new member
at once; nothing is acknowledged): when they are the last ones sent (a service stopped
under traffic leaves what arrived while it drained), the position is exact after all.
For a running group, ``at_least_once`` goes back by what its members may hold
unacknowledged (their max in flight).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from common_events.transports.base import SubscriptionOptions
from common_events.transports.jetstream import ConsumerPlan, plan_consumer
from common_events.transports.stan.monitor import ChannelSummary, SubscriptionSummary

logger = logging.getLogger(__name__)

BRIDGE_DURABLE_PREFIX = "common-events-bridge"
"""Durables of the bridge itself are not services: never carried over."""

DEFAULT_ACK_WAIT = 5.0
DEFAULT_MAX_IN_FLIGHT = 16
DEFAULT_MAX_DELIVERIES = 10


@dataclass(frozen=True, slots=True)
class DurableGroup:
    """One durable subscription of a channel, with every member the monitor lists."""

    subject: str
    queue_group: str | None
    durable_name: str
    online: tuple[str, ...]
    """Client ids of the members connected now."""
    pending: int
    """Messages sent to the group and not acknowledged."""
    last_sent: int
    max_in_flight: int
    ack_wait: int

    @property
    def label(self) -> str:
        if self.queue_group is None:
            return f"durable {self.durable_name!r}"
        if self.queue_group == self.durable_name:
            return f"queue group {self.queue_group!r}"
        return f"queue group {self.queue_group!r} (durable {self.durable_name!r})"


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """Settings of the consumers made; ``None`` takes the STAN subscription's own."""

    stream: str = "EVENTS"
    deliver_prefix: str = "_INBOX.common-events"
    ack_wait: float | None = None
    max_in_flight: int | None = None
    max_deliveries: int = DEFAULT_MAX_DELIVERIES


@dataclass(frozen=True, slots=True)
class ConsumerStart:
    """Where the consumer of one durable group starts, or why it cannot be made."""

    group: DurableGroup
    consumer: ConsumerPlan
    resume_at: int
    """The first STAN sequence the consumer delivers."""
    how: str
    """How ``resume_at`` was found, for the plan."""
    refusal: str | None = None


def durable_groups(channel: ChannelSummary) -> list[DurableGroup]:
    """The durables of ``channel`` as groups (members of one queue group together)."""
    members: dict[tuple[str, str | None], list[SubscriptionSummary]] = {}
    for sub in channel.subscriptions:
        if sub.durable_name is None or sub.durable_name.startswith(BRIDGE_DURABLE_PREFIX):
            continue
        members.setdefault((sub.durable_name, sub.queue_group), []).append(sub)
    groups = []
    for (durable, queue_group), subs in sorted(
        members.items(), key=lambda item: (item[0][1] or "", item[0][0])
    ):
        groups.append(
            DurableGroup(
                subject=channel.name,
                queue_group=queue_group,
                durable_name=durable,
                online=tuple(sorted(s.client_id for s in subs if not s.offline)),
                pending=sum(s.pending for s in subs),
                last_sent=max(s.last_sent for s in subs),
                max_in_flight=max(s.max_in_flight for s in subs),
                ack_wait=max(s.ack_wait for s in subs),
            )
        )
    return groups


def consumer_for(group: DurableGroup, settings: ConsumerSettings) -> ConsumerPlan:
    """The consumer a ``Listener`` with this queue group binds to on the subject."""
    options = SubscriptionOptions(
        queue_group=group.queue_group,
        durable_name=group.durable_name,
        deliver_all_available=True,
        ack_wait=settings.ack_wait or float(group.ack_wait or DEFAULT_ACK_WAIT),
        max_in_flight=settings.max_in_flight or group.max_in_flight or DEFAULT_MAX_IN_FLIGHT,
        max_deliveries=settings.max_deliveries,
    )
    return plan_consumer(
        group.subject,
        options,
        stream=settings.stream,
        deliver_prefix=settings.deliver_prefix,
        ephemeral_inactive_threshold=30.0,
    )


def plan_start(
    group: DurableGroup,
    settings: ConsumerSettings,
    *,
    channel_first: int,
    at_least_once: bool,
    unacknowledged: list[int] | None = None,
    dry_run: bool = False,
) -> ConsumerStart:
    """Where the consumer of ``group`` starts.

    ``unacknowledged``: the sequences a stopped group has not acknowledged, read by
    joining it (a dry run does not, and estimates). When they are the last ones sent,
    the position is exact all the same.
    """
    consumer = consumer_for(group, settings)
    after_acked = max(channel_first, group.last_sent + 1)
    if not group.online and group.pending == 0:
        return ConsumerStart(
            group, consumer, after_acked, f"after the last acknowledged, #{group.last_sent}"
        )
    if group.online:
        problem = f"{len(group.online)} member(s) online ({', '.join(group.online)})" + (
            f" and {group.pending} message(s) unacknowledged" if group.pending else ""
        )
        held = max(group.pending, group.max_in_flight * len(group.online))
        resume = max(channel_first, group.last_sent + 1 - held)
        how = (
            f"members online: from #{resume}, the last {held} sent, which they may not "
            "have acknowledged yet"
        )
        fix = (
            "stop that service (every instance; its durable stays on the server), wait "
            "until `common-events monitor` shows the group offline with 0 pending, and "
            "run migrate again"
        )
    else:
        problem = f"{group.pending} message(s) unacknowledged"
        if unacknowledged:
            resume = max(channel_first, min(unacknowledged))
            if set(unacknowledged) >= set(range(resume, group.last_sent + 1)):
                # The unacknowledged ones are the last ones sent (delivered while the
                # service drained, and left for redelivery): everything before them was
                # acknowledged, nothing after. Starting at the first of them is exact.
                return ConsumerStart(
                    group,
                    consumer,
                    resume,
                    f"after the last acknowledged, #{resume - 1} (the {group.pending} sent "
                    "after it were not acknowledged: they come again)",
                )
            how = f"the oldest unacknowledged, #{resume} ({group.pending} unacknowledged)"
            problem += (
                f" among later ones it acknowledged (#{resume} is not, #{group.last_sent} was sent)"
            )
        else:
            resume = max(channel_first, group.last_sent + 1 - group.pending)
            how = (
                f"after the last acknowledged, #{resume - 1}, if the {group.pending} "
                "unacknowledged are the last ones sent (read when it runs)"
            )
        fix = (
            "start that service on NATS Streaming again until it has acknowledged them "
            "(or they went to its dead-letter channel), stop it, and run migrate again"
        )
    if at_least_once or (unacknowledged is None and not group.online and dry_run):
        return ConsumerStart(group, consumer, resume, how)
    refusal = (
        f"{group.label} on {group.subject!r}: {problem}. Its position cannot be carried "
        f"over exactly: {fix}; or pass --at-least-once to start at the oldest message it "
        "may not have acknowledged (its handlers then see some messages again)"
    )
    return ConsumerStart(group, consumer, resume, how, refusal)
