"""Options renamed for one minor version: the old name still works, with a warning."""

from __future__ import annotations

import warnings


def renamed_option(
    value: float | None,
    old_value: float | None,
    *,
    name: str,
    old_name: str,
    default: float,
    stacklevel: int = 3,
) -> float:
    """``value``, or ``old_value`` given under ``old_name`` (with a ``DeprecationWarning``),
    or ``default``. ``stacklevel`` 3 points the warning at the caller of the function
    that takes the option."""
    if old_value is None:
        return default if value is None else value
    if value is not None:
        raise TypeError(f"pass {name}= only; {old_name}= is its old name")
    warnings.warn(
        f"{old_name}= is deprecated; use {name}=", DeprecationWarning, stacklevel=stacklevel
    )
    return old_value
