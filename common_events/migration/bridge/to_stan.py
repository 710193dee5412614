"""JetStream to STAN: messages of one subject published on JetStream, forwarded to its
channel, for a subject whose publishers moved while some of its listeners did not (the
package's docstring says how an interrupted publish is settled)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from typing import TYPE_CHECKING, Any

from common_events.errors import PublishError, PublishTimeout, TransportError
from common_events.migration.bridge.channel import RETRY_DELAY, Channel
from common_events.migration.bridge.floors import Floors
from common_events.migration.bridge.intents import Intent, Ledger
from common_events.migration.origin import origin_sequence
from common_events.migration.positions import BRIDGE_DURABLE_PREFIX
from common_events.migration.stan_channels import read_channel
from common_events.transports.base import SubscriptionOptions, TransportMessage
from common_events.transports.jetstream import plan_consumer
from common_events.transports.nats_connection import Operation, classify_nats_error
from common_events.transports.stan import protocol as stan_protocol

if TYPE_CHECKING:
    from common_events.migration.bridge.runner import Bridge

logger = logging.getLogger(__name__)

REVERSE_DURABLE = f"{BRIDGE_DURABLE_PREFIX}-to-stan"


class ReverseChannel(Channel):
    """Messages of one subject published on JetStream, forwarded to its channel."""

    direction = "to_stan"

    def __init__(self, bridge: Bridge, subject: str, ledger: Ledger, floors: Floors) -> None:
        super().__init__(bridge, subject)
        self.ledger = ledger
        self.floors = floors
        self._intent: Intent | None = None
        self._subscription: Any = None
        self._encoder: stan_protocol.PubMsgEncoder | None = None

    async def start(self) -> None:
        bridge = self.bridge
        assert bridge.jetstream is not None and bridge._stream is not None
        options = SubscriptionOptions(
            durable_name=REVERSE_DURABLE,
            queue_group=None,
            deliver_all_available=True,
            ack_wait=bridge.options.ack_wait,
            max_in_flight=1,
            max_deliveries=None,
        )
        plan = plan_consumer(
            self.subject,
            options,
            stream=bridge.jetstream.stream,
            deliver_prefix=bridge.jetstream.options.deliver_prefix,
            ephemeral_inactive_threshold=bridge.jetstream.options.ephemeral_inactive_threshold,
        )
        if await bridge._stream.consumer_start(plan.name) is None:
            # New: from the next message stored (what was there before is not the
            # bridge's business; migrate copies the other way).
            start = await bridge._stream.last_sequence() + 1
            await bridge._stream.create_consumer(plan, start_sequence=start)
        self._intent = await self.ledger.read(self.subject)
        if self._intent is not None:
            self._resumes_after(self._intent.stream_sequence)
        self._subscription = await bridge.jetstream.subscribe(
            self.subject, self._on_message, options
        )
        logger.info("forwarding %s to NATS Streaming (consumer %s)", self.subject, plan.name)

    async def _on_message(self, message: TransportMessage) -> None:
        if self.stopping:
            with contextlib.suppress(TransportError):
                await message.nak()
            return
        self.idle.clear()
        try:
            await self._forward(message)
        finally:
            self.idle.set()

    async def _forward(self, message: TransportMessage) -> None:
        if origin_sequence(message.headers) is not None:
            # Copied from STAN by migrate or the bridge: it is there already.
            self._already_there(message.sequence)
            await self._ack_js(message)
            return
        digest = hashlib.sha256(message.data).hexdigest()
        intent = self._intent
        if intent is not None and message.sequence < intent.stream_sequence:
            # Forwarded before; its ack was lost.
            self._already_there(message.sequence)
            await self._ack_js(message)
            return
        # Its publish may have been stored: look before sending again.
        if (
            intent is not None
            and message.sequence == intent.stream_sequence
            and await self._on_channel(intent)
        ):
            self._already_there(message.sequence)
            await self._ack_js(message)
            return
        intent = Intent(message.sequence, digest, self.floors.floor(self.subject))
        while True:
            try:
                await self.ledger.write(self.subject, intent)
                break
            except TransportError as error:
                self._failed("ledger")
                logger.warning("writing the bridge's ledger: %s; trying again", error)
                if not await self._wait_retry():
                    with contextlib.suppress(TransportError):
                        await message.nak()
                    return
        self._intent = intent
        try:
            await self._publish_to_stan(message.data)
        except TransportError as error:
            # Stored or not: the redelivery looks first.
            self._failed("publish")
            logger.warning(
                "forwarding %s #%d to NATS Streaming: %s; it comes back and is checked",
                self.subject,
                message.sequence,
                error,
            )
            with contextlib.suppress(TransportError):
                await message.nak(RETRY_DELAY)
            return
        # The copy is after the floor: the next publish's floor is at least one later.
        self.floors.raise_to(self.subject, intent.floor + 1)
        self._forwarded(message.sequence, message.timestamp.timestamp())
        await self._ack_js(message)

    async def _ack_js(self, message: TransportMessage) -> None:
        try:
            await message.ack()
        except TransportError as error:
            # It comes back after ack wait, and is then found forwarded already.
            self._failed("ack")
            logger.warning("acknowledging %s #%d: %s", message.subject, message.sequence, error)

    async def _publish_to_stan(self, data: bytes) -> None:
        """One publish, no resend: a lost outcome is settled by ``_on_channel``."""
        bridge = self.bridge
        assert bridge.stan is not None
        client = bridge.stan.client
        client.check_usable()
        if self._encoder is None:
            self._encoder = stan_protocol.PubMsgEncoder(
                client_id=client.client_id, subject=self.subject, conn_id=client.conn_id
            )
        guid = os.urandom(12).hex()
        subject = stan_protocol.publish_subject(client.subjects.pub_prefix, self.subject)
        what = f"publish to {self.subject!r}"
        try:
            reply = await client.nats.request(
                subject, self._encoder.encode(guid, data), timeout=client.options.publish_timeout
            )
        except Exception as error:
            failure = classify_nats_error(error, Operation.PUBLISH, what)
            if failure is None:
                raise
            if failure.transient:
                raise PublishTimeout(f"{what}: {failure.reason}") from error
            raise failure.error from error
        _, refusal = stan_protocol.decode_pub_ack_fields(reply.data)
        if refusal:
            raise PublishError(f"the server refused the {what}: {refusal}")

    async def _on_channel(self, intent: Intent) -> bool:
        """Whether the channel holds a message with the intent's content after its floor."""
        bridge = self.bridge
        assert bridge.stan is not None
        await self.floors.refresh()
        last = self.floors.floor(self.subject)
        if last <= intent.floor:
            return False
        records = read_channel(bridge.stan.client, self.subject, first=intent.floor + 1, last=last)
        async with contextlib.aclosing(records):
            async for record in records:
                if hashlib.sha256(record.data).hexdigest() == intent.sha256:
                    logger.info(
                        "%s stream #%d is on the channel already (STAN #%d)",
                        self.subject,
                        intent.stream_sequence,
                        record.sequence,
                    )
                    return True
        return False

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(TransportError):
                await subscription.close()
