"""``Bridge``: forward live between NATS Streaming and JetStream while services move.

Each subject is bridged one way:

- **to JetStream** (its publishers still speak STAN): a durable STAN subscription with
  manual acks, one message in flight. Each message is published to the stream with the
  same origin headers and ``Nats-Msg-Id`` as ``migrate`` gives it, and acknowledged on
  STAN only once the stream confirmed it. A message whose STAN sequence is not above
  the last copy in the stream (read from the stream at start, then kept) is
  acknowledged without publishing: so a redelivery after a crash or a restart of either
  server is never stored twice, whatever the duplicate window, and nothing is skipped.
- **to NATS Streaming** (its publishers moved to JetStream, some listeners did not): a
  durable JetStream consumer (one message unacknowledged at a time) whose messages are
  published to the channel, and acknowledged on JetStream once STAN confirmed them.
  Messages that came from STAN (with an origin header) are not sent back. STAN has no
  de-duplication, so before each publish an *intent* (the message's stream sequence,
  its SHA-256 and the channel's last sequence before it) is stored in a small ledger
  stream; when the publish's outcome is unknown (a crash, a timeout, a restart), the
  channel is read from that sequence on, and the message is sent again only if it is
  not there. (A message byte for byte equal to it, published on the channel by someone
  else in that short span, would be taken for it: bridge a subject one way only.)

A subject is never bridged both ways: STAN messages carry no headers, so a message the
bridge wrote to a channel could not be told apart from one a STAN publisher wrote, and
it would come back to JetStream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from nats.js import api

from common_events.core.codec import stream_subjects
from common_events.errors import (
    ConfigurationError,
    ConnectionLost,
    PublishError,
    PublishTimeout,
    TransportError,
)
from common_events.migration.jetstream_stream import EventStream
from common_events.migration.ledger import SubjectLedger
from common_events.migration.origin import Origin, origin_sequence
from common_events.migration.positions import BRIDGE_DURABLE_PREFIX
from common_events.migration.stan_channels import read_channel
from common_events.transports import jetstream as jetstream_transport
from common_events.transports import stan as stan_transport
from common_events.transports.base import SubscriptionOptions, TransportMessage
from common_events.transports.jetstream import (
    JetStreamTransport,
    plan_consumer,
)
from common_events.transports.nats_connection import (
    JetStreamApiError,
    Operation,
    classify_nats_error,
    map_nats_errors,
    redact_url,
)
from common_events.transports.stan import StanMessage, StanSubscription, StanTransport
from common_events.transports.stan import protocol as stan_protocol
from common_events.transports.stan.monitor import MonitorError, read_monitor

logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = BRIDGE_DURABLE_PREFIX
DEFAULT_DURABLE = BRIDGE_DURABLE_PREFIX
REVERSE_DURABLE = f"{BRIDGE_DURABLE_PREFIX}-to-stan"
LEDGER_STREAM = "COMMON_EVENTS_BRIDGE"
LEDGER_PREFIX = "common-events-bridge"
RETRY_DELAY = 0.5
FLOOR_REFRESH = 5.0
"""Seconds between two reads of the channels' last sequences (reverse direction)."""


@dataclass(frozen=True, slots=True)
class BridgeOptions:
    stan_url: str
    cluster_id: str
    jetstream_url: str
    to_jetstream: tuple[str, ...] = ()
    to_stan: tuple[str, ...] = ()
    client_id: str = DEFAULT_CLIENT_ID
    """The STAN client id: the same on every start, so the durables resume."""
    durable_name: str = DEFAULT_DURABLE
    stream: str = "EVENTS"
    ack_wait: float = 30.0
    drain_timeout: float = 10.0
    monitor_url: str | None = None
    """Reverse direction: where the channels' last sequences are read (default: port
    8222 of the STAN host)."""
    stan_options: dict[str, Any] = field(default_factory=dict)
    jetstream_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        both = sorted(set(self.to_jetstream) & set(self.to_stan))
        if both:
            raise ConfigurationError(
                f"{', '.join(both)}: bridged both ways. A subject is bridged one way: to "
                "JetStream while its publishers are on NATS Streaming, to NATS Streaming "
                "once they moved to JetStream (a message written to a channel by the "
                "bridge cannot be told apart from a STAN publisher's)"
            )
        if not self.to_jetstream and not self.to_stan:
            raise ConfigurationError("nothing to bridge: give subjects for either direction")
        if not self.durable_name.startswith(BRIDGE_DURABLE_PREFIX):
            raise ConfigurationError(
                f"the bridge's durable name must start with {BRIDGE_DURABLE_PREFIX!r} "
                "(migrate tells the bridge's durables from the services' by it)"
            )


