"""Moved to ``common_events.transports.stan.monitor``; this import path keeps working."""

from common_events.transports.stan.monitor import (
    PAGE_SIZE,
    ChannelSummary,
    ClientSummary,
    MonitorError,
    MonitorSnapshot,
    ServerSummary,
    SubscriptionSummary,
    read_monitor,
    read_monitor_sync,
    render,
)

__all__ = [
    "PAGE_SIZE",
    "ChannelSummary",
    "ClientSummary",
    "MonitorError",
    "MonitorSnapshot",
    "ServerSummary",
    "SubscriptionSummary",
    "read_monitor",
    "read_monitor_sync",
    "render",
]
