"""The task manager (the gateway side): admission, the store, hand-over, events, Watch, restarts.

Most tests run the real ``SchedulerCore`` in a ``SchedulerHost`` thread over the in-memory
``FakeExecutor`` (``tests.farm.scheduler.fakes``), so queue order and timing are under the test's
control; the ``slow`` tests at the end render on a real local Ray with the tiny default profile
(``RayExecutor``, finishing in threads) and decode the files.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import os
import sys
import threading
import time
import tracemalloc
import uuid
from dataclasses import dataclass

import numpy as np
import pytest
from ray import cloudpickle

from farm.domain.errors import DuplicateTaskError, QueueFullError, TaskNotFoundError, TaskValidationError
from farm.domain.planner import plan_clip
from farm.domain.records import TaskRecord
from farm.io.media import asset_references, store_inline_media
from farm.render.executor import MediaConfig
from farm.scheduler.actor import LocalClient, SchedulerHost
from farm.scheduler.core import SchedulerConfig, SchedulerCore
from farm.scheduler.events import EventBatch
from farm.scheduler.manager import CANCEL_WAIT_S, TaskManager
from farm.scheduler.pools import PoolPolicy
from farm.scheduler.store import TaskStore
from tests.farm.scheduler.fakes import MODEL, FakeExecutor, fake_profile

cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: Chunks of a 3 s task (96 frames) on the tiny windows.
CHUNKS = len(plan_clip(96, window_frames=17, overlap_frames=5, temporal_stride=4).chunks)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.01):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s")


def finished(manager: TaskManager, task_uuid: str, key: str | None = None) -> TaskRecord | None:
    record = manager.get(task_uuid, key)
    return record if record.status in ("success", "error", "cancelled") else None


class PausableClient(LocalClient):
    """A ``LocalClient`` whose event stream can be held back (``paused``: the manager hears
    nothing, as when its pump lags behind the scheduler) and whose scheduler can be unreachable
    (``down``: every call raises, as while the scheduler actor restarts)."""

    def __init__(self, host: SchedulerHost):
        super().__init__(host)
        self.paused = threading.Event()
        self.down = threading.Event()

    def _check(self) -> None:
        if self.down.is_set():
            raise ConnectionError("the scheduler actor is restarting")

    def events(self, after: int, timeout: float):
        self._check()
        if self.paused.is_set():
            time.sleep(min(timeout, 0.05))
            return EventBatch(epoch=self.host.core.epoch)
        batch = super().events(after, timeout)
        if self.paused.is_set():  # paused while it waited: withheld (the manager asks again later)
            return EventBatch(epoch=batch.epoch)
        return batch

    def cancel(self, task_uuid: str) -> bool:
        self._check()
        return super().cancel(task_uuid)

    def snapshot(self):
        self._check()
        return super().snapshot()

    def hand_over(self, spec) -> None:
        self._check()
        super().hand_over(spec)


@dataclass
class Gateway:
    manager: TaskManager
    client: LocalClient
    executor: FakeExecutor
    core: SchedulerCore
    host: SchedulerHost


@pytest.fixture
def gateway(tmp_path):
    """A factory of started managers on one SQLite file, each over its own scheduler (a core on a
    ``FakeExecutor`` in a ``SchedulerHost`` thread) unless ``host`` shares one."""
    made: list[Gateway] = []

    def make(
        executor: FakeExecutor | None = None,
        *,
        host: SchedulerHost | None = None,
        client=LocalClient,
        workers: int = 2,
        start: bool = True,
        config: SchedulerConfig | None = None,
        **kwargs,
    ) -> Gateway:
        if host is None:
            executor = executor or FakeExecutor()
            config = config or SchedulerConfig(default_pool=PoolPolicy(max_workers=workers), stats_interval_s=0.2)
            host = SchedulerHost(SchedulerCore(executor, {MODEL: fake_profile()}, config), step_timeout=0.05)
        scheduler = client(host)
        made_gateway = Gateway(
            TaskManager(TaskStore(tmp_path / "tasks.db"), scheduler=scheduler, out_dir=tmp_path / "out", **kwargs),
            scheduler,
            host.core.executor,  # type: ignore[arg-type]  # the fake executor
            host.core,
            host,
        )
        made.append(made_gateway)
        if start:
            made_gateway.manager.start()
        return made_gateway

    yield make
    for made_gateway in made:
        made_gateway.manager.stop(timeout=5, shutdown_scheduler=True)
        made_gateway.executor.check()


class RecordingArtifacts:
    def __init__(self):
        self.put_uuids: list[str] = []
        self.owners: dict[str, str | None] = {}

    def put(self, video_uuid, source, content_type, ttl_s, *, owner_key=None):
        assert source.is_file()
        self.put_uuids.append(video_uuid)
        self.owners[video_uuid] = owner_key


# -- admission -------------------------------------------------------------------------------


def test_submit_acknowledges_queued_with_position_then_renders_to_success(gateway, make_task):
    g = gateway(FakeExecutor(auto_ready=False))
    first, second = make_task(seed=41), make_task(numberResults=2)
    ack1 = g.manager.submit(first, "k")
    ack2 = g.manager.submit(second, "k")
    assert (ack1.status, ack1.queue_position) == ("queued", 1)
    assert (ack2.status, ack2.queue_position) == ("queued", 2)

    g.executor.make_ready()
    done = wait_for(lambda: finished(g.manager, second["taskUUID"], "k"))
    assert done.status == "success" and len(done.results) == 2
    assert all(r.status == "success" and r.progress == 1.0 and r.video_uuid for r in done.results)
    first_done = wait_for(lambda: finished(g.manager, first["taskUUID"], "k"))
    assert first_done.results[0].seed == 41
    assert g.manager.result_path(first["taskUUID"], 0).read_bytes() == b"fake video"


def test_invalid_task_raises_validation_error_and_is_not_stored(gateway, make_task):
    g = gateway()
    bad = make_task(duration=-1)
    with pytest.raises(TaskValidationError):
        g.manager.submit(bad, None)
    with pytest.raises(TaskNotFoundError):
        g.manager.get(bad["taskUUID"], None)
    assert g.core.snapshot().tasks == ()


def test_duplicate_uuid_identical_body_returns_first_ack_different_body_is_refused(gateway, make_task):
    g = gateway(FakeExecutor(auto_ready=False))
    task = make_task()
    ack = g.manager.submit(task, "k")
    again = g.manager.submit(dict(reversed(list(task.items()))), "k")  # same body, other key order
    assert again.task_uuid == ack.task_uuid and again.created_at == ack.created_at
    with pytest.raises(DuplicateTaskError):
        g.manager.submit({**task, "positivePrompt": "something else entirely"}, "k")
    assert len(g.core.snapshot().tasks) == 1, "handed over once"


def test_full_queue_refuses_with_a_retry_delay(gateway, make_task):
    g = gateway(FakeExecutor(auto_ready=False), max_queue=2)
    first = make_task()
    g.manager.submit(first, "k")
    g.manager.submit(make_task(), "k")
    with pytest.raises(QueueFullError) as refused:
        g.manager.submit(make_task(), "k")
    assert refused.value.retry_after_s > 0
    # A client retrying a submit whose acknowledgement it lost gets the first answer, full or not.
    again = g.manager.submit(first, "k")
    assert (again.task_uuid, again.queue_position) == (first["taskUUID"], 1)


def test_keys_share_the_workers_fairly_and_positions_say_so(gateway, make_task):
    g = gateway(FakeExecutor(auto_ready=False), workers=1)
    silent = {"audio": False}
    a = [g.manager.submit(make_task(settings=silent), "A").task_uuid for _ in range(3)]
    b = [g.manager.submit(make_task(settings=silent), "B").task_uuid for _ in range(2)]
    # Key A flooded the queue first; key B's first task still comes second.
    wait_for(lambda: g.manager.get(b[0], "B").queue_position == 2)
    assert [g.manager.get(t, k).queue_position for t, k in [(a[1], "A"), (b[1], "B"), (a[2], "A")]] == [3, 4, 5]
    g.executor.make_ready()
    wait_for(lambda: all(finished(g.manager, t, "A") for t in a) and all(finished(g.manager, t, "B") for t in b))
    assert g.executor.started_tasks() == [a[0], b[0], a[1], b[1], a[2]]


def test_a_key_sees_only_its_own_tasks(gateway, make_task):
    g = gateway()
    task = make_task()
    g.manager.submit(task, "alice")
    assert g.manager.get(task["taskUUID"], "alice").api_key == "alice"
    for other in ("bob", None):
        with pytest.raises(TaskNotFoundError):
            g.manager.get(task["taskUUID"], other)
        with pytest.raises(TaskNotFoundError):
            g.manager.cancel(task["taskUUID"], other)


def test_another_keys_task_uuid_is_a_new_task_of_its_own(gateway, make_task):
    """A task is (key, taskUUID): bob submitting alice's UUID learns nothing of hers (no
    duplicateTaskUUID); he gets his own task, under the UUID he sent, and each sees only theirs."""
    g = gateway(FakeExecutor(auto_ready=False))
    task = make_task()
    alice = g.manager.submit(task, "alice")
    bob_task = {**task, "positivePrompt": "something else entirely", "seed": 9}
    bob = g.manager.submit(bob_task, "bob")
    assert (bob.task_uuid, bob.status, bob.api_key) == (task["taskUUID"], "queued", "bob")
    assert g.manager.submit(bob_task, "bob").created_at == bob.created_at, "his resubmission is his task"
    with pytest.raises(DuplicateTaskError):
        g.manager.submit(task, "bob")  # now his UUID: another body is a duplicate of his own task
    assert len(g.core.snapshot().tasks) == 2

    g.executor.make_ready()
    done = {key: wait_for(lambda k=key: finished(g.manager, task["taskUUID"], k)) for key in ("alice", "bob")}
    assert done["alice"].created_at == alice.created_at and done["bob"].created_at == bob.created_at
    assert {r.seed for r in done["bob"].results} == {9}
    assert all(r.task_uuid == task["taskUUID"] for record in done.values() for r in record.results)
    assert [e.task_uuid for e in asyncio.run(_all(g.manager.watch(task["taskUUID"], "bob")))] == [task["taskUUID"]]
    assert g.manager.cancel(task["taskUUID"], "bob").created_at == bob.created_at
    with pytest.raises(TaskNotFoundError):
        g.manager.get(task["taskUUID"], "carol")
    # Alice's task is pruned: bob's is still his, under the same UUID, and his resubmission finds it.
    store = g.manager._store
    with store._lock:
        store._db.execute("UPDATE tasks SET updated_at = updated_at - 3600 WHERE api_key = 'alice'")
    assert g.manager.prune(retention_s=600) == 1
    with pytest.raises(TaskNotFoundError):
        g.manager.get(task["taskUUID"], "alice")
    assert g.manager.get(task["taskUUID"], "bob").created_at == bob.created_at
    assert g.manager.submit(bob_task, "bob").created_at == bob.created_at


def _png(width: int = 64, height: int = 64, *, noise: bool = False) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(width * height)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if noise else np.full((height, width, 3), 200)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def test_inline_media_is_stored_as_the_keys_asset_and_the_body_keeps_a_reference(gateway, make_task, tmp_path):
    assets = tmp_path / "assets"
    g = gateway(FakeExecutor(resolve_media=True), media=MediaConfig(assets_dir=str(assets)))
    png = _png()
    inline = "data:image/png;base64," + base64.b64encode(png).decode()
    task = make_task(inputs={"frameImages": [{"image": inline, "frame": "first"}, base64.b64encode(png).decode()]})
    ack = g.manager.submit(task, "alice")
    record = wait_for(lambda: finished(g.manager, task["taskUUID"], "alice"))
    assert record.status == "success", record  # rendered from the asset, resolved as alice

    body = json.loads(g.manager._store.get_body(ack.task_uuid))
    first, second = body["inputs"]["frameImages"]
    assert first["image"] == second and first["frame"] == "first", "one asset for the same bytes"
    assert (assets / first["image"]).read_bytes() == png
    assert json.loads((assets / f"{first['image']}.json").read_text())["apiKey"] == "alice"
    ((prepared, _, _),) = g.executor.prepared
    assert prepared.inputs.frame_images[0].image == first["image"]

    # The same task again is the same task (compared as sent); another body is a duplicate.
    assert g.manager.submit(json.loads(json.dumps(task)), "alice").created_at == ack.created_at
    with pytest.raises(DuplicateTaskError):
        g.manager.submit({**task, "inputs": {"frameImages": [inline]}}, "alice")
    # The same bytes from bob are bob's own asset.
    other = make_task(inputs={"frameImages": [inline]})
    g.manager.submit(other, "bob")
    bob_body = json.loads(g.manager._store.get_body(other["taskUUID"]))
    assert bob_body["inputs"]["frameImages"][0] not in (first["image"], inline)


def _age(assets, asset_uuid: str, seconds: float) -> None:
    """Make ``asset_uuid`` look last used ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(assets / f"{asset_uuid}.json", (then, then))


