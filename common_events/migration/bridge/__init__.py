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

The modules: ``options`` (what a bridge is told), ``runner`` (``Bridge``, both
directions started and stopped together), ``channel`` (what a direction's subject
holds either way), ``to_jetstream``, ``to_stan``, and the reverse direction's
``intents`` (its ledger) and ``floors`` (the channels' last sequences). ``metrics``
(``BridgeMetrics``, given to ``Bridge``) needs the ``prometheus`` extra and is imported
only by whoever uses it.
"""

from common_events.migration.bridge.channel import RETRY_DELAY, DirectionStats
from common_events.migration.bridge.floors import FLOOR_REFRESH
from common_events.migration.bridge.intents import LEDGER_PREFIX, LEDGER_STREAM
from common_events.migration.bridge.options import (
    DEFAULT_CLIENT_ID,
    DEFAULT_DURABLE,
    BridgeOptions,
)
from common_events.migration.bridge.runner import Bridge
from common_events.migration.bridge.to_jetstream import last_copied
from common_events.migration.bridge.to_stan import REVERSE_DURABLE

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_DURABLE",
    "FLOOR_REFRESH",
    "LEDGER_PREFIX",
    "LEDGER_STREAM",
    "RETRY_DELAY",
    "REVERSE_DURABLE",
    "Bridge",
    "BridgeOptions",
    "DirectionStats",
    "last_copied",
]
