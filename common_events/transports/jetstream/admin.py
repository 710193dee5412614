"""Administration of the event stream and its consumers: the I/O side of the rules in
``streams.py`` and ``consumers.py`` (nats.py keeps this apart too, in ``js/manager.py``).

Every request goes through ``StreamAdmin._request``: a permission violation of the server
interrupts it at once (``permissions.py``), and nats-py's errors arrive as ours through
the one table of ``nats_connection``; the JetStream API's refusals are read by their
error code (``JetStreamApiError.err_code``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.js import JetStreamManager, api

from common_events.errors import (
    ConfigurationError,
    ConnectError,
    PermissionDenied,
    StreamConflict,
    SubscribeError,
    TransportClosed,
    TransportError,
)
from common_events.transports.jetstream.consumers import ConsumerPlan
from common_events.transports.jetstream.options import JetStreamOptions
from common_events.transports.jetstream.parking import (
    ConsumerState,
    parse_parked,
    window,
    with_parked,
)
from common_events.transports.jetstream.permissions import PermissionWatch
from common_events.transports.jetstream.streams import (
    ExistingStream,
    StreamSpec,
    stream_differences,
    subject_matches,
)
from common_events.transports.nats_connection import (
    JetStreamApiError,
    NatsConnection,
    NatsFailure,
    Operation,
    classify_nats_error,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# JetStream API error codes (nats-server's errors.json).
_JS_NOT_ENABLED_FOR_ACCOUNT = 10039
_JS_NOT_ENABLED = 10076
_STREAM_NAME_IN_USE = 10058
_SUBJECTS_OVERLAP = 10065
_INSUFFICIENT_RESOURCES = 10023
_NO_SUITABLE_PEERS = 10005


class StreamAdmin:
    """Makes sure the stream suits us, and creates, updates and removes consumers."""

    def __init__(
        self,
        connection: NatsConnection,
        options: JetStreamOptions,
        watch: PermissionWatch,
        *,
        subjects: tuple[str, ...],
        closing: Callable[[], bool],
    ) -> None:
        self._connection = connection
        self._jsm: JetStreamManager = connection.client.jsm(timeout=options.request_timeout)
        self._options = options
        self._watch = watch
        self._wanted = subjects
        self._closing = closing
        self._stored: tuple[str, ...] = subjects

    @property
    def stream(self) -> str:
        return self._options.stream

    @property
    def stored_subjects(self) -> tuple[str, ...]:
        """The subjects (patterns) the stream stores, as far as this connection knows."""
        return self._stored

    def stores(self, subject: str) -> bool:
        return any(subject_matches(pattern, subject) for pattern in self._stored)

    # -- requests ------------------------------------------------------------------------

    async def _request(self, call: Awaitable[T], what: str) -> T:
        """One JetStream API request; its failures as our errors, worded for ``what``."""
        try:
            return await self._watch.run("publish", "$JS.API.", call, prefix=True)
        except PermissionDenied as error:
            raise PermissionDenied(
                f"{what}: the user may not use the JetStream API ({error})"
            ) from None
        except Exception as error:
            failure = classify_nats_error(error, Operation.REQUEST, what, closing=self._closing())
            if failure is None or failure.error is error:
                raise
            raise self._explain(failure, what) from error

    def _explain(self, failure: NatsFailure, what: str) -> Exception:
        error = failure.error
        if isinstance(error, JetStreamApiError):
            if error.status == 503:
                if error.err_code in (_JS_NOT_ENABLED_FOR_ACCOUNT, _JS_NOT_ENABLED, None):
                    return ConnectError(
                        f"{what}: JetStream is not enabled on this server or account "
                        "(start nats-server with -js, or enable JetStream for the account)"
                    )
                return TransportError(f"{what}: JetStream is unavailable: {error.description}")
            return error
        if failure.transient:
            return TransportError(
                f"{what}: JetStream did not answer within "
                f"{self._options.request_timeout:g}s ({failure.reason}); is JetStream "
                "enabled and does the cluster have a meta leader?"
            )
        return error

    # -- the stream ----------------------------------------------------------------------

    async def ensure_stream(self) -> None:
        """Create the stream if it is missing, else check that it can serve as it is.

        Without subjects (a transport connected directly, not through the core) an
        existing stream is used as it is, and a missing one is not created.
        """
        options = self._options
        spec = StreamSpec(
            name=options.stream,
            subjects=self._wanted,
            replicas=options.replicas,
            duplicate_window=options.duplicate_window,
        )
        info = await self._stream_info(spec.name)
        if info is None:
            if not spec.subjects:
                raise ConfigurationError(
                    f"stream {spec.name} does not exist and no subjects were given to "
                    "create it: connect with common_events.connect(), which passes every "
                    "event subject, or pass subjects=(...) to the transport's connect()"
                )
            info = await self._create_stream(spec)
            if info is None:
                return
        existing = _existing_stream(info)
        problems = stream_differences(existing, spec)
        if problems:
            raise StreamConflict(
                f"stream {spec.name} exists but cannot be used as it is: "
                + "; ".join(problems)
                + ". Nothing was changed; fix the stream or configure another stream name."
            )
        self._stored = tuple(dict.fromkeys((*existing.subjects, *spec.subjects)))

    async def _stream_info(self, name: str) -> api.StreamInfo | None:
        try:
            info: api.StreamInfo = await self._request(
                self._jsm.stream_info(name), f"reading stream {name}"
            )
        except JetStreamApiError as error:
            if error.not_found:
                return None
            raise ConnectError(str(error)) from None
        except TransportError as error:
            if isinstance(error, ConnectError):
                raise
            raise ConnectError(str(error)) from None
        return info

    async def _create_stream(self, spec: StreamSpec) -> api.StreamInfo | None:
        config = api.StreamConfig(
            name=spec.name,
            subjects=list(spec.subjects),
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            num_replicas=spec.replicas,
            duplicate_window=spec.duplicate_window or 0,
        )
        try:
            info: api.StreamInfo = await self._request(
                self._jsm.add_stream(config), f"creating stream {spec.name}"
            )
        except JetStreamApiError as error:
            if error.err_code == _STREAM_NAME_IN_USE:
                # Another service created it a moment ago; check it like any other.
                return await self._stream_info(spec.name)
            if error.err_code == _SUBJECTS_OVERLAP:
                owner = await self._owner_of(spec.subjects)
                raise StreamConflict(
                    f"cannot create stream {spec.name}: its subjects are already stored by "
                    f"{owner or 'another stream'}. Nothing was changed; use that stream "
                    "(stream=...) or remove the overlap."
                ) from None
            if error.err_code in (_INSUFFICIENT_RESOURCES, _NO_SUITABLE_PEERS):
                raise ConnectError(
                    f"cannot create stream {spec.name} with {spec.replicas} replica(s): "
                    f"{error.description}"
                ) from None
            raise ConnectError(f"cannot create stream {spec.name}: {error.description}") from None
        except TransportError as error:
            if isinstance(error, ConnectError):
                raise
            raise ConnectError(str(error)) from None
        logger.info(
            "created stream %s (file storage, %d replica(s), %d subjects)",
            spec.name,
            spec.replicas,
            len(spec.subjects),
        )
        return info

    async def _owner_of(self, subjects: tuple[str, ...]) -> str | None:
        for subject in subjects:
            name = await self.stream_storing(subject)
            if name:
                return f"stream {name}"
        return None

    async def stream_storing(self, subject: str) -> str | None:
        """The stream that stores ``subject``; ``None`` if none does or nobody can say."""
        # Best effort: only ever used to word an error better.
        with contextlib.suppress(TransportError):
            name = await self._request(
                self._jsm.find_stream_name_by_subject(subject), f"finding the stream of {subject!r}"
            )
            return str(name) or None
        return None

    # -- consumers -----------------------------------------------------------------------

    async def bind_consumer(self, plan: ConsumerPlan) -> frozenset[int]:
        """Create the consumer, or update the settings of an existing one that may change.

        A durable keeps its position: an existing consumer keeps its deliver policy even
        when this subscription asks for another, as a STAN durable would. It also keeps
        its parked messages (``parking.py``), which widen ``max_ack_pending``; they are
        returned.
        """
        what = f"subscribing to {plan.filter_subject!r}"
        existing: api.ConsumerInfo | None = None
        try:
            existing = await self._request(self._jsm.consumer_info(self.stream, plan.name), what)
        except JetStreamApiError as error:
            if not error.not_found:
                raise SubscribeError(f"{what}: {error.description}") from None
        except PermissionDenied as error:
            raise SubscribeError(str(error)) from None
        deliver_policy = api.DeliverPolicy.ALL if plan.deliver_all else api.DeliverPolicy.NEW
        start_sequence = start_time = None
        metadata = existing.config.metadata if existing is not None else None
        parked = parse_parked(metadata)
        if existing is not None and existing.config.deliver_policy is not None:
            deliver_policy = existing.config.deliver_policy
            # A consumer made at a position (common-events migrate) keeps it on update.
            start_sequence = existing.config.opt_start_seq
            start_time = existing.config.opt_start_time
        config = api.ConsumerConfig(
            name=plan.name,
            durable_name=plan.name if plan.durable else None,
            deliver_policy=deliver_policy,
            opt_start_seq=start_sequence,
            opt_start_time=start_time,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=plan.ack_wait,
            max_deliver=plan.max_deliver if plan.max_deliver is not None else -1,
            max_ack_pending=window(plan.max_ack_pending, len(parked)),
            filter_subject=plan.filter_subject,
            deliver_subject=plan.deliver_subject,
            deliver_group=plan.deliver_group,
            inactive_threshold=plan.inactive_threshold,
            metadata=metadata or None,
        )
        if existing is not None and _same_consumer(existing.config, config):
            return parked
        try:
            await self._request(self._jsm.add_consumer(self.stream, config), what)
        except PermissionDenied as error:
            raise SubscribeError(str(error)) from None
        except JetStreamApiError as error:
            raise SubscribeError(
                f"{what}: JetStream refused consumer {plan.name}: {error.description}"
            ) from None
        return parked

    async def read_parked(self, name: str) -> ConsumerState:
        """The consumer's parked messages, window and ack floor (``parking.py``)."""
        info = await self._consumer_info(name)
        floor = info.ack_floor.stream_seq if info.ack_floor is not None else None
        return ConsumerState(
            parked=parse_parked(info.config.metadata),
            max_ack_pending=int(info.config.max_ack_pending or 0),
            ack_floor=int(floor or 0),
        )

    async def write_parked(self, name: str, parked: frozenset[int], max_ack_pending: int) -> None:
        """Write the parked set and the window, keeping the rest of the consumer as it is."""
        current = (await self._consumer_info(name)).config
        config = dataclasses.replace(
            current,
            metadata=with_parked(current.metadata, parked) or None,
            max_ack_pending=max_ack_pending,
        )
        await self._request(
            self._jsm.add_consumer(self.stream, config), f"updating consumer {name}"
        )

    async def _consumer_info(self, name: str) -> api.ConsumerInfo:
        info: api.ConsumerInfo = await self._request(
            self._jsm.consumer_info(self.stream, name), f"reading consumer {name}"
        )
        return info

    async def delete_consumer(self, name: str) -> None:
        if self._connection.client.is_closed:
            raise TransportClosed("cannot remove the durable: the transport is closed")
        try:
            await self._request(
                self._jsm.delete_consumer(self.stream, name), f"removing consumer {name}"
            )
        except JetStreamApiError as error:
            if not error.not_found:
                raise SubscribeError(
                    f"could not remove consumer {name}: {error.description}"
                ) from None

    async def delete_consumer_if_unused(self, plan: ConsumerPlan) -> None:
        """A non-durable group's consumer goes when its last member leaves, as in STAN.

        Called after the subscription's UNSUB has made its round trip.
        """
        if plan.durable or self._connection.client.is_closed:
            return
        try:
            info = await self._request(
                self._jsm.consumer_info(self.stream, plan.name), f"reading consumer {plan.name}"
            )
            if not info.push_bound:
                await self._request(
                    self._jsm.delete_consumer(self.stream, plan.name),
                    f"removing consumer {plan.name}",
                )
        except TransportError as error:
            # Best effort: the server removes it after the inactive threshold anyway.
            logger.debug("consumer %s left to expire: %s", plan.name, error)


def _existing_stream(info: api.StreamInfo) -> ExistingStream:
    config = info.config

    def value(item: object, default: str) -> str:
        if item is None:
            return default
        return str(getattr(item, "value", item))

    return ExistingStream(
        name=str(config.name),
        subjects=tuple(config.subjects or ()),
        storage=value(config.storage, "file"),
        retention=value(config.retention, "limits"),
        replicas=int(config.num_replicas or 1),
        duplicate_window=float(config.duplicate_window or 0),
        sealed=bool(config.sealed),
        is_mirror=config.mirror is not None,
    )


def _same_consumer(current: api.ConsumerConfig, wanted: api.ConsumerConfig) -> bool:
    def close_enough(a: float | None, b: float | None) -> bool:
        return abs((a or 0.0) - (b or 0.0)) < 1e-6

    return (
        close_enough(current.ack_wait, wanted.ack_wait)
        and (current.max_deliver or -1) == (wanted.max_deliver or -1)
        and current.max_ack_pending == wanted.max_ack_pending
        and current.deliver_subject == wanted.deliver_subject
        and (current.deliver_group or None) == (wanted.deliver_group or None)
        and current.filter_subject == wanted.filter_subject
    )