def test_assets_unused_for_the_retention_are_deleted_but_never_one_an_unfinished_task_names(
    gateway, make_task, tmp_path
):
    """``expire_assets``: an asset (inline media here; uploads are the same files) goes once no task
    named it for the retention, bytes and sidecar; one a queued task names stays however old, and
    naming it in a new task starts its retention again."""
    assets = tmp_path / "assets"
    executor = FakeExecutor(auto_ready=False)  # nothing renders: the task stays queued
    g = gateway(executor, media=MediaConfig(assets_dir=str(assets)))
    inline = [base64.b64encode(_png(size)).decode() for size in (64, 32, 48)]
    queued = make_task(inputs={"frameImages": [inline[0]]})
    g.manager.submit(queued, "alice")
    (kept,) = asset_references(json.loads(g.manager._store.get_body(queued["taskUUID"])))
    (loose,) = asset_references(
        store_inline_media(make_task(inputs={"frameImages": [inline[1]]}), assets_dir=assets, api_key="alice")
    )
    (reused,) = asset_references(
        store_inline_media(make_task(inputs={"frameImages": [inline[2]]}), assets_dir=assets, api_key="alice")
    )
    for asset_uuid in (kept, loose, reused):
        _age(assets, asset_uuid, 7200)
    # Named again by a new task: used now.
    g.manager.submit(make_task(inputs={"frameImages": [reused]}), "alice")

    assert g.manager.expire_assets(3600) == 1
    assert not (assets / loose).exists() and not (assets / f"{loose}.json").exists()
    for asset_uuid in (kept, reused):
        assert (assets / asset_uuid).is_file() and (assets / f"{asset_uuid}.json").is_file()
    assert g.manager.expire_assets(3600) == 0

    # Once its task ended, the asset goes: its last use (the submit) is older than the retention.
    g.manager.cancel(queued["taskUUID"], "alice")
    assert g.manager.expire_assets(3600) == 1
    assert not (assets / kept).exists() and (assets / reused).is_file()


