from __future__ import annotations

# Real servers for the tests that need them (common_events.testing.servers underneath);
# a missing binary skips, or fails under COMMON_EVENTS_REQUIRE_SERVERS=1.
pytest_plugins = [
    "tests.fixtures.stan",
    "tests.fixtures.jetstream",
]
