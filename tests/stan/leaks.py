"""Looking for a secret where it must never be.

``assert_secret_nowhere`` formats every captured log record (message, arguments,
traceback) and every object or exception handed to it (``str``, ``repr``, the whole
chained traceback) and fails on the first that contains the secret.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from collections.abc import Iterable

__all__ = [
    "assert_secret_nowhere",
    "closed_port",
    "new_secret",
    "record_texts",
    "texts_of",
]

_FORMATTER = logging.Formatter("%(name)s %(levelname)s %(message)s")


def new_secret(kind: str = "pw") -> str:
    """A secret no source line contains, so a traceback cannot show it by accident."""
    return f"{kind}-{os.urandom(6).hex()}"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def texts_of(value: object) -> list[str]:
    """Everything a person could read of ``value``."""
    texts = [str(value), repr(value)]
    if isinstance(value, BaseException):
        texts.append("".join(traceback.format_exception(value)))
    return texts


def record_texts(record: logging.LogRecord) -> list[str]:
    texts = [_FORMATTER.format(record), record.getMessage(), repr(record.args)]
    if record.exc_info and record.exc_info[1] is not None:
        texts.extend(texts_of(record.exc_info[1]))
    return texts


def assert_secret_nowhere(
    secret: str, records: Iterable[logging.LogRecord], *values: object
) -> None:
    for record in records:
        for text in record_texts(record):
            assert secret not in text, f"secret in a log record of {record.name}: {text}"
    for value in values:
        for text in texts_of(value):
            assert secret not in text, f"secret in {type(value).__name__}: {text}"