def test_corrupt_inline_base64_is_refused_at_submit_naming_the_field(gateway, make_task, tmp_path):
    g = gateway(media=MediaConfig(assets_dir=str(tmp_path / "assets")))
    task = make_task(inputs={"frameImages": ["not*base64*at*all"]})
    with pytest.raises(TaskValidationError) as refused:
        g.manager.submit(task, None)
    assert [v.field for v in refused.value.violations] == ["inputs.frameImages[0]"]
    with pytest.raises(TaskNotFoundError):
        g.manager.get(task["taskUUID"], None)


def test_inline_media_leaves_memory_when_its_tasks_end(gateway, make_task, tmp_path):
    """10 tasks of 2 MB of inline media each: once they end, what they left in the manager (its
    store cache, its parsed tasks) is far below one of them (it was all 10 bodies before)."""
    g = gateway(FakeExecutor(), media=MediaConfig(assets_dir=str(tmp_path / "assets")), workers=4)
    payloads = [base64.b64encode(np.random.default_rng(i).bytes(2 * 2**20)).decode() for i in range(11)]

    first = make_task(settings={"audio": False})
    g.manager.submit(first, "k")
    wait_for(lambda: finished(g.manager, first["taskUUID"], "k"))
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        uuids = []
        for payload in payloads[:10]:
            task = make_task(settings={"audio": False}, inputs={"frameImages": [payload]})
            uuids.append(task["taskUUID"])
            g.manager.submit(task, "k")
            del task
        for task_uuid in uuids:
            wait_for(lambda u=task_uuid: finished(g.manager, u, "k"))
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    del payloads
    assert grown < 2 * 2**20, f"{grown / 2**20:.1f} MiB held after the tasks ended"
    assert all(g.manager._store.get_task(u).body == "" for u in uuids), "ended tasks' bodies are not cached"


def test_prune_deletes_ended_tasks_past_the_retention_only(gateway, make_task):
    g = gateway(FakeExecutor(auto_ready=False))
    old, recent, waiting = make_task(), make_task(), make_task()
    for task in (old, recent, waiting):
        g.manager.submit(task, "k")
    g.manager.cancel(old["taskUUID"], "k")
    g.manager.cancel(recent["taskUUID"], "k")
    store = g.manager._store
    with store._lock:  # ended an hour ago
        store._db.execute("UPDATE tasks SET updated_at = updated_at - 3600 WHERE task_uuid = ?", (old["taskUUID"],))
    assert g.manager.prune(retention_s=600) == 1
    with pytest.raises(TaskNotFoundError):
        g.manager.get(old["taskUUID"], "k")
    assert g.manager.get(recent["taskUUID"], "k").status == "cancelled"
    assert g.manager.get(waiting["taskUUID"], "k").status == "queued", "an unfinished task is never pruned"
    assert g.manager.prune(retention_s=0) == 1


# -- cancel, restart, watch ------------------------------------------------------------------


def test_cancel_a_queued_task_never_renders_it(gateway, make_task):
    g = gateway(FakeExecutor(auto_ready=False))
    blocker, victim = make_task(), make_task()
    g.manager.submit(blocker, None)
    g.manager.submit(victim, None)
    record = g.manager.cancel(victim["taskUUID"], None)
    assert record.status == "cancelled" and record.results[0].status == "cancelled"
    g.executor.make_ready()
    wait_for(lambda: finished(g.manager, blocker["taskUUID"]))
    assert victim["taskUUID"] not in g.executor.started_tasks()
    assert g.manager.get(victim["taskUUID"], None).status == "cancelled"


