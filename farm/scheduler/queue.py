"""The work queue: which ready unit a free worker gets next.

Every schedulable piece of work of every admitted task (a prompt encode, a chunk, a result's audio)
is a ``Unit`` in one ``WorkQueue``, kept per worker pool (a model's video workers, its audio
worker). When a worker of a pool is free, ``pop`` picks:

1. the **tenant** (API key) by weighted fair share: the lowest virtual time ``usage / weight``
   among tenants with ready units in that pool and fewer than ``max_concurrency`` units in flight.
   ``usage`` is the estimated cost (GPU-seconds) of the units the tenant was given. A tenant that
   comes back after idling starts at the current minimum virtual time, so it cannot bank credit
   while away (start-time fair queuing, as Linux CFS does with ``min_vruntime``);
2. within the tenant, the highest **priority**, then the **oldest** task, then the lowest result
   and unit index (so a task's first result is finished, and deliverable, first).

Units with dependencies (a sequential result's next chunk) enter the queue only once they are
ready. A **gang** unit needs ``gang`` workers of its pool at once (co-denoising a result's windows):
``pop`` returns it only when that many are free, and while it waits at the head of its pool no
other unit of a lower rank overtakes it, so gangs are not starved by a stream of small units.

No Ray, no threads: the scheduler core calls it from its one loop.

Example::

    >>> q = WorkQueue({"a": TenantPolicy(weight=3.0), "b": TenantPolicy(weight=1.0)})
    >>> for i in range(4):
    ...     q.push(Unit(task_uuid=f"a{i}", tenant="a", pool="m", seq=i, cost=1.0))
    ...     q.push(Unit(task_uuid=f"b{i}", tenant="b", pool="m", seq=10 + i, cost=1.0))
    >>> [q.pop("m", free=1).tenant for _ in range(8)]
    ['a', 'b', 'a', 'a', 'a', 'b', 'b', 'b']
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

UnitKind = Literal["prepare", "prompt", "chunk", "audio", "codenoise"]

#: Order of kinds inside one result: the prompt before its chunks, audio alongside.
_KIND_ORDER = {"prepare": 0, "prompt": 1, "codenoise": 2, "chunk": 2, "audio": 3}


@dataclass(frozen=True, kw_only=True)
class TenantPolicy:
    """Share of one API key: ``weight`` (relative) and the most units it may run at once."""

    weight: float = 1.0
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"tenant weight must be > 0, got {self.weight}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"tenant max_concurrency must be >= 1 or None, got {self.max_concurrency}")


@dataclass(kw_only=True, eq=False)
class Unit:
    """One schedulable piece of work (identity semantics: each object is one unit)."""

    task_uuid: str
    tenant: str | None
    #: The worker pool that runs it, e.g. ``"video:skywork:skyreels@v4"``.
    pool: str
    #: Admission order of the task (older first).
    seq: int
    kind: UnitKind = "chunk"
    result_index: int = 0
    index: int = 0
    priority: int = 0
    #: Estimated GPU-seconds, charged to the tenant when dispatched.
    cost: float = 1.0
    #: Workers it needs at once.
    gang: int = 1
    #: How many times it was dispatched before (retries after a failure or a lost worker).
    attempts: int = 0
    #: Workers it failed on: a retry goes to another worker when the pool has one.
    failed_on: set[str] = field(default_factory=set, repr=False)
    #: Anything the caller attaches (the chunk plan, ...).
    payload: object = field(default=None, repr=False)

    def rank(self) -> tuple:
        """Order inside a tenant: priority (high first), age, result, kind, index."""
        return (-self.priority, self.seq, self.result_index, _KIND_ORDER[self.kind], self.index)


class _Tenant:
    __slots__ = ("active", "heaps", "in_flight", "policy", "usage")

    def __init__(self, policy: TenantPolicy):
        self.policy = policy
        self.usage = 0.0
        self.in_flight = 0
        #: pool -> heap of (rank, tie, unit)
        self.heaps: dict[str, list] = {}
        self.active = False

    @property
    def vtime(self) -> float:
        return self.usage / self.policy.weight

    def queued(self) -> int:
        return sum(len(h) for h in self.heaps.values())


class WorkQueue:
    """Ready units of every task, per pool, served by weighted fair share over tenants.

    ``policies`` maps an API key to its ``TenantPolicy``; keys not listed get ``default``.
    """

    def __init__(self, policies: Mapping[str | None, TenantPolicy] | None = None, default: TenantPolicy | None = None):
        self._policies = dict(policies or {})
        self._default = default or TenantPolicy()
        self._tenants: dict[str | None, _Tenant] = {}
        self._tie = itertools.count()
        self._removed: set[int] = set()
        self._size = 0

    # -- admin ---------------------------------------------------------------------------------

    def set_policies(self, policies: Mapping[str | None, TenantPolicy], default: TenantPolicy | None = None) -> None:
        """Replace the tenants' weights and limits (a reloaded gateway config)."""
        self._policies = dict(policies)
        if default is not None:
            self._default = default
        for key, tenant in self._tenants.items():
            tenant.policy = self._policy(key)

    def _policy(self, key: str | None) -> TenantPolicy:
        return self._policies.get(key, self._default)

    def _tenant(self, key: str | None) -> _Tenant:
        tenant = self._tenants.get(key)
        if tenant is None:
            tenant = self._tenants[key] = _Tenant(self._policy(key))
        return tenant

    # -- queue ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._size

    def push(self, unit: Unit) -> None:
        """Make ``unit`` ready (a retried unit goes back to its place by rank)."""
        tenant = self._tenant(unit.tenant)
        if not tenant.active:
            self._activate(tenant)
        heapq.heappush(tenant.heaps.setdefault(unit.pool, []), (unit.rank(), next(self._tie), unit))
        self._size += 1

    def _activate(self, tenant: _Tenant) -> None:
        # Coming back from idle: no credit for the time away.
        active = [t.vtime for t in self._tenants.values() if t.active and t is not tenant]
        if active:
            tenant.usage = max(tenant.usage, min(active) * tenant.policy.weight)
        tenant.active = True

    def remove(self, predicate) -> list[Unit]:
        """Drop every queued unit for which ``predicate(unit)`` holds (a cancelled task); returns them."""
        dropped = []
        for tenant in self._tenants.values():
            for pool, heap in tenant.heaps.items():
                keep = [entry for entry in heap if not predicate(entry[2])]
                dropped += [entry[2] for entry in heap if predicate(entry[2])]
                if len(keep) != len(heap):
                    heapq.heapify(keep)
                    tenant.heaps[pool] = keep
            if tenant.in_flight == 0 and tenant.queued() == 0:
                tenant.active = False  # idle now, as ``done`` would say: no credit banked while away
        self._size -= len(dropped)
        return dropped

    def _candidates(self, pool: str) -> Iterable[tuple[float, tuple, _Tenant]]:
        for tenant in self._tenants.values():
            heap = tenant.heaps.get(pool)
            if not heap:
                continue
            limit = tenant.policy.max_concurrency
            if limit is not None and tenant.in_flight >= limit:
                continue
            yield tenant.vtime, heap[0][0], tenant

    def peek(self, pool: str) -> Unit | None:
        """The unit ``pop`` would return for ``pool`` given enough free workers, or None."""
        best = min(self._candidates(pool), key=lambda c: (c[0], c[1]), default=None)
        return None if best is None else best[2].heaps[pool][0][2]

    def pop(self, pool: str, free: int = 1) -> Unit | None:
        """The next unit for a free worker of ``pool`` (``free`` workers are free), or None.

        Charges the unit's cost to its tenant and counts it in flight until ``done``.
        """
        best = min(self._candidates(pool), key=lambda c: (c[0], c[1]), default=None)
        if best is None:
            return None
        tenant = best[2]
        unit = tenant.heaps[pool][0][2]
        if unit.gang > free:
            return None  # the gang waits at the head until enough workers are free
        heapq.heappop(tenant.heaps[pool])
        self._size -= 1
        tenant.usage += unit.cost
        tenant.in_flight += 1
        return unit

    def unpop(self, unit: Unit) -> None:
        """Put back a unit ``pop`` returned that was not dispatched after all (its charge too)."""
        tenant = self._tenant(unit.tenant)
        tenant.usage -= unit.cost
        tenant.in_flight = max(0, tenant.in_flight - 1)
        heapq.heappush(tenant.heaps.setdefault(unit.pool, []), (unit.rank(), next(self._tie), unit))
        self._size += 1

    def done(self, unit: Unit) -> None:
        """``unit`` left its worker (finished, failed or lost): its tenant may run another."""
        tenant = self._tenant(unit.tenant)
        tenant.in_flight = max(0, tenant.in_flight - 1)
        if tenant.in_flight == 0 and tenant.queued() == 0:
            tenant.active = False

    def refund(self, unit: Unit) -> None:
        """Give back a dispatched unit's charge (it was lost through no fault of its tenant)."""
        self._tenant(unit.tenant).usage -= unit.cost

    # -- introspection -------------------------------------------------------------------------

    def depth_by_tenant(self) -> dict[str | None, int]:
        """Queued units per API key."""
        return {key: t.queued() for key, t in self._tenants.items() if t.queued()}

    def depth_by_pool(self) -> dict[str, int]:
        """Queued units per pool."""
        depth: dict[str, int] = {}
        for tenant in self._tenants.values():
            for pool, heap in tenant.heaps.items():
                if heap:
                    depth[pool] = depth.get(pool, 0) + len(heap)
        return depth

    def workers_wanted_by_pool(self) -> dict[str, int]:
        """Workers the queued units need per pool (a gang counts its size)."""
        wanted: dict[str, int] = {}
        for tenant in self._tenants.values():
            for pool, heap in tenant.heaps.items():
                if heap:
                    wanted[pool] = wanted.get(pool, 0) + sum(entry[2].gang for entry in heap)
        return wanted

    def in_flight_by_tenant(self) -> dict[str | None, int]:
        """Units running per API key."""
        return {key: t.in_flight for key, t in self._tenants.items() if t.in_flight}

    def task_order(self, waiting: Mapping[str, tuple[str | None, tuple, float]]) -> list[str]:
        """The order in which the fair share would start ``waiting`` tasks.

        ``waiting`` maps a task UUID to ``(tenant, rank, cost)``: tasks not started yet. The
        tenants' current virtual times are the starting point; each step starts the best task of
        the tenant with the lowest virtual time and charges it the task's cost. O(tasks x log).
        """
        per_tenant: dict[str | None, list] = {}
        for task_uuid, (key, rank, cost) in waiting.items():
            per_tenant.setdefault(key, []).append((rank, task_uuid, cost))
        for tasks in per_tenant.values():
            tasks.sort(key=lambda t: t[0])
        keys = list(per_tenant)
        clock = [self._tenant(key).usage for key in keys]
        # Ties in virtual time go to the better rank, as in ``pop``; the tenant's number (never its
        # key: None and str do not compare) keeps heap entries comparable.
        heads = [(clock[n] / self._policy(key).weight, per_tenant[key][0][0], n, 0) for n, key in enumerate(keys)]
        heapq.heapify(heads)
        order = []
        while heads:
            _, _, n, i = heapq.heappop(heads)
            tasks = per_tenant[keys[n]]
            _, task_uuid, cost = tasks[i]
            order.append(task_uuid)
            clock[n] += cost
            if i + 1 < len(tasks):
                heapq.heappush(heads, (clock[n] / self._policy(keys[n]).weight, tasks[i + 1][0], n, i + 1))
        return order
