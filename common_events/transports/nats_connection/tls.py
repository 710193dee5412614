"""A nats-py client that never speaks to a server in the clear when TLS was asked for."""

from __future__ import annotations

from typing import Any

import nats.errors
from nats.aio.client import Client


class TlsOnlyClient(Client):
    """A nats-py client that refuses a server whose greeting does not require TLS.

    nats-py upgrades to TLS only when the server's INFO asks for it, whatever the URL's
    scheme or the ``tls`` option: a ``tls://`` URL pointed at a plain server would send
    the credentials in the clear. The greeting is checked here, before the CONNECT that
    carries them is written. ``_process_info`` is nats-py's own step between the two
    (2.10 through 2.16 at least; the dependency matrix runs on both ends).
    """

    async def _process_info(
        self, info: dict[str, Any], initial_connection: bool = False
    ) -> None:
        if initial_connection and not info.get("tls_required", False):
            raise nats.errors.SecureConnWantedError()
        await super()._process_info(info, initial_connection=initial_connection)