def test_cancel_a_running_task_stops_its_units_and_frees_the_workers(gateway, make_task):
    g = gateway()
    g.executor.hold(lambda call: call.kind == "chunk")
    task = make_task()
    g.manager.submit(task, None)
    g.executor.wait_held(2)
    wait_for(lambda: g.manager.get(task["taskUUID"], None).status == "running")
    g.manager.cancel(task["taskUUID"], None)
    record = wait_for(lambda: finished(g.manager, task["taskUUID"]))
    assert record.status == "cancelled" and record.results[0].error_code == "taskCancelled"
    assert {c.outcome for c in g.executor.units("chunk")} == {"cancelled"}
    assert len(g.executor.units("chunk")) == 2, "queued chunks were dropped"

    g.executor.release()
    nxt = make_task(settings={"audio": False})
    g.manager.submit(nxt, None)
    assert wait_for(lambda: finished(g.manager, nxt["taskUUID"])).status == "success"


def test_a_task_left_running_by_a_crash_renders_again_with_the_same_seed(gateway, make_task, tmp_path):
    first = gateway(FakeExecutor(auto_ready=False))
    task = make_task(numberResults=2)
    first.manager.submit(task, "k")  # never started: the process "dies" with the task queued
    first.manager.stop(timeout=5)
    store = TaskStore(tmp_path / "tasks.db")
    base_seed = store.get_base_seed(task["taskUUID"])
    store.update_task_status(task["taskUUID"], "running")

    second = gateway()
    record = wait_for(lambda: finished(second.manager, task["taskUUID"], "k"))
    assert record.status == "success"
    assert {c.result_index: c.work.seed for c in second.executor.units("chunk")} == {0: base_seed, 1: base_seed + 1}
    assert [r.seed for r in record.results] == [base_seed, base_seed + 1]


def test_stop_interrupts_the_render_and_the_next_start_finishes_it(gateway, make_task):
    first = gateway()
    first.executor.hold(lambda call: call.kind == "chunk")
    task = make_task()
    first.manager.submit(task, None)
    first.executor.wait_held(1)
    first.manager.stop(timeout=10)
    assert first.manager.get(task["taskUUID"], None).status in ("queued", "running")
    with pytest.raises(QueueFullError):
        first.manager.submit(make_task(), None)

    second = gateway()
    assert wait_for(lambda: finished(second.manager, task["taskUUID"])).status == "success"
    assert len(second.executor.units("chunk", task["taskUUID"])) == CHUNKS


def test_a_task_whose_model_is_gone_fails_clearly_on_restart(gateway, make_task):
    first = gateway(FakeExecutor(auto_ready=False))
    task = make_task()
    first.manager.submit(task, None)
    first.manager.stop(timeout=5)

    second = gateway(known_models=("other:model@v1",))
    record = wait_for(lambda: finished(second.manager, task["taskUUID"]))
    assert record.status == "error"
    assert "cannot be resumed" in record.results[0].error_message
    assert second.executor.units() == []


def test_watch_yields_the_state_then_events_in_order_until_done(gateway, make_task):
    g = gateway(FakeExecutor(auto_ready=False))
    task = make_task()
    g.manager.submit(task, None)

    async def collect():
        events = []
        async for event in g.manager.watch(task["taskUUID"], None):
            events.append(event)
            if len(events) == 1:
                g.executor.make_ready()
        return events

    events = asyncio.run(asyncio.wait_for(collect(), 30))
    kinds = [e.kind for e in events]
    assert kinds[0] == "queued" and events[0].queue_position == 1
    assert kinds[-1] == "done"
    assert kinds.index("running") < kinds.index("chunks") < kinds.index("encoding") < kinds.index("result")
    chunks = [e.chunks_done for e in events if e.kind == "chunks"]
    assert chunks == list(range(1, CHUNKS + 1))
    # a finished task's watch ends at once with its final state
    assert [e.kind for e in asyncio.run(_all(g.manager.watch(task["taskUUID"], None)))] == ["done"]


async def _all(iterator):
    return [event async for event in iterator]


def test_cancel_of_a_task_started_before_the_store_heard_ends_cancelled_while_running(gateway, make_task):
    """The store still says queued (the pump has not applied ``running`` yet) but the scheduler
    has dispatched its units: the task ends as the scheduler knows it, "cancelled while running"."""
    g = gateway(client=PausableClient)
    g.executor.hold(lambda call: call.kind == "chunk")
    task = make_task()
    g.client.paused.set()
    g.manager.submit(task, "k")
    g.executor.wait_held(1)
    assert g.manager.get(task["taskUUID"], "k").status == "queued"
    threading.Timer(0.3, g.client.paused.clear).start()  # the pump catches up while cancel waits
    g.manager.cancel(task["taskUUID"], "k")
    record = wait_for(lambda: finished(g.manager, task["taskUUID"], "k"))
    assert record.status == "cancelled"
    assert record.results[0].error_message == "cancelled while running"
    assert {c.outcome for c in g.executor.units("chunk")} == {"cancelled"}


def test_a_cancel_taken_by_a_scheduler_that_then_restarts_is_not_lost(gateway, make_task):
    """The scheduler takes the cancel, then dies before its units stop: the restarted (empty)
    scheduler must not get the task again."""
    g = gateway(FakeExecutor(stop_on_cancel=False))
    g.executor.hold(lambda call: call.kind == "chunk")
    task = make_task()
    g.manager.submit(task, "k")
    g.executor.wait_held(1)
    wait_for(lambda: g.manager.get(task["taskUUID"], "k").status == "running")
    started = time.monotonic()
    assert g.manager.cancel(task["taskUUID"], "k").status == "running", "its units have not stopped yet"
    assert time.monotonic() - started < CANCEL_WAIT_S + 1

    g.host.stop()
    executor = FakeExecutor()
    fresh = SchedulerHost(SchedulerCore(executor, {MODEL: fake_profile()}, SchedulerConfig()), step_timeout=0.05)
    g.client.host = fresh
    record = wait_for(lambda: finished(g.manager, task["taskUUID"], "k"))
    assert (record.status, record.results[0].error_message) == ("cancelled", "cancelled while running")
    time.sleep(0.3)
    assert executor.units() == [] and fresh.core.snapshot().tasks == (), "not handed over again"


