"""The one stream that stores every event, and how an existing stream is checked.

Kept apart from the client: these are pure functions over plain values, so the rules
(which settings may differ) read in one place and are tested without a server.
``admin.py`` applies them. The subjects come from the core (every event subject and its
dead-letter subject); the transport knows no events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What this package needs from the stream; the rest of its settings are left alone."""

    name: str
    subjects: tuple[str, ...]
    """Every subject the stream must store; empty when none were given, which accepts an
    existing stream's subjects as they are (and creates no stream)."""
    replicas: int = 1
    duplicate_window: float | None = None
    """Seconds; ``None`` takes the server default (two minutes) and accepts any existing
    window, a number is set on creation and must match an existing stream."""


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one whole token, ``>`` the rest (one or more).

    Tokens are separated by dots only, so ``ticket:*`` is a literal, not a wildcard.
    """
    pattern_tokens = pattern.split(".")
    subject_tokens = subject.split(".")
    for index, token in enumerate(pattern_tokens):
        if token == ">":
            return len(subject_tokens) > index
        if index >= len(subject_tokens):
            return False
        if token != "*" and token != subject_tokens[index]:
            return False
    return len(pattern_tokens) == len(subject_tokens)


def uncovered_subjects(patterns: Iterable[str], subjects: Iterable[str]) -> list[str]:
    """The subjects that no pattern of the stream stores, in the given order."""
    pattern_list = list(patterns)
    return [s for s in subjects if not any(subject_matches(p, s) for p in pattern_list)]


@dataclass(frozen=True, slots=True)
class ExistingStream:
    """The settings of an existing stream that matter here, as the server reports them.

    Strings are the JSON values of the JetStream API (``file``, ``limits``...), so the
    checks do not depend on a client library's enum types.
    """

    name: str
    subjects: Sequence[str]
    storage: str
    retention: str
    replicas: int
    duplicate_window: float
    sealed: bool = False
    is_mirror: bool = False


def stream_differences(existing: ExistingStream, spec: StreamSpec) -> list[str]:
    """Everything about ``existing`` that stops it from serving as ``spec``; empty if fine.

    Each entry is a sentence for an operator: what the stream has and what is needed.
    """
    problems: list[str] = []
    missing = uncovered_subjects(existing.subjects, spec.subjects)
    if missing:
        problems.append(f"it does not store the subjects {', '.join(missing)}")
    if existing.storage != "file":
        problems.append(f"its storage is {existing.storage!r}, file storage is needed")
    if existing.retention != "limits":
        # Work-queue retention forbids several consumers on one subject and interest
        # retention drops events nobody listens to yet; both break durable listeners.
        problems.append(f"its retention is {existing.retention!r}, 'limits' is needed")
    if existing.replicas != spec.replicas:
        problems.append(f"it has {existing.replicas} replica(s), {spec.replicas} configured")
    if (
        spec.duplicate_window is not None
        and abs(existing.duplicate_window - spec.duplicate_window) > 1e-3
    ):
        problems.append(
            f"its duplicate window is {existing.duplicate_window:g}s, "
            f"{spec.duplicate_window:g}s configured"
        )
    if existing.sealed:
        problems.append("it is sealed and accepts no new messages")
    if existing.is_mirror:
        problems.append("it is a mirror and accepts no direct publishes")
    return problems
