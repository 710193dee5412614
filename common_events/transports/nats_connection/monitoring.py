"""Reading the HTTP monitoring port of a NATS server, and printing what it says.

The JetStream monitor (``transports/jetstream/monitor.py``: ``/varz``, ``/jsz``,
``/connz``) and the NATS Streaming one (``transports/stan/monitor.py``:
``/streaming/...``) read different endpoints of different servers; what they share is
here: a GET of one endpoint as JSON with the standard library (blocking: the callers run
it in a thread), the pages of a listing, one line that says what to check when the port
does not answer as a monitoring port does, and rows rendered as a plain-text table.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common_events.errors import ConnectError

__all__ = ["PAGE_SIZE", "MonitorError", "MonitoringPort", "render_table", "yes_no"]

logger = logging.getLogger(__name__)

PAGE_SIZE = 1024
"""The servers' own largest page of a listing (connections, channels...) per request."""


class MonitorError(ConnectError):
    """The monitoring endpoint could not be read."""


@dataclass(frozen=True, slots=True)
class MonitoringPort:
    """The monitoring port of one kind of server. ``server`` names that kind in an
    error (``"a nats-server"``), ``enable`` says how its monitoring is turned on
    (``"nats-server -m PORT"``)."""

    server: str
    enable: str

    def get(self, base_url: str, path: str, timeout: float) -> Any:
        """GET ``path`` below ``base_url`` as JSON; ``MonitorError`` says what to check."""
        url = f"{base_url.rstrip('/')}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise MonitorError(
                f"{url} answered HTTP {exc.code}: is this the monitoring port of "
                f"{self.server} ({self.enable})?"
            ) from exc
        except json.JSONDecodeError as exc:
            raise MonitorError(f"{url} did not answer JSON: {exc}") from exc
        except http.client.HTTPException as exc:
            # Something that is not HTTP answered: a client port, say.
            raise MonitorError(
                f"{url} did not answer HTTP ({str(exc)[:60]!r}): is this the monitoring "
                f"port of {self.server} ({self.enable})?"
            ) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # ValueError: a URL urllib cannot use (no host, a port that is not a number).
            reason = getattr(exc, "reason", exc)
            raise MonitorError(
                f"cannot read {url}: {reason}. Is {self.server} running with monitoring "
                f"on ({self.enable})?"
            ) from exc

    def get_pages(
        self, base_url: str, path: str, key: str, timeout: float
    ) -> tuple[dict[str, Any], list[Any]]:
        """The first page of a listing (its totals) and the ``key`` items of every page."""
        items: list[Any] = []
        first: dict[str, Any] | None = None
        separator = "&" if "?" in path else "?"
        while True:
            page = self.get(
                base_url, f"{path}{separator}offset={len(items)}&limit={PAGE_SIZE}", timeout
            )
            first = first if first is not None else page
            batch = page.get(key) or []
            items.extend(batch)
            if len(batch) < PAGE_SIZE or len(items) >= int(page.get("total", 0)):
                return first, items


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """``rows`` under ``headers`` in columns two spaces apart; the columns whose index
    is in ``numeric`` aligned right."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if index in numeric else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"