@dataclass
class DirectionStats:
    forwarded: int = 0
    skipped: int = 0
    """Already on the other side (a redelivery, or a copy from the other side)."""


class Bridge:
    """Runs both directions: ``await bridge.start()``, then ``await bridge.stop()``.

    ``run(stop)`` does both and drains on ``stop``; a connection lost for good (the STAN
    server forgot the client, or NATS is gone) ends it with ``ConnectionLost`` so its
    supervisor restarts it.
    """

    def __init__(self, options: BridgeOptions) -> None:
        options.check()
        self.options = options
        self.stan: StanTransport | None = None
        self.jetstream: JetStreamTransport | None = None
        self._stream: EventStream | None = None
        self._forward: list[_ForwardChannel] = []
        self._reverse: list[_ReverseChannel] = []
        self._lost: asyncio.Future[ConnectionLost] | None = None
        self.started = False
        self.draining = False

    @property
    def stats(self) -> dict[str, DirectionStats]:
        result = {f"{c.subject} -> JetStream": c.stats for c in self._forward}
        result.update({f"{c.subject} -> NATS Streaming": c.stats for c in self._reverse})
        return result

    def describe(self) -> str:
        parts = [f"{c.subject} -> JetStream" for c in self._forward]
        parts += [f"{c.subject} -> NATS Streaming" for c in self._reverse]
        return ", ".join(parts)

    async def start(self) -> None:
        options = self.options
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        stan_options = {"connect_timeout": 5.0, **options.stan_options}
        self.stan = await stan_transport.connect(
            options.stan_url,
            cluster_id=options.cluster_id,
            client_id=options.client_id,
            **stan_options,
        )
        self.stan.add_connection_lost_callback(self._on_lost)
        self.jetstream = await jetstream_transport.connect(
            options.jetstream_url,
            subjects=stream_subjects(),
            stream=options.stream,
            **options.jetstream_options,
        )
        self.jetstream.add_connection_lost_callback(self._on_lost)
        self._stream = EventStream(self.jetstream)
        for subject in options.to_jetstream:
            forward = _ForwardChannel(self, subject)
            await forward.start()
            self._forward.append(forward)
        if options.to_stan:
            ledger = await _Ledger.open(self.jetstream)
            floors = _Floors(options.monitor_url or _monitor_of(options.stan_url))
            await floors.refresh(required=True)
            floors.start()
            for subject in options.to_stan:
                reverse = _ReverseChannel(self, subject, ledger, floors)
                await reverse.start()
                self._reverse.append(reverse)
        self.started = True
        logger.info(
            "bridge running between %s and %s: %s",
            redact_url(options.stan_url),
            redact_url(options.jetstream_url),
            self.describe(),
        )

    def _on_lost(self, error: ConnectionLost) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(error)

    async def run(self, stop: asyncio.Event) -> None:
        """Start, forward until ``stop`` is set or a connection is lost, then drain."""
        try:
            await self.start()
            assert self._lost is not None
            stopping = asyncio.ensure_future(stop.wait())
            waiters: set[asyncio.Future[Any]] = {stopping, self._lost}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
        finally:
            await self.stop()
        if self._lost is not None and self._lost.done():
            raise self._lost.result()

    async def stop(self) -> None:
        """Take no new message, wait up to ``drain_timeout`` for the ones in hand, then
        close the subscriptions (the durables stay) and both connections."""
        self.draining = True
        channels: list[_Channel] = [*self._forward, *self._reverse]
        for channel in channels:
            channel.stopping = True
        try:
            async with asyncio.timeout(self.options.drain_timeout):
                await asyncio.gather(*(channel.idle.wait() for channel in channels))
        except TimeoutError:
            logger.warning("still forwarding after %gs; closing anyway", self.options.drain_timeout)
        for channel in channels:
            await channel.close()
        for reverse in self._reverse:
            reverse.floors.stop()
        for transport in (self.jetstream, self.stan):
            if transport is not None:
                with contextlib.suppress(TransportError):
                    await transport.close()
        logger.info("bridge stopped: %s", _stats_line(self.stats))


