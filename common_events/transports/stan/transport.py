"""``StanTransport``: the ``Transport`` interface over one NATS Streaming session."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence

from common_events.transports.base import (
    ConnectionLostCallback,
    MessageHandler,
    PublishAck,
    SubscriptionOptions,
    TransportSubscription,
)
from common_events.transports.stan.client import StanClient, StanSubscription
from common_events.transports.stan.protocol import StartPosition

logger = logging.getLogger("common_events.transports.stan")


def ack_wait_seconds(ack_wait: float) -> int:
    """The server counts ack wait in whole seconds, at least one; never wait less than
    asked, so round up."""
    return max(1, math.ceil(ack_wait))


class StanTransport:
    """Moves bytes over NATS Streaming. Made by ``common_events.transports.stan.connect``."""

    def __init__(self, client: StanClient, url: str) -> None:
        self._client = client
        self._url = url
        self._subscriptions: list[StanSubscription] = []
        self._headers_warned = False

    @property
    def url(self) -> str:
        return self._url

    @property
    def client(self) -> StanClient:
        """The streaming session underneath, for what the interface does not cover."""
        return self._client

    @property
    def client_id(self) -> str:
        return self._client.client_id

    @property
    def cluster_id(self) -> str:
        return self._client.cluster_id

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None
    ) -> PublishAck:
        if headers and not self._headers_warned:
            # NATS Streaming has no headers; by design metadata never goes into the
            # payload, so it is left out (said once, not on every publish).
            self._headers_warned = True
            logger.debug("NATS Streaming has no headers; %d header(s) not sent", len(headers))
        guid = await (await self._client.publish_async(subject, data))
        return PublishAck(subject=subject, guid=guid)

    async def publish_many(
        self, subject: str, payloads: Sequence[bytes]
    ) -> list[PublishAck | Exception]:
        # Send each as soon as the client has room (max_pub_acks_inflight) and collect
        # the PubAck futures: no task per publish, as Node's callback style.
        pending: list[asyncio.Future[str] | Exception] = []
        for data in payloads:
            try:
                pending.append(await self._client.publish_async(subject, data))
            except Exception as error:
                pending.append(error)
        futures = [item for item in pending if not isinstance(item, Exception)]
        await asyncio.gather(*futures, return_exceptions=True)
        results: list[PublishAck | Exception] = []
        for item in pending:
            if isinstance(item, Exception):
                results.append(item)
            elif (failure := item.exception()) is not None:
                results.append(failure if isinstance(failure, Exception) else Exception(failure))
            else:
                results.append(PublishAck(subject=subject, guid=item.result()))
        return results

    async def subscribe(
        self, subject: str, handler: MessageHandler, options: SubscriptionOptions
    ) -> TransportSubscription:
        subscription = await self._client.subscribe(
            subject,
            handler,
            queue_group=options.queue_group,
            durable_name=options.durable_name,
            start_position=(
                StartPosition.FIRST if options.deliver_all_available else StartPosition.NEW_ONLY
            ),
            max_in_flight=max(1, options.max_in_flight),
            ack_wait_seconds=ack_wait_seconds(options.ack_wait),
            manual_acks=True,
        )
        self._subscriptions = [s for s in self._subscriptions if s.active]
        self._subscriptions.append(subscription)
        return subscription

    def add_connection_lost_callback(self, callback: ConnectionLostCallback) -> None:
        self._client.add_connection_lost_callback(callback)

    async def close(self) -> None:
        """Close subscriptions (durables survive), send CloseRequest, close NATS."""
        self._subscriptions.clear()
        await self._client.close()

    def __repr__(self) -> str:
        return f"<StanTransport {self._url} client_id={self.client_id!r}>"
