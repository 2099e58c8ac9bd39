"""Elastic worker pools: how many workers each model has, and which of them are free.

A pool holds one model's video workers (or its audio worker). Its size moves between
``min_workers`` and ``max_workers``: the scheduler asks for more while units wait (a worker asked
for is an actor Ray has to place: pending actors are the demand Ray's autoscaler, and KubeRay,
see), and stops workers that idled longer than ``idle_timeout_s`` down to the minimum, so a model
nobody uses holds no GPU. A worker whose units fail ``retire_after_failures`` times in a row is
retired and replaced. Pure bookkeeping: the executor starts and stops the actors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from farm.render.executor import PoolSpec

WorkerStatus = Literal["starting", "idle", "busy"]


@dataclass(frozen=True, kw_only=True)
class PoolPolicy:
    """Size limits of one pool."""

    min_workers: int = 0
    max_workers: int = 2
    #: Seconds a worker may idle above ``min_workers`` before it is stopped.
    idle_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.min_workers < 0:
            raise ValueError(f"min_workers must be >= 0, got {self.min_workers}")
        if self.max_workers < max(1, self.min_workers):
            raise ValueError(
                f"max_workers must be >= max(1, min_workers), got max_workers={self.max_workers}, "
                f"min_workers={self.min_workers}"
            )
        if self.idle_timeout_s < 0:
            raise ValueError(f"idle_timeout_s must be >= 0, got {self.idle_timeout_s}")


@dataclass(kw_only=True)
class WorkerState:
    """One worker actor as the scheduler sees it."""

    id: str
    status: WorkerStatus = "starting"
    #: When it last changed status (``time.monotonic``).
    since: float = field(default_factory=time.monotonic)
    #: Units that failed on it in a row (reset by a success).
    failures: int = 0
    #: Busy seconds accumulated (utilisation).
    busy_s: float = 0.0
    started: float = field(default_factory=time.monotonic)


@dataclass(kw_only=True)
class PoolState:
    """The workers of one pool."""

    spec: PoolSpec
    policy: PoolPolicy
    workers: dict[str, WorkerState] = field(default_factory=dict)
    #: Workers replaced after dying or being retired.
    replacements: int = 0

    def count(self, *statuses: WorkerStatus) -> int:
        return sum(1 for w in self.workers.values() if not statuses or w.status in statuses)

    def idle(self) -> list[str]:
        """Idle workers, longest idle first (so the freshest ones are the ones that time out)."""
        idle = [w for w in self.workers.values() if w.status == "idle"]
        return [w.id for w in sorted(idle, key=lambda w: w.since)]

    def set_status(self, worker: str, status: WorkerStatus, now: float | None = None) -> None:
        state = self.workers[worker]
        now = time.monotonic() if now is None else now
        if state.status == "busy":
            state.busy_s += now - state.since
        state.status, state.since = status, now

    def to_start(self, demand: int) -> int:
        """How many workers to ask for when ``demand`` units wait for this pool."""
        live = self.count()
        free_soon = self.count("idle", "starting")
        wanted = max(self.policy.min_workers - live, demand - free_soon, 0)
        return max(0, min(wanted, self.policy.max_workers - live))

    def to_stop(self, now: float) -> list[str]:
        """Idle workers past the idle timeout, above the pool's minimum."""
        spare = self.count() - self.policy.min_workers
        expired = [
            w.id
            for w in sorted(self.workers.values(), key=lambda w: w.since, reverse=True)
            if w.status == "idle" and now - w.since >= self.policy.idle_timeout_s
        ]
        return expired[: max(0, spare)]