def _stats_line(stats: dict[str, DirectionStats]) -> str:
    return "; ".join(
        f"{name}: {s.forwarded} forwarded, {s.skipped} already there" for name, s in stats.items()
    )


def _monitor_of(stan_url: str) -> str:
    from common_events.migration.migrate import default_monitor_url

    return default_monitor_url(stan_url)


class _Channel:
    def __init__(self, bridge: Bridge, subject: str) -> None:
        self.bridge = bridge
        self.subject = subject
        self.stats = DirectionStats()
        self.stopping = False
        self.idle = asyncio.Event()
        self.idle.set()

    async def close(self) -> None:
        raise NotImplementedError

    async def _wait_retry(self) -> bool:
        """Wait before trying again; ``False`` when stopping instead."""
        if self.stopping:
            return False
        await asyncio.sleep(RETRY_DELAY)
        return not self.stopping


class _ForwardChannel(_Channel):
    """One channel forwarded to the stream."""

    def __init__(self, bridge: Bridge, subject: str) -> None:
        super().__init__(bridge, subject)
        self.last_copied = 0
        self._subscription: StanSubscription | None = None

    async def start(self) -> None:
        bridge = self.bridge
        assert bridge.stan is not None and bridge._stream is not None
        self.last_copied = await last_copied(bridge._stream, self.subject)
        self._subscription = await bridge.stan.client.subscribe(
            self.subject,
            self._on_message,
            durable_name=bridge.options.durable_name,
            # Only for a new durable: an existing one resumes where it stopped.
            start_position=stan_transport.StartPosition.SEQUENCE_START,
            start_sequence=self.last_copied + 1,
            max_in_flight=1,
            ack_wait_seconds=max(1, round(bridge.options.ack_wait)),
            manual_acks=True,
        )
        logger.info(
            "forwarding %s to JetStream after STAN #%d (the stream's last copy)",
            self.subject,
            self.last_copied,
        )

    async def _on_message(self, message: StanMessage) -> None:
        if self.stopping:
            return  # unacknowledged: it comes back to the next start
        self.idle.clear()
        try:
            await self._forward(message)
        finally:
            self.idle.set()

    async def _forward(self, message: StanMessage) -> None:
        bridge = self.bridge
        assert bridge.jetstream is not None
        if message.sequence <= self.last_copied:
            self.stats.skipped += 1
            await _ack_stan(message)
            return
        origin = Origin(
            bridge.options.cluster_id, self.subject, message.sequence, message.timestamp_ns
        )
        while True:
            try:
                await bridge.jetstream.publish(self.subject, message.data, origin.headers())
                break
            except TransportError as error:
                logger.warning(
                    "forwarding %s #%d to JetStream: %s; trying again",
                    self.subject,
                    message.sequence,
                    error,
                )
                if not await self._wait_retry():
                    return
        self.last_copied = message.sequence
        self.stats.forwarded += 1
        await _ack_stan(message)

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(TransportError):
                await subscription.close()


async def _ack_stan(message: StanMessage) -> None:
    try:
        await message.ack()
    except TransportError as error:
        # It comes back after ack wait, and is then found copied already.
        logger.warning("acknowledging %s #%d on STAN: %s", message.subject, message.sequence, error)


async def last_copied(stream: EventStream, subject: str) -> int:
    """The STAN sequence of the last copy of ``subject`` in the stream (0 if none)."""
    last = await stream.last_message(subject)
    if last is None:
        return 0
    if last.origin is not None:
        return last.origin
    # Messages published on JetStream came after the copies: find the last copy.
    ledger = SubjectLedger(subject, first=1)
    async for message in stream.scan(subject):
        ledger.add(message)
    return ledger.last_origin


# -- JetStream to NATS Streaming --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Intent:
    stream_sequence: int
    sha256: str
    floor: int
    """The channel's last sequence before the publish: the copy, if stored, is later."""


