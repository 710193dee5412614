"""Where a benchmark's processes run: the broker on one CPU, the clients on another.

On a machine with few CPUs the scheduler sometimes puts a client and the server on the
same CPU and sometimes not, and a round trip costs very differently in the two cases:
awaited publishes on this project's 2-CPU machine came out at 4,000-4,900/s in some runs
and 5,000-5,900/s in others for identical code, whichever client it was. Pinning every
run the same way removes that from a comparison of two builds of one client. It is not
the default, and not for comparing clients: it also takes from a client the second CPU
its runtime's helper threads use (Node's garbage collector and compiler), which on NATS
Streaming consume cost Node about a quarter of its rate and cost single-threaded Python
nothing. Affinity is inherited: processes started inside ``on_server_cpu()`` (the
broker, with all its threads) keep the server's CPU; this process and the clients it
starts afterwards keep the clients' CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def _cpus() -> list[int]:
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


class Placement:
    """The server's CPU and the clients' CPU, or nothing pinned (one CPU, or asked)."""

    def __init__(self, enabled: bool = True) -> None:
        cpus = _cpus()
        self.enabled = enabled and len(cpus) >= 2
        self.server_cpu = cpus[-1] if self.enabled else None
        self.client_cpus = set(cpus[:-1]) if self.enabled else None

    def describe(self) -> str:
        if not self.enabled:
            return "not pinned"
        clients = ",".join(str(cpu) for cpu in sorted(self.client_cpus or ()))
        return f"server on CPU {self.server_cpu}, clients on CPU {clients}"

    def clients(self) -> None:
        """Pin this process (and what it starts from now on) to the clients' CPUs."""
        if self.client_cpus is not None:
            os.sched_setaffinity(0, self.client_cpus)

    @contextmanager
    def on_server_cpu(self) -> Iterator[None]:
        """Start the broker inside this block: it runs on the server's CPU."""
        if self.server_cpu is None:
            yield
            return
        os.sched_setaffinity(0, {self.server_cpu})
        try:
            yield
        finally:
            self.clients()
