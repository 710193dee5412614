"""What ``migrate`` and ``bridge`` take when not told otherwise: the event subjects, and
the monitoring endpoint of the STAN server."""

from __future__ import annotations

import logging

from common_events.core.codec import dead_letter_subject
from common_events.events.subjects import Subjects
from common_events.transports import stan as stan_transport
from common_events.transports.nats_connection import parse_servers

logger = logging.getLogger(__name__)

MONITOR_PORT = 8222


def event_subjects(*, dead_letters: bool = False) -> tuple[str, ...]:
    subjects = tuple(subject.value for subject in Subjects)
    if dead_letters:
        subjects += tuple(dead_letter_subject(subject) for subject in subjects)
    return subjects


def default_monitor_url(stan_url: str) -> str:
    """Port 8222 of the (first) STAN host."""
    servers = parse_servers(stan_url, schemes=stan_transport.transport.SCHEMES)
    host = servers.servers[0].split("://", 1)[-1].rsplit(":", 1)[0] or "127.0.0.1"
    return f"http://{host}:{MONITOR_PORT}"