def test_a_cancel_while_the_scheduler_is_unreachable_ends_the_task_and_no_resync_renders_it(gateway, make_task):
    g = gateway(FakeExecutor(auto_ready=False), client=PausableClient)
    task = make_task()
    g.manager.submit(task, "k")
    g.client.down.set()  # the scheduler actor restarts
    record = g.manager.cancel(task["taskUUID"], "k")
    assert (record.status, record.results[0].error_message) == ("cancelled", "cancelled while queued")

    g.host.stop()
    executor = FakeExecutor()
    fresh = SchedulerHost(SchedulerCore(executor, {MODEL: fake_profile()}, SchedulerConfig()), step_timeout=0.05)
    g.client.host = fresh
    g.client.down.clear()
    nxt = make_task(settings={"audio": False})
    g.manager.submit(nxt, "k")
    assert wait_for(lambda: finished(g.manager, nxt["taskUUID"], "k")).status == "success"
    assert executor.started_tasks() == [nxt["taskUUID"]], "the cancelled task was not handed over again"
    assert g.manager.get(task["taskUUID"], "k").status == "cancelled"


def test_a_task_handed_over_after_its_cancel_is_stopped_when_it_starts(gateway, make_task):
    """A cancel that overtakes its hand-over (the actor runs calls concurrently) ends the task
    here; when the scheduler starts it after all, the manager stops it there."""
    g = gateway(FakeExecutor(auto_ready=False))
    g.executor.hold(lambda call: call.kind == "chunk")
    task = make_task()
    g.manager.submit(task, "k")
    g.manager._end_cancelled(task["taskUUID"], "cancelled while queued")  # as if the cancel came first
    g.executor.make_ready()
    wait_for(lambda: g.core.snapshot().tasks)
    wait_for(lambda: g.core.snapshot().tasks[0].status == "cancelled")
    assert g.manager.get(task["taskUUID"], "k").status == "cancelled"
    assert {c.outcome for c in g.executor.units("chunk")} == {"cancelled"}, "its units stopped"


def _delivering_gateway(gateway, make_task):
    hooks = []
    g = gateway(on_result=lambda record, task: hooks.append(record))
    task = make_task(webhookURL="http://127.0.0.1:9/hook", settings={"audio": False})
    return g, task, hooks


def test_watch_streams_delivered_before_done(gateway, make_task):
    """``done`` is the last event: it waits for the result's webhook to settle (the gateway's
    delivery calls ``update_result(..., delivered=True)``), while GetResponse says success at once."""
    g, task, hooks = _delivering_gateway(gateway, make_task)

    async def collect():
        kinds = []
        async for event in g.manager.watch(task["taskUUID"], "k"):
            kinds.append(event.kind)
            if event.kind == "result":
                await asyncio.to_thread(wait_for, lambda: g.manager.get(task["taskUUID"], "k").status == "success")
                (record,) = hooks
                g.manager.update_result(dataclasses.replace(record, webhook_status="delivered"), delivered=True)
        return kinds

    g.executor.hold()
    g.manager.submit(task, "k")

    async def run():
        watcher = asyncio.create_task(collect())
        await asyncio.sleep(0.1)
        g.executor.release()
        return await asyncio.wait_for(watcher, 30)

    kinds = asyncio.run(run())
    assert kinds[-2:] == ["delivered", "done"], kinds
    assert kinds.count("done") == 1


def test_a_watcher_arriving_while_delivery_is_pending_waits_for_done(gateway, make_task):
    g, task, hooks = _delivering_gateway(gateway, make_task)
    g.manager.submit(task, "k")
    record = wait_for(lambda: finished(g.manager, task["taskUUID"], "k"))
    assert record.status == "success" and record.results[0].webhook_status == "pending"

    async def watch():
        events = []
        async for event in g.manager.watch(task["taskUUID"], "k"):
            events.append(event)
            if len(events) == 1:
                (result,) = hooks
                g.manager.update_result(dataclasses.replace(result, webhook_status="failed"), delivered=True)
        return events

    events = asyncio.run(asyncio.wait_for(watch(), 30))
    assert [e.kind for e in events] == ["running", "delivered", "done"]
    assert events[1].extra == {"webhook": "failed"}
    assert events[2].extra == {"succeeded": 1, "failed": 0}
    assert [e.kind for e in asyncio.run(_all(g.manager.watch(task["taskUUID"], "k")))] == ["done"]


def test_a_task_handed_over_again_by_a_resync_is_queued_again_for_watchers(gateway, make_task):
    g = gateway()
    g.executor.hold(lambda call: call.kind == "chunk")
    task = make_task(settings={"audio": False})
    g.manager.submit(task, "k")
    g.executor.wait_held(1)
    wait_for(lambda: g.manager.get(task["taskUUID"], "k").status == "running")

    async def watch():
        kinds = []
        async for event in g.manager.watch(task["taskUUID"], "k"):
            kinds.append(event.kind)
            if len(kinds) == 1:
                # The control plane dies and comes back empty: the task is handed over again.
                await asyncio.to_thread(g.host.stop)
                executor = FakeExecutor()
                config = SchedulerConfig(default_pool=PoolPolicy(max_workers=2))
                g.client.host = SchedulerHost(SchedulerCore(executor, {MODEL: fake_profile()}, config), 0.05)
        return kinds

    kinds = asyncio.run(asyncio.wait_for(watch(), 30))
    assert kinds[0] == "running" and kinds[-1] == "done"
    # Queued again, then running again (the start event may also repeat the first state: a watcher
    # that subscribes while the start is being recorded hears it twice).
    assert "running" in kinds[kinds.index("queued") :], kinds