class _Ledger:
    """The last intent per subject, in a stream that keeps one message per subject."""

    def __init__(self, transport: JetStreamTransport) -> None:
        self._js = transport.client.jetstream(timeout=transport.options.request_timeout)
        self._jsm = transport.client.jsm(timeout=transport.options.request_timeout)

    @classmethod
    async def open(cls, transport: JetStreamTransport) -> _Ledger:
        ledger = cls(transport)
        config = api.StreamConfig(
            name=LEDGER_STREAM,
            subjects=[f"{LEDGER_PREFIX}.>"],
            storage=api.StorageType.FILE,
            max_msgs_per_subject=1,
        )
        with map_nats_errors(Operation.REQUEST, f"creating stream {LEDGER_STREAM}"):
            await ledger._jsm.add_stream(config)
        return ledger

    @staticmethod
    def _subject(subject: str) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in subject)
        return f"{LEDGER_PREFIX}.to-stan.{safe}"

    async def read(self, subject: str) -> _Intent | None:
        try:
            with map_nats_errors(Operation.REQUEST, "reading the bridge's ledger"):
                raw = await self._jsm.get_last_msg(LEDGER_STREAM, self._subject(subject))
        except JetStreamApiError as error:
            if error.not_found:
                return None
            raise
        document = json.loads(raw.data or b"{}")
        return _Intent(int(document["seq"]), str(document["sha256"]), int(document["floor"]))

    async def write(self, subject: str, intent: _Intent) -> None:
        document = {"seq": intent.stream_sequence, "sha256": intent.sha256, "floor": intent.floor}
        with map_nats_errors(Operation.PUBLISH, "writing the bridge's ledger"):
            await self._js.publish(self._subject(subject), json.dumps(document).encode())


class _Floors:
    """The channels' last sequences, read from the STAN monitor now and then: each value
    is a lower bound of where any later publish is stored."""

    def __init__(self, monitor_url: str) -> None:
        self.monitor_url = monitor_url
        self._last: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def floor(self, channel: str) -> int:
        return self._last.get(channel, 0)

    def raise_to(self, channel: str, sequence: int) -> None:
        self._last[channel] = max(self._last.get(channel, 0), sequence)

    async def refresh(self, *, required: bool = False) -> None:
        try:
            snapshot = await read_monitor(self.monitor_url)
        except MonitorError as error:
            if required:
                raise MonitorError(
                    f"bridging to NATS Streaming needs the server's monitoring endpoint, "
                    f"to check after an interruption what was sent: {error} "
                    "(give it with --stan-monitor)"
                ) from None
            if not self._warned:
                self._warned = True
                logger.warning(
                    "cannot read the STAN monitor (%s): until it answers again, a message "
                    "whose publish to STAN was interrupted may be sent twice",
                    error,
                )
            return
        for channel in snapshot.channels:
            self.raise_to(channel.name, channel.last_seq)

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(FLOOR_REFRESH)
                await self.refresh()

        self._task = asyncio.create_task(loop(), name="bridge-stan-floors")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


class _ReverseChannel(_Channel):
    """Messages of one subject published on JetStream, forwarded to its channel."""

    def __init__(self, bridge: Bridge, subject: str, ledger: _Ledger, floors: _Floors) -> None:
        super().__init__(bridge, subject)
        self.ledger = ledger
        self.floors = floors
        self._intent: _Intent | None = None
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
            self.stats.skipped += 1
            await _ack_js(message)
            return
        digest = hashlib.sha256(message.data).hexdigest()
        intent = self._intent
        if intent is not None and message.sequence < intent.stream_sequence:
            # Forwarded before; its ack was lost.
            self.stats.skipped += 1
            await _ack_js(message)
            return
        # Its publish may have been stored: look before sending again.
        if (
            intent is not None
            and message.sequence == intent.stream_sequence
            and await self._on_channel(intent)
        ):
            self.stats.skipped += 1
            await _ack_js(message)
            return
        intent = _Intent(message.sequence, digest, self.floors.floor(self.subject))
        while True:
            try:
                await self.ledger.write(self.subject, intent)
                break
            except TransportError as error:
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
        self.stats.forwarded += 1
        await _ack_js(message)

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

    async def _on_channel(self, intent: _Intent) -> bool:
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


async def _ack_js(message: TransportMessage) -> None:
    try:
        await message.ack()
    except TransportError as error:
        logger.warning("acknowledging %s #%d: %s", message.subject, message.sequence, error)
