"""How long the relay waits before trying again: exponential, capped, with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """``initial * multiplier ** (failures - 1)`` seconds, at most ``maximum``, each
    spread by up to ``jitter`` (a fraction) so that replicas do not retry in step."""

    initial: float = 0.1
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2
    _random: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError("Backoff needs 0 < initial <= maximum")
        if self.multiplier < 1:
            raise ValueError("Backoff.multiplier must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("Backoff.jitter is a fraction in [0, 1)")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row (1, 2, ...)."""
        exponent = max(failures - 1, 0)
        # Past the cap the power only grows; stop before it overflows a float.
        base = self.maximum
        if exponent < 64:
            base = min(self.maximum, self.initial * self.multiplier**exponent)
        if self.jitter:
            base *= 1 - self.jitter * self._random.random()
        return base