def test_cost_and_callbacks(gateway, make_task):
    seen = []

    class Artifacts:
        def put(self, video_uuid, source, content_type, ttl_s, *, owner_key=None):
            seen.append(("put", video_uuid, content_type, ttl_s))
            return None

    def on_result(record, task):
        seen.append(("result", record.index))
        return dataclasses.replace(record, video_url=f"http://farm/{record.video_uuid}")

    g = gateway(
        FakeExecutor(chunk_seconds=0.25, audio_seconds=0.5),
        artifacts=Artifacts(),
        on_result=on_result,
        price_per_gpu_second=0.001,
        gpus_per_worker=1.0,
    )
    task = make_task(includeCost=True, ttl=120)
    g.manager.submit(task, None)
    record = wait_for(lambda: finished(g.manager, task["taskUUID"]))
    result = record.results[0]
    # 8 chunks x 0.25 model seconds on 1 GPU, plus 0.5 s of audio on a quarter GPU, at $0.001/s
    assert result.cost == pytest.approx((CHUNKS * 0.25 + 0.5 * 0.25) * 0.001)
    assert result.video_url == f"http://farm/{result.video_uuid}"
    assert seen == [("put", result.video_uuid, "video/mp4", 120), ("result", 0)]


def test_metrics_count_tasks_results_chunks_and_queue_depth(gateway, make_task):
    from farm.gateway.metrics import FarmMetrics

    metrics = FarmMetrics()
    g = gateway(FakeExecutor(auto_ready=False), metrics=metrics)
    kept, dropped = make_task(), make_task()
    g.manager.submit(kept, None)
    g.manager.submit(dropped, None)
    assert metrics.queue_depth._value.get() == 2
    g.manager.cancel(dropped["taskUUID"], None)
    g.executor.make_ready()
    wait_for(lambda: finished(g.manager, kept["taskUUID"]))
    body = metrics.exposition()[0].decode()
    assert "farm_tasks_submitted_total 2.0" in body
    assert 'farm_tasks_finished_total{status="success"} 1.0' in body
    assert 'farm_tasks_finished_total{status="cancelled"} 1.0' in body
    assert 'farm_results_finished_total{status="success"} 1.0' in body
    assert f"farm_chunk_seconds_count {float(CHUNKS)}" in body
    assert metrics.queue_depth._value.get() == 0


# -- per-result delivery, partial failure, resume, media ---------------------------------------


def test_each_result_is_delivered_as_it_completes_and_only_once(gateway, make_task):
    hooks = []
    artifacts = RecordingArtifacts()
    g = gateway(artifacts=artifacts, on_result=lambda record, task: hooks.append(record.index))
    g.executor.hold(lambda call: call.result_index == 1)
    task = make_task(numberResults=2)
    g.manager.submit(task, None)
    # Result 0 is stored and handed to the hook while result 1 is still rendering.
    record = wait_for(lambda: (r := g.manager.get(task["taskUUID"], None)).results[0].status == "success" and r)
    assert record.status == "running"
    assert record.results[1].status == "running"
    assert hooks == [0] and artifacts.put_uuids == [record.results[0].video_uuid]
    g.executor.release()
    done = wait_for(lambda: finished(g.manager, task["taskUUID"]))
    assert done.status == "success"
    time.sleep(0.2)  # any late repeat would have arrived by now
    assert hooks == [0, 1]
    assert len(artifacts.put_uuids) == 2


def test_a_result_failing_on_its_own_is_an_error_while_the_other_succeeds(gateway, make_task):
    from farm.gateway.wire import task_answer

    hooks = []
    artifacts = RecordingArtifacts()
    g = gateway(artifacts=artifacts, on_result=lambda record, task: hooks.append(record))
    g.executor.flag(lambda call: call.result_index == 1)
    task = make_task(numberResults=2, safety={"checkContent": True})
    g.manager.submit(task, None)
    record = wait_for(lambda: finished(g.manager, task["taskUUID"]))
    # At least one result delivered: the task succeeded; the flagged result carries its own error.
    assert record.status == "success"
    ok, flagged = record.results
    assert ok.status == "success" and ok.video_uuid
    assert (flagged.status, flagged.error_code, flagged.video_uuid) == ("error", "safety", None)
    assert "flagged" in flagged.error_message
    assert artifacts.put_uuids == [ok.video_uuid]  # nothing stored for the flagged result
    assert sorted((r.index, r.status) for r in hooks) == [(0, "success"), (1, "error")]
    data, errors = task_answer(record)
    assert [item["status"] for item in data] == ["success", "error"]
    assert [(e["code"], e["taskUUID"]) for e in errors] == [("safety", task["taskUUID"])]


def test_a_task_whose_every_result_failed_is_an_error(gateway, make_task):
    g = gateway()
    g.executor.flag(lambda call: True)
    task = make_task(numberResults=2, safety={"checkContent": True})
    g.manager.submit(task, None)
    record = wait_for(lambda: finished(g.manager, task["taskUUID"]))
    assert record.status == "error"
    assert {r.error_code for r in record.results} == {"safety"}


def test_resume_renders_only_the_results_not_yet_finished(gateway, make_task, tmp_path):
    task = make_task(numberResults=2, seed=100)
    first = gateway(FakeExecutor(auto_ready=False))
    first.manager.submit(task, "k")
    first.manager.stop(timeout=5)
    # As a crash leaves it: result 0 delivered, result 1 mid-render, the task running.
    store = TaskStore(tmp_path / "tasks.db")
    stored = store.get_task(task["taskUUID"])
    store.upsert_result(dataclasses.replace(stored.results[0], status="success", video_uuid="v-kept", progress=1.0))
    store.upsert_result(dataclasses.replace(stored.results[1], status="running", progress=0.4))
    store.update_task_status(task["taskUUID"], "running")

    hooks = []
    second = gateway(on_result=lambda record, task: hooks.append(record.index))
    record = wait_for(lambda: finished(second.manager, task["taskUUID"], "k"))
    assert {c.result_index for c in second.executor.units()} == {None, 1}  # the prompt, result 1
    assert hooks == [1]
    assert record.status == "success"
    assert record.results[0].video_uuid == "v-kept"
    assert (record.results[1].status, record.results[1].seed) == ("success", 101)


def test_extended_prompt_is_stored_with_the_result_and_answered(gateway, make_task):
    from farm.gateway.wire import task_answer

    g = gateway(FakeExecutor(extended="A lighthouse on a cliff at dusk, in golden light"))
    task = make_task()
    g.manager.submit(task, None)
    record = wait_for(lambda: finished(g.manager, task["taskUUID"]))
    assert record.results[0].extended_prompt == "A lighthouse on a cliff at dusk, in golden light"
    data, _ = task_answer(record)
    assert data[0]["extendedPrompt"] == "A lighthouse on a cliff at dusk, in golden light"


