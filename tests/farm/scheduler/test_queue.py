"""``WorkQueue``: weighted fair share over API keys, then priority, age and result order; gangs."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from farm.scheduler.queue import TenantPolicy, Unit, WorkQueue

POOL = "video:m"
_seq = itertools.count()


def unit(tenant: str | None = "a", *, task: str | None = None, seq: int | None = None, **fields) -> Unit:
    seq = next(_seq) if seq is None else seq
    return Unit(task_uuid=task or f"{tenant}-{seq}", tenant=tenant, pool=POOL, seq=seq, **fields)


def drain(queue: WorkQueue, n: int | None = None, *, finish: bool = True) -> list[Unit]:
    """Pop up to ``n`` units one at a time (one free worker), each done before the next."""
    popped = []
    while n is None or len(popped) < n:
        got = queue.pop(POOL)
        if got is None:
            break
        popped.append(got)
        if finish:
            queue.done(got)
    return popped


def test_weighted_shares_converge_to_the_weights_while_both_tenants_are_backlogged():
    queue = WorkQueue({"a": TenantPolicy(weight=3.0), "b": TenantPolicy(weight=1.0)})
    for i in range(500):
        queue.push(unit("a", seq=i))
        queue.push(unit("b", seq=1000 + i))
    served = Counter(u.tenant for u in drain(queue, 400))
    assert served == {"a": 300, "b": 100}


def test_unequal_costs_share_gpu_seconds_not_unit_counts():
    queue = WorkQueue()
    for i in range(200):
        queue.push(unit("big", seq=i, cost=4.0))
        queue.push(unit("small", seq=1000 + i, cost=1.0))
    served = drain(queue, 100)
    seconds = Counter()
    for u in served:
        seconds[u.tenant] += u.cost
    assert abs(seconds["big"] - seconds["small"]) <= 4.0
    assert Counter(u.tenant for u in served)["small"] == pytest.approx(80, abs=2)


def test_a_tenant_back_from_idle_gets_no_banked_credit():
    queue = WorkQueue()
    queue.push(unit("b"))
    drain(queue)  # b ran once, then idled
    for _i in range(100):
        queue.push(unit("a"))
    drain(queue, 60)  # a alone for a long while
    for _i in range(40):
        queue.push(unit("b"))
    served = [u.tenant for u in drain(queue, 20)]
    # b starts level with a: the two alternate instead of b catching up on 60 units.
    assert Counter(served) == {"a": 10, "b": 10}


def test_a_tenant_whose_queued_work_was_removed_gets_no_banked_credit_either():
    queue = WorkQueue()
    queue.push(unit("b", task="cancelled"))
    queue.remove(lambda u: u.task_uuid == "cancelled")  # b cancels its only task before it starts
    for _i in range(100):
        queue.push(unit("a"))
    drain(queue, 60)
    for _i in range(40):
        queue.push(unit("b"))
    assert Counter(u.tenant for u in drain(queue, 20)) == {"a": 10, "b": 10}


def test_max_concurrency_caps_a_tenant_and_others_take_the_free_workers():
    queue = WorkQueue({"a": TenantPolicy(max_concurrency=2)})
    for i in range(5):
        queue.push(unit("a", seq=i))
    queue.push(unit("b", seq=10))
    running = [queue.pop(POOL, free=4) for _ in range(4)]
    assert [u.tenant if u else None for u in running] == ["a", "b", "a", None]
    assert queue.in_flight_by_tenant() == {"a": 2, "b": 1}
    queue.done(running[0])
    assert queue.pop(POOL).tenant == "a"


def test_priority_then_age_within_a_tenant():
    queue = WorkQueue()
    old = unit("a", task="old", seq=1)
    new_urgent = unit("a", task="urgent", seq=2, priority=5)
    newer = unit("a", task="newer", seq=3)
    oldest = unit("a", task="oldest", seq=0)
    for u in (old, new_urgent, newer, oldest):
        queue.push(u)
    assert [u.task_uuid for u in drain(queue)] == ["urgent", "oldest", "old", "newer"]


def test_priority_does_not_override_the_share_of_another_tenant():
    queue = WorkQueue()
    for i in range(4):
        queue.push(unit("a", seq=i, priority=10))
        queue.push(unit("b", seq=10 + i))
    assert [u.tenant for u in drain(queue)] == ["a", "b"] * 4


def test_units_of_a_task_come_result_major_prompt_first_audio_after_the_chunks():
    queue = WorkQueue()
    units = [unit("a", task="t", seq=0, kind="prompt")]
    for result in (1, 0):
        units.append(unit("a", task="t", seq=0, kind="audio", result_index=result))
        units += [unit("a", task="t", seq=0, result_index=result, index=i) for i in (2, 0, 1)]
    for u in reversed(units):
        queue.push(u)
    order = [(u.kind, u.result_index, u.index) for u in drain(queue)]
    assert order == [
        ("prompt", 0, 0),
        ("chunk", 0, 0),
        ("chunk", 0, 1),
        ("chunk", 0, 2),
        ("audio", 0, 0),
        ("chunk", 1, 0),
        ("chunk", 1, 1),
        ("chunk", 1, 2),
        ("audio", 1, 0),
    ]


def test_a_retried_unit_goes_back_to_its_place():
    queue = WorkQueue()
    first, second = unit("a", seq=0, index=0), unit("a", seq=0, index=1)
    queue.push(first)
    queue.push(second)
    got = queue.pop(POOL)
    queue.done(got)
    queue.push(got)  # it failed: retried before the units behind it
    assert queue.pop(POOL) is first


def test_a_gang_holds_the_head_until_enough_workers_are_free():
    queue = WorkQueue()
    gang = unit("a", seq=0, kind="codenoise", gang=3)
    small = unit("a", seq=1)
    other = unit("b", seq=2)
    for u in (gang, small, other):
        queue.push(u)
    assert queue.peek(POOL) is gang
    # Two free workers are not enough, and nothing of a lower rank overtakes the gang.
    assert queue.pop(POOL, free=2) is None
    assert len(queue) == 3
    assert queue.pop(POOL, free=3) is gang
    assert queue.in_flight_by_tenant() == {"a": 1}


def test_remove_drops_the_matching_units_and_returns_them():
    queue = WorkQueue()
    keep = [unit("a", task="keep", seq=0, index=i) for i in range(3)]
    drop = [unit("b", task="drop", seq=1, index=i) for i in range(2)]
    for u in keep + drop:
        queue.push(u)
    assert queue.depth_by_tenant() == {"a": 3, "b": 2}
    removed = queue.remove(lambda u: u.task_uuid == "drop")
    assert set(map(id, removed)) == set(map(id, drop))
    assert len(queue) == 3 and queue.depth_by_pool() == {POOL: 3}
    assert queue.depth_by_tenant() == {"a": 3}
    assert drain(queue) == keep


def test_refund_gives_back_a_lost_units_charge():
    queue = WorkQueue()
    for i in range(4):
        queue.push(unit("a", seq=i, cost=1.0))
        queue.push(unit("b", seq=10 + i, cost=1.0))
    lost = queue.pop(POOL)
    assert lost.tenant == "a"
    queue.done(lost)
    queue.refund(lost)  # its worker died: a is not charged for it
    queue.push(lost)
    assert queue.pop(POOL) is lost


def test_task_order_gives_the_queue_positions_by_fair_share():
    queue = WorkQueue({"a": TenantPolicy(weight=2.0)})
    waiting = {
        "a1": ("a", (0, 1), 1.0),
        "a2": ("a", (0, 2), 1.0),
        "a3": ("a", (0, 3), 1.0),
        "a4": ("a", (0, 4), 1.0),
        "b1": ("b", (0, 5), 1.0),
        "b2": ("b", (0, 6), 1.0),
        "urgent": ("b", (-5, 7), 1.0),
    }
    # urgent wins the tie at 0 on its priority; at equal virtual time the older task goes first.
    assert queue.task_order(waiting) == ["urgent", "a1", "a2", "a3", "b1", "a4", "b2"]


def test_task_order_agrees_with_the_order_pop_starts_the_tasks_in():
    policies = {"a": TenantPolicy(weight=2.0)}
    queue, positions = WorkQueue(policies), WorkQueue(policies)
    waiting = {}
    for i, tenant in enumerate("aababbab"):
        queue.push(unit(tenant, task=f"{tenant}{i}", seq=i))
        waiting[f"{tenant}{i}"] = (tenant, (0, i), 1.0)
    assert [u.task_uuid for u in drain(queue)] == positions.task_order(waiting)


def test_task_order_starts_from_what_each_tenant_already_used():
    queue = WorkQueue()
    queue.push(unit("a", cost=5.0))
    queue.pop(POOL)  # a is rendering 5 GPU-seconds now
    waiting = {"a2": ("a", (0, 1), 1.0), "b1": ("b", (0, 2), 1.0), "b2": ("b", (0, 3), 1.0)}
    assert queue.task_order(waiting) == ["b1", "b2", "a2"]


def test_task_order_mixes_a_keyless_tenant_with_keyed_ones():
    queue = WorkQueue()
    waiting = {"anon": (None, (0, 1), 1.0), "keyed": ("k", (0, 2), 1.0)}
    assert sorted(queue.task_order(waiting)) == ["anon", "keyed"]


def test_set_policies_applies_new_weights():
    queue = WorkQueue()
    for i in range(100):
        queue.push(unit("a", seq=i))
        queue.push(unit("b", seq=1000 + i))
    queue.set_policies({"b": TenantPolicy(weight=4.0)})
    assert Counter(u.tenant for u in drain(queue, 50)) == {"a": 10, "b": 40}


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"weight": 0.0}, "weight must be > 0"), ({"max_concurrency": 0}, "max_concurrency must be >= 1")],
)
def test_tenant_policy_refuses_nonsense(fields, message):
    with pytest.raises(ValueError, match=message):
        TenantPolicy(**fields)
