"""Stream, consumer and URL rules of the JetStream transport: plain values, no server."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common_events.core.codec import stream_subjects
from common_events.errors import ConfigurationError
from common_events.events import Subjects
from common_events.transports.base import SubscriptionOptions
from common_events.transports.jetstream import (
    SCHEMES,
    ConsumerPlan,
    ExistingStream,
    JetStreamOptions,
    StreamSpec,
    consumer_name,
    parse_servers,
    plan_consumer,
    stream_differences,
    subject_matches,
)
from common_events.transports.nats_connection import parse_servers as parse_server_list

# What JetStream accepts in a consumer name, narrowed to what is safe as a directory name.
CONSUMER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def spec(**changes: object) -> StreamSpec:
    values: dict[str, object] = {"name": "EVENTS", "subjects": stream_subjects()}
    values.update(changes)
    return StreamSpec(**values)  # type: ignore[arg-type]


def existing(**changes: object) -> ExistingStream:
    values: dict[str, object] = {
        "name": "EVENTS",
        "subjects": stream_subjects(),
        "storage": "file",
        "retention": "limits",
        "replicas": 1,
        "duplicate_window": 120.0,
    }
    values.update(changes)
    return ExistingStream(**values)  # type: ignore[arg-type]


def test_the_core_hands_the_stream_every_subject_and_its_dead_letter_subject() -> None:
    subjects = stream_subjects()
    for subject in Subjects:
        assert subject.value in subjects
        assert f"dead-letter:{subject.value}" in subjects
    assert len(subjects) == 2 * len(Subjects)


def test_nats_wildcards_are_whole_tokens_only() -> None:
    assert subject_matches(">", "ticket:created")
    assert subject_matches("*", "ticket:created")
    assert subject_matches("ticket:created", "ticket:created")
    # ":" separates nothing for NATS: "ticket:*" is a literal subject, not a pattern.
    assert not subject_matches("ticket:*", "ticket:created")
    assert subject_matches("a.*.c", "a.b.c")
    assert not subject_matches("a.*", "a.b.c")
    assert subject_matches("a.>", "a.b.c")
    assert not subject_matches("a.>", "a")


def test_a_matching_stream_has_no_differences() -> None:
    assert stream_differences(existing(), spec()) == []
    assert stream_differences(existing(subjects=(">",)), spec()) == []


def test_each_difference_is_named() -> None:
    problems = stream_differences(
        existing(
            subjects=("ticket:created",),
            storage="memory",
            retention="workqueue",
            replicas=3,
            duplicate_window=60.0,
        ),
        spec(duplicate_window=120.0),
    )
    text = " | ".join(problems)
    assert "payment:created" in text and "dead-letter:ticket:created" in text
    assert "'memory'" in text and "file" in text
    assert "'workqueue'" in text
    assert "3 replica(s), 1 configured" in text
    assert "60s" in text and "120s" in text
    assert len(problems) == 5


def test_duplicate_window_is_only_checked_when_configured() -> None:
    assert stream_differences(existing(duplicate_window=5.0), spec()) == []


@given(durable=st.text(min_size=1, max_size=300), subject=st.sampled_from(stream_subjects()))
def test_consumer_names_are_valid_and_deterministic(durable: str, subject: str) -> None:
    name = consumer_name(durable, subject)
    assert CONSUMER_NAME.match(name), name
    assert name == consumer_name(durable, subject)


def test_consumer_names_keep_apart_what_sanitising_would_merge() -> None:
    assert consumer_name("a.b", "ticket:created") != consumer_name("a_b", "ticket:created")
    assert consumer_name("orders", "ticket:created") != consumer_name("orders", "ticket:updated")
    assert consumer_name("orders-service", "ticket:created").startswith(
        "orders-service__ticket_created_"
    )


def plan(**options: object) -> ConsumerPlan:
    return plan_consumer(
        "ticket:created",
        SubscriptionOptions(**options),  # type: ignore[arg-type]
        stream="EVENTS",
        deliver_prefix="_INBOX.ce",
        ephemeral_inactive_threshold=30.0,
    )


def test_a_durable_queue_group_shares_one_consumer_across_services() -> None:
    first = plan(durable_name="orders-service", queue_group="orders-service", max_in_flight=7)
    second = plan(durable_name="orders-service", queue_group="orders-service", max_in_flight=7)
    assert first == second
    assert first.durable and first.deliver_group == "orders-service"
    assert first.max_ack_pending == 7
    assert first.inactive_threshold is None


def test_non_durable_subscriptions_expire() -> None:
    group = plan(queue_group="g")
    alone = plan()
    assert not group.durable and group.inactive_threshold == 30.0
    assert alone.deliver_group is None
    assert plan().name != alone.name


def servers(url: str) -> tuple[str, ...]:
    return parse_server_list(url, schemes=SCHEMES).servers


def test_server_lists() -> None:
    assert servers("nats://127.0.0.1:4222") == ("nats://127.0.0.1:4222",)
    assert servers("nats://a:1, b:2,nats://c") == ("nats://a:1", "nats://b:2", "nats://c:4222")
    found = parse_server_list("tls://u:p@a:1", schemes=SCHEMES)
    assert found.servers == ("tls://a:1",)
    assert (found.user, found.password) == ("u", "p")
    for bad in ("", "http://a:1", "nats://a:x", "nats://:4222"):
        with pytest.raises(ConfigurationError):
            servers(bad)


def test_the_old_server_list_function_is_deprecated_and_drops_credentials() -> None:
    with pytest.warns(DeprecationWarning, match="parse_servers"):
        assert parse_servers("tls://u:p@a:1,b") == ["tls://a:1", "tls://b:4222"]


def test_unknown_or_bad_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="replica"):
        JetStreamOptions.from_kwargs({"replica": 3})
    with pytest.raises(ConfigurationError, match="replicas"):
        JetStreamOptions.from_kwargs({"replicas": 0})
    with pytest.raises(ConfigurationError, match="stream"):
        JetStreamOptions.from_kwargs({"stream": "A.B"})


def test_close_timeout_is_accepted_with_a_deprecation_warning_and_ignored() -> None:
    with pytest.warns(DeprecationWarning, match="close_timeout"):
        options = JetStreamOptions.from_kwargs({"close_timeout": 3.0})
    assert options == JetStreamOptions()


def test_the_connection_options_are_the_shared_ones_with_this_transports_defaults() -> None:
    options = JetStreamOptions.from_kwargs({"user": "u", "password": "pw-secret"})
    assert (options.connect_timeout, options.reconnect_time_wait) == (5.0, 0.5)
    assert options.max_reconnect_attempts == 120
    assert "pw-secret" not in repr(options)
    with pytest.raises(ConfigurationError, match="skip_subject_validation"):
        JetStreamOptions.from_kwargs({"skip_subject_validation": True})
    with pytest.raises(ConfigurationError, match="token"):
        JetStreamOptions.from_kwargs({"token": "t", "user": "u"})