def test_bad_media_fails_the_task_naming_the_field_and_resolves_as_the_owner(gateway, make_task, tmp_path):
    from farm.domain.errors import Violation
    from farm.gateway.wire import task_answer

    executor = FakeExecutor()
    executor.prepare_error = TaskValidationError(
        [Violation(field="inputs.frameImages[0].image", message="image does not decode")]
    )
    media = MediaConfig(allow_urls=("127.0.0.1",), assets_dir=str(tmp_path / "assets"))
    g = gateway(executor, media=media)
    task = make_task(inputs={"frameImages": [{"image": "https://example.com/a.png", "frame": "first"}]})
    g.manager.submit(task, "alice")
    record = wait_for(lambda: finished(g.manager, task["taskUUID"], "alice"))
    assert record.status == "error"
    ((_, _, seen),) = g.executor.prepared
    assert (seen.allow_urls, seen.api_key, seen.assets_dir) == (("127.0.0.1",), "alice", str(tmp_path / "assets"))
    _, errors = task_answer(record)
    assert [(e["code"], e["parameter"]) for e in errors] == [("invalidParameter", "inputs.frameImages[0].image")]
    assert "does not decode" in errors[0]["message"]
    assert g.executor.units() == []


# -- the scheduler outlives the gateway; the gateway outlives the scheduler --------------------


def test_a_restarted_gateway_picks_up_renders_that_went_on_without_it(gateway, make_task):
    first = gateway(FakeExecutor(auto_ready=False))
    first.executor.hold(lambda call: call.result_index == 1)
    task = make_task(numberResults=2)
    first.manager.submit(task, "k")
    first.manager.stop(timeout=5)  # the gateway dies before its task starts; the scheduler goes on
    first.executor.make_ready()
    wait_for(lambda: first.core.snapshot().tasks[0].results[0].status == "success")
    assert first.manager.get(task["taskUUID"], "k").status == "queued", "nobody recorded the start"

    hooks = []
    second = gateway(host=first.host, start=False, on_result=lambda r, t: hooks.append(r.index))
    second.manager.start()
    # Result 0 ended while nobody listened: the restart records and delivers it from the snapshot.
    record = wait_for(lambda: (r := second.manager.get(task["taskUUID"], "k")).results[0].status == "success" and r)
    assert record.status == "running" and hooks == [0]

    async def watch():
        kinds = []
        async for event in second.manager.watch(task["taskUUID"], "k"):
            kinds.append(event.kind)
            if len(kinds) == 1:
                first.executor.release()
        return kinds

    kinds = asyncio.run(asyncio.wait_for(watch(), 30))
    assert kinds[0] == "running" and kinds[-1] == "done" and "result" in kinds
    assert wait_for(lambda: finished(second.manager, task["taskUUID"], "k")).status == "success"
    assert hooks == [0, 1]
    assert len(first.executor.units("chunk")) == 2 * CHUNKS, "no chunk rendered twice"


def test_a_restarted_scheduler_gets_the_unfinished_results_again(gateway, make_task):
    hooks = []
    g = gateway(on_result=lambda record, task: hooks.append(record.index))
    g.executor.hold(lambda call: call.result_index == 1)
    task = make_task(numberResults=2)
    g.manager.submit(task, "k")
    wait_for(lambda: g.manager.get(task["taskUUID"], "k").results[0].status == "success")

    # The control plane dies and comes back empty, under a new epoch.
    g.host.stop()
    executor = FakeExecutor()
    config = SchedulerConfig(default_pool=PoolPolicy(max_workers=2))
    fresh = SchedulerHost(SchedulerCore(executor, {MODEL: fake_profile()}, config), step_timeout=0.05)
    g.client.host = fresh  # the gateway's client now reaches the new one
    record = wait_for(lambda: finished(g.manager, task["taskUUID"], "k"))
    fresh.stop()

    assert record.status == "success" and [r.status for r in record.results] == ["success", "success"]
    assert {c.result_index for c in executor.units("chunk")} == {1}, "the finished result is not rendered again"
    assert hooks == [0, 1]
    executor.check()


def test_resync_never_renders_again_results_it_recorded_though_the_scheduler_forgot_the_task(gateway, make_task):
    """A crash between recording a task's results and its end leaves it ``running`` in the store;
    the scheduler has since dropped it (``forget``, ``keep_ended``). The restart reads its own
    store first: nothing is rendered again, the task just ends."""
    config = SchedulerConfig(default_pool=PoolPolicy(max_workers=2), keep_ended=1)
    first = gateway(config=config)
    tasks = [make_task(numberResults=2, settings={"audio": False}) for _ in range(3)]
    for task in tasks:
        first.manager.submit(task, "k")
    for task in tasks:
        wait_for(lambda t=task: finished(first.manager, t["taskUUID"], "k"))
    first.manager.stop(timeout=5)
    store = TaskStore(first.manager._store.path)
    store.update_task_status(tasks[0]["taskUUID"], "running")  # as the crash left it
    assert tasks[0]["taskUUID"] not in {t.task_uuid for t in first.core.snapshot().tasks}
    units = len(first.executor.units())

    second = gateway(host=first.host)
    record = wait_for(lambda: finished(second.manager, tasks[0]["taskUUID"], "k"))
    assert record.status == "success" and all(r.status == "success" for r in record.results)
    assert len(first.executor.units()) == units, "nothing rendered again"


def test_start_removes_encoder_leftovers_of_renders_no_scheduler_holds(gateway, make_task, tmp_path):
    first = gateway()
    first.executor.hold(lambda call: call.kind == "chunk")
    live = make_task(settings={"audio": False})
    first.manager.submit(live, "k")
    first.executor.wait_held(1)
    first.manager.stop(timeout=5)  # the scheduler goes on with ``live``
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    kept = out / f".{live['taskUUID']}-0.mp4.partial-0a1b2c3d4e5f"
    orphan = out / f".{uuid.uuid4()}-0.mp4.partial-5f4e3d2c1b0a"
    finished_file = out / f"{uuid.uuid4()}-0.mp4"
    for path in (kept, orphan, finished_file):
        path.write_bytes(b"half a video")

    gateway(host=first.host)
    assert kept.exists(), "a render still going keeps its file"
    assert not orphan.exists()
    assert finished_file.exists(), "only partial files are leftovers"
    first.executor.release()


def test_closing_a_local_client_leaves_its_scheduler_running_unless_told_to_shut_it_down():
    host = SchedulerHost(SchedulerCore(FakeExecutor(), {MODEL: fake_profile()}, SchedulerConfig()), 0.05)
    client = LocalClient(host)
    client.close()
    assert host._thread.is_alive() and not host.core.executor.shut_down
    client.close(shutdown=True)
    assert not host._thread.is_alive() and host.core.executor.shut_down


def test_results_are_stored_with_their_owner_key(gateway, make_task):
    artifacts = RecordingArtifacts()
    g = gateway(artifacts=artifacts)
    task = make_task(settings={"audio": False})
    g.manager.submit(task, "alice")
    record = wait_for(lambda: finished(g.manager, task["taskUUID"], "alice"))
    assert artifacts.owners == {record.results[0].video_uuid: "alice"}


# -- on a real local Ray -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_pool(ray_cluster):
    from farm.workers.pool import WorkerConfig, WorkerPool
    from models.profiles import get_profile

    pool = WorkerPool(get_profile(MODEL), WorkerConfig(video_workers=2, audio_worker=False))
    pool.wait_ready()
    yield pool
    pool.shutdown()


@pytest.fixture
def real_manager(tmp_path, real_pool):
    """Managers over a real scheduler: a ``SchedulerCore`` on a ``RayExecutor`` (finishing in
    threads) in a ``SchedulerHost``, its video pool the module's two warm workers."""
    from farm.render.dispatch import RayExecutor

    class PoolExecutor(RayExecutor):
        """Leaves the shared pool's actors alive when its scheduler stops (a test shares them)."""

        def shutdown(self) -> None:
            self.release()

    managers = []

    def make() -> TaskManager:
        profile = real_pool.profile
        executor = PoolExecutor(finishing="local")
        config = SchedulerConfig(
            default_pool=PoolPolicy(max_workers=len(real_pool.video_workers), idle_timeout_s=3600), stats_interval_s=1
        )
        core = SchedulerCore(executor, {MODEL: profile}, config)
        core.adopt("video", profile, [executor.adopt(actor, "video") for actor in real_pool.video_workers])
        manager = TaskManager(
            TaskStore(tmp_path / "tasks.db"),
            scheduler=LocalClient(SchedulerHost(core, step_timeout=0.05)),
            out_dir=tmp_path / "out",
        )
        manager.start()
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.stop(timeout=30, shutdown_scheduler=True)


@pytest.mark.slow
def test_real_render_submit_poll_decode_and_cancel_frees_the_workers(real_manager, make_task, tmp_path):
    from tests.media import probe

    manager = real_manager()
    victim = make_task(settings={"audio": False}, duration=5)
    manager.submit(victim, "k")
    wait_for(lambda: manager.get(victim["taskUUID"], "k").results[0].progress > 0, timeout=120)
    cancelled_at = time.monotonic()
    manager.cancel(victim["taskUUID"], "k")
    record = wait_for(lambda: finished(manager, victim["taskUUID"], "k"), timeout=60)
    assert record.status == "cancelled"
    assert time.monotonic() - cancelled_at < 10, "the workers stop within a denoising step or so"
    assert not list((tmp_path / "out").glob(f"{victim['taskUUID']}*")), "no partial file is left"

    # the freed workers take the next task at once and finish it
    task = make_task(settings={"audio": False})
    manager.submit(task, "k")
    record = wait_for(lambda: finished(manager, task["taskUUID"], "k"), timeout=120)
    assert record.status == "success", record
    info = probe(manager.result_path(task["taskUUID"], 0))
    assert (info.frames, info.width, info.height) == (96, 848, 480)


@pytest.mark.slow
def test_real_render_resumes_after_stop_and_watch_ends_with_done(real_manager, make_task):
    from tests.media import probe

    first = real_manager()
    task = make_task(settings={"audio": False})
    first.submit(task, None)
    wait_for(lambda: first.get(task["taskUUID"], None).results[0].progress > 0, timeout=120)
    first.stop(timeout=60, shutdown_scheduler=True)  # the scheduler too: the second starts its own
    assert first.get(task["taskUUID"], None).status == "running"

    second = real_manager()  # started: it hands the task over again

    async def watch():
        kinds = []
        async for event in second.watch(task["taskUUID"], None):
            kinds.append(event.kind)
        return kinds

    kinds = asyncio.run(asyncio.wait_for(watch(), 180))
    assert kinds[-1] == "done"
    if kinds[0] != "done":
        assert kinds.index("chunks") < kinds.index("result")
    info = probe(second.result_path(task["taskUUID"], 0))
    assert info.frames == 96


@pytest.mark.slow
def test_render_task_should_cancel_stops_workers_and_the_flag_actor_can_be_shut_down(real_pool, make_task, tmp_path):
    import ray

    from farm.domain.errors import TaskCancelledError
    from farm.domain.validation import parse_task
    from farm.scheduler.local import render_task
    from farm.workers.cancel import CANCEL_FLAGS_ACTOR, CANCEL_FLAGS_NAMESPACE, shutdown_cancel_flags

    task = parse_task(make_task(settings={"audio": False}, duration=5))
    chunks = []

    def on_event(event):
        if event.stage == "chunk":
            chunks.append(event)

    with pytest.raises(TaskCancelledError):
        render_task(task, real_pool, tmp_path, base_seed=1, on_event=on_event, should_cancel=lambda: bool(chunks))
    assert len(chunks) < 4, "dispatch stopped after the first chunk came back"
    assert list(tmp_path.iterdir()) == []
    # every worker is free again: a short ping answers at once
    ray.get([w.ready.remote() for w in real_pool.video_workers], timeout=5)
    assert not _actor_gone(CANCEL_FLAGS_ACTOR, CANCEL_FLAGS_NAMESPACE)
    shutdown_cancel_flags()
    wait_for(lambda: _actor_gone(CANCEL_FLAGS_ACTOR, CANCEL_FLAGS_NAMESPACE), timeout=10)


def _actor_gone(name: str, namespace: str) -> bool:
    import ray

    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:
        return True
    return False
