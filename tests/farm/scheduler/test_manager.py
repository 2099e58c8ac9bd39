"""The task manager: admission, fair queue, key isolation, cancel, restart and watch.

Unit tests use a fake render (the manager's ``render`` argument) so queue order and timing are
under the test's control; the ``slow`` tests at the end render on a real local Ray with the tiny
default profile and decode the files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import threading
import time
from pathlib import Path

import pytest
from ray import cloudpickle

from farm.domain.errors import DuplicateTaskError, QueueFullError, TaskNotFoundError, TaskValidationError
from farm.domain.records import TaskRecord
from farm.render.results import RenderEvent, RenderResult, ResultTimings, result_seeds
from farm.scheduler.manager import TaskManager
from farm.scheduler.store import TaskStore

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s")


class FakeRender:
    """Stands in for ``render_task``: records the order of tasks, writes a small file per result.

    ``gate`` (when set) holds each render until released, and the render honours
    ``should_cancel`` while it waits, like the real driver.
    """

    def __init__(self, gated: bool = False):
        self.order: list[str] = []
        self.seeds: list[int | None] = []
        self.gate = threading.Semaphore(0) if gated else None
        self.started = threading.Event()

    def __call__(self, task, pool, out_dir, *, base_seed=None, on_event=None, should_cancel=None, **_):
        from farm.domain.errors import TaskCancelledError

        self.order.append(task.task_uuid)
        self.seeds.append(base_seed)
        self.started.set()
        if self.gate is not None:
            while not self.gate.acquire(timeout=0.01):
                if should_cancel is not None and should_cancel():
                    raise TaskCancelledError(f"task {task.task_uuid} was cancelled")
        results = []
        for index, seed in enumerate(result_seeds(task, base_seed)):
            if on_event:
                on_event(RenderEvent(stage="chunk", result_index=index, done=1, total=1))
                on_event(RenderEvent(stage="encode", result_index=index, done=task.num_frames, total=task.num_frames))
            path = Path(out_dir) / f"{task.task_uuid}-{index}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"fake")
            results.append(
                RenderResult(
                    index=index,
                    seed=seed,
                    video_uuid=f"video-{task.task_uuid}-{index}",
                    path=path,
                    output_format=task.output_format,
                    num_frames=task.num_frames,
                    width=task.width,
                    height=task.height,
                    fps=32,
                    has_audio=False,
                    chunks=1,
                    timings=ResultTimings(model_s=2.0, audio_s=0.0, encode_s=0.1, wall_s=2.5),
                )
            )
        return results


@dataclasses.dataclass
class FakePool:
    profile: object
    video_workers: tuple = ("w1", "w2")


@pytest.fixture
def fake_manager(tmp_path):
    """A factory of managers on one SQLite file with a fake render and pool."""
    made: list[TaskManager] = []

    def make(render=None, **kwargs):
        manager = TaskManager(
            TaskStore(tmp_path / "tasks.db"),
            pool_factory=FakePool,
            out_dir=tmp_path / "out",
            render=render or FakeRender(),
            **kwargs,
        )
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.stop(timeout=5)


def finished(manager: TaskManager, task_uuid: str, key: str | None = None) -> TaskRecord | None:
    record = manager.get(task_uuid, key)
    return record if record.status in ("success", "error", "cancelled") else None


# -- admission -------------------------------------------------------------------------------


def test_submit_acknowledges_queued_with_position_then_renders_to_success(fake_manager, make_task):
    render = FakeRender()
    manager = fake_manager(render)
    first, second = make_task(seed=41), make_task(numberResults=2)
    ack1 = manager.submit(first, "k")
    ack2 = manager.submit(second, "k")
    assert (ack1.status, ack1.queue_position) == ("queued", 1)
    assert (ack2.status, ack2.queue_position) == ("queued", 2)

    manager.start()
    done = wait_for(lambda: finished(manager, second["taskUUID"], "k"))
    assert done.status == "success" and len(done.results) == 2
    assert all(r.status == "success" and r.progress == 1.0 and r.video_uuid for r in done.results)
    assert manager.get(first["taskUUID"], "k").results[0].seed == 41
    assert manager.result_path(first["taskUUID"], 0).read_bytes() == b"fake"


def test_invalid_task_raises_validation_error_and_is_not_stored(fake_manager, make_task):
    manager = fake_manager()
    bad = make_task(duration=-1)
    with pytest.raises(TaskValidationError):
        manager.submit(bad, None)
    with pytest.raises(TaskNotFoundError):
        manager.get(bad["taskUUID"], None)


def test_duplicate_uuid_identical_body_returns_first_ack_different_body_is_refused(fake_manager, make_task):
    manager = fake_manager()
    task = make_task()
    ack = manager.submit(task, "k")
    again = manager.submit(dict(reversed(list(task.items()))), "k")  # same body, other key order
    assert again.task_uuid == ack.task_uuid and again.created_at == ack.created_at
    with pytest.raises(DuplicateTaskError):
        manager.submit({**task, "positivePrompt": "something else entirely"}, "k")


def test_full_queue_refuses_with_a_retry_delay(fake_manager, make_task):
    manager = fake_manager(max_queue=2)
    first = make_task()
    manager.submit(first, "k")
    manager.submit(make_task(), "k")
    with pytest.raises(QueueFullError) as refused:
        manager.submit(make_task(), "k")
    assert refused.value.retry_after_s > 0
    # A client retrying a submit whose acknowledgement it lost gets the first answer, full or not.
    again = manager.submit(first, "k")
    assert (again.task_uuid, again.queue_position) == (first["taskUUID"], 1)


def test_keys_are_served_round_robin_oldest_first_within_a_key(fake_manager, make_task):
    render = FakeRender()
    manager = fake_manager(render)
    a = [make_task()["taskUUID"] for _ in range(3)]
    b = [make_task()["taskUUID"] for _ in range(2)]
    tasks = {uuid: make_task(taskUUID=uuid) for uuid in a + b}
    # Key A floods the queue first; key B still gets every other slot.
    for uuid in a:
        manager.submit(tasks[uuid], "A")
    for uuid in b:
        manager.submit(tasks[uuid], "B")
    assert manager.get(b[0], "B").queue_position == 2
    manager.start()
    wait_for(lambda: len(render.order) == 5 and finished(manager, render.order[-1], "A"))
    assert render.order == [a[0], b[0], a[1], b[1], a[2]]


def test_a_key_sees_only_its_own_tasks(fake_manager, make_task):
    manager = fake_manager()
    task = make_task()
    manager.submit(task, "alice")
    assert manager.get(task["taskUUID"], "alice").api_key == "alice"
    for other in ("bob", None):
        with pytest.raises(TaskNotFoundError):
            manager.get(task["taskUUID"], other)
        with pytest.raises(TaskNotFoundError):
            manager.cancel(task["taskUUID"], other)


# -- cancel, restart, watch ------------------------------------------------------------------


def test_cancel_a_queued_task_never_renders_it(fake_manager, make_task):
    render = FakeRender(gated=True)
    manager = fake_manager(render)
    blocker, victim = make_task(), make_task()
    manager.submit(blocker, None)
    manager.submit(victim, None)
    manager.start()
    render.started.wait(10)
    record = manager.cancel(victim["taskUUID"], None)
    assert record.status == "cancelled" and record.results[0].status == "cancelled"
    render.gate.release()
    wait_for(lambda: finished(manager, blocker["taskUUID"]))
    assert victim["taskUUID"] not in render.order


def test_cancel_a_running_task_with_the_fake_render(fake_manager, make_task):
    render = FakeRender(gated=True)
    manager = fake_manager(render)
    task = make_task()
    manager.submit(task, None)
    manager.start()
    render.started.wait(10)
    manager.cancel(task["taskUUID"], None)
    record = wait_for(lambda: finished(manager, task["taskUUID"]))
    assert record.status == "cancelled" and record.results[0].error_code == "taskCancelled"


def test_a_task_left_running_by_a_crash_renders_again_with_the_same_seed(fake_manager, make_task, tmp_path):
    first = fake_manager()
    task = make_task(numberResults=2)
    first.submit(task, "k")  # never started: the process "dies" with the task queued
    base_seed = first._store.get_base_seed(task["taskUUID"])
    first._store.update_task_status(task["taskUUID"], "running")

    render = FakeRender()
    second = fake_manager(render)
    second.start()
    record = wait_for(lambda: finished(second, task["taskUUID"], "k"))
    assert record.status == "success"
    assert render.seeds == [base_seed]
    assert [r.seed for r in record.results] == [base_seed, base_seed + 1]


def test_stop_interrupts_the_running_task_and_the_next_start_finishes_it(fake_manager, make_task):
    render = FakeRender(gated=True)
    first = fake_manager(render)
    task = make_task()
    first.submit(task, None)
    first.start()
    render.started.wait(10)
    first.stop(timeout=10)
    assert first.get(task["taskUUID"], None).status == "queued"
    with pytest.raises(QueueFullError):
        first.submit(make_task(), None)

    second = fake_manager()
    second.start()
    assert wait_for(lambda: finished(second, task["taskUUID"])).status == "success"


def test_a_task_whose_model_is_gone_fails_clearly_on_restart(fake_manager, make_task):
    first = fake_manager()
    task = make_task()
    first.submit(task, None)

    def no_models(model_id):
        raise KeyError(f"unknown model {model_id!r}")

    second = fake_manager(profile_lookup=no_models)
    second.start()
    record = wait_for(lambda: finished(second, task["taskUUID"]))
    assert record.status == "error"
    assert "cannot be resumed" in record.results[0].error_message


def test_watch_yields_the_state_then_events_in_order_until_done(fake_manager, make_task):
    render = FakeRender(gated=True)
    manager = fake_manager(render)
    task = make_task()
    manager.submit(task, None)

    async def collect():
        events = []
        async for event in manager.watch(task["taskUUID"], None):
            events.append(event)
            if len(events) == 1:
                manager.start()
                await asyncio.get_running_loop().run_in_executor(None, render.started.wait, 10)
                render.gate.release()
        return events

    events = asyncio.run(asyncio.wait_for(collect(), 30))
    kinds = [e.kind for e in events]
    assert kinds[0] == "queued" and events[0].queue_position == 1
    assert kinds[-1] == "done"
    assert kinds.index("running") < kinds.index("chunks") < kinds.index("encoding") < kinds.index("result")
    # a finished task's watch ends at once with its final state
    assert [e.kind for e in asyncio.run(_all(manager.watch(task["taskUUID"], None)))] == ["done"]


async def _all(iterator):
    return [event async for event in iterator]


def test_cost_and_callbacks(fake_manager, make_task, tmp_path):
    seen = []

    class Artifacts:
        def put(self, video_uuid, source, content_type, ttl_s):
            seen.append(("put", video_uuid, content_type, ttl_s))
            return None

    def on_result(record, task):
        seen.append(("result", record.index))
        return dataclasses.replace(record, video_url=f"http://farm/{record.video_uuid}")

    manager = fake_manager(artifacts=Artifacts(), on_result=on_result, price_per_gpu_second=0.001, gpus_per_worker=1.0)
    task = make_task(includeCost=True, ttl=120)
    manager.submit(task, None)
    manager.start()
    record = wait_for(lambda: finished(manager, task["taskUUID"]))
    result = record.results[0]
    assert result.cost == pytest.approx(0.002)  # 2 model seconds on 1 GPU at $0.001/s
    assert result.video_url == f"http://farm/{result.video_uuid}"
    assert seen == [("put", result.video_uuid, "video/mp4", 120), ("result", 0)]


# -- on a real local Ray -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_pool(ray_cluster):
    from farm.workers.pool import WorkerConfig, WorkerPool
    from models.profiles import get_profile

    pool = WorkerPool(get_profile("skywork:skyreels@v4"), WorkerConfig(video_workers=2, audio_worker=False))
    pool.wait_ready()
    yield pool
    pool.shutdown()


@pytest.fixture
def real_manager(tmp_path, real_pool):
    managers = []

    def make():
        manager = TaskManager(
            TaskStore(tmp_path / "tasks.db"), pool_factory=lambda profile: real_pool, out_dir=tmp_path / "out"
        )
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.stop(timeout=30)


@pytest.mark.slow
def test_real_render_submit_poll_decode_and_cancel_frees_the_workers(real_manager, make_task, tmp_path):
    from tests.media import probe

    manager = real_manager()
    manager.start()
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
    first.start()
    wait_for(lambda: first.get(task["taskUUID"], None).results[0].progress > 0, timeout=120)
    first.stop(timeout=60)
    assert first.get(task["taskUUID"], None).status == "queued"

    second = real_manager()

    async def watch():
        kinds = []
        async for event in second.watch(task["taskUUID"], None):
            kinds.append(event.kind)
            if len(kinds) == 1:
                second.start()
        return kinds

    kinds = asyncio.run(asyncio.wait_for(watch(), 180))
    assert kinds[0] == "queued" and kinds[-1] == "done"
    assert kinds.index("running") < kinds.index("chunks") < kinds.index("result")
    info = probe(second.result_path(task["taskUUID"], 0))
    assert info.frames == 96


def test_metrics_count_tasks_results_chunks_and_queue_depth(fake_manager, make_task):
    from farm.gateway.metrics import FarmMetrics

    metrics = FarmMetrics()
    manager = fake_manager(metrics=metrics)
    kept, dropped = make_task(), make_task()
    manager.submit(kept, None)
    manager.submit(dropped, None)
    assert metrics.queue_depth._value.get() == 2
    manager.cancel(dropped["taskUUID"], None)
    manager.start()
    wait_for(lambda: finished(manager, kept["taskUUID"]))
    body = metrics.exposition()[0].decode()
    assert "farm_tasks_submitted_total 2.0" in body
    assert 'farm_tasks_finished_total{status="success"} 1.0' in body
    assert 'farm_tasks_finished_total{status="cancelled"} 1.0' in body
    assert 'farm_results_finished_total{status="success"} 1.0' in body
    assert "farm_chunk_seconds_count 1.0" in body
    assert metrics.queue_depth._value.get() == 0


@pytest.mark.slow
def test_render_task_should_cancel_stops_workers_and_the_flag_actor_can_be_shut_down(real_pool, make_task, tmp_path):
    import ray

    from farm.domain.errors import TaskCancelledError
    from farm.domain.validation import parse_task
    from farm.scheduler.local import render_task
    from farm.workers.actors import CANCEL_FLAGS_ACTOR, CANCEL_FLAGS_NAMESPACE, shutdown_cancel_flags

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


# -- per-result delivery, partial failure, resume, media ---------------------------------------


class StreamingRender:
    """Like ``render_task``: renders only ``results``, calls ``on_result`` as each is final, then
    returns them all. ``hold_after_first`` keeps the next result rendering until released;
    ``fail`` maps an index to the ``FarmError`` that result fails with on its own."""

    def __init__(self, *, hold_after_first: bool = False, fail: dict | None = None, extended: str | None = None):
        self.calls: list[dict] = []
        self.release = threading.Event()
        self.hold_after_first = hold_after_first
        self.fail = fail or {}
        self.extended = extended

    def __call__(
        self,
        task,
        pool,
        out_dir,
        *,
        base_seed=None,
        on_event=None,
        should_cancel=None,
        results=None,
        on_result=None,
        resolver=None,
        **_,
    ):
        self.calls.append({"results": results, "resolver": resolver, "base_seed": base_seed})
        seeds = result_seeds(task, base_seed)
        rendered = []
        for n, index in enumerate(range(task.number_results) if results is None else results):
            if n > 0 and self.hold_after_first:
                assert self.release.wait(30), "the test never released the second result"
            error = self.fail.get(index)
            path = None
            if error is None:
                path = Path(out_dir) / f"{task.task_uuid}-{index}.mp4"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"fake")
            result = RenderResult(
                index=index,
                seed=seeds[index],
                video_uuid=f"video-{task.task_uuid}-{index}",
                path=path,
                output_format=task.output_format,
                num_frames=task.num_frames,
                width=task.width,
                height=task.height,
                fps=32,
                has_audio=False,
                chunks=1,
                extended_prompt=self.extended,
                timings=ResultTimings(model_s=1.0, audio_s=0.0, encode_s=0.1, wall_s=1.5),
                error=error,
            )
            if on_result is not None:
                on_result(result)
            rendered.append(result)
        return rendered


class RecordingArtifacts:
    def __init__(self):
        self.put_uuids: list[str] = []

    def put(self, video_uuid, source, content_type, ttl_s):
        self.put_uuids.append(video_uuid)


def test_each_result_is_delivered_as_it_completes_and_only_once(fake_manager, make_task):
    render = StreamingRender(hold_after_first=True)
    hooks = []
    artifacts = RecordingArtifacts()
    manager = fake_manager(render, artifacts=artifacts, on_result=lambda record, task: hooks.append(record.index))
    task = make_task(numberResults=2)
    manager.submit(task, None)
    manager.start()
    # Result 0 is stored and handed to the hook while result 1 is still rendering.
    record = wait_for(lambda: (r := manager.get(task["taskUUID"], None)).results[0].status == "success" and r)
    assert record.status == "running"
    assert record.results[1].status == "running"
    assert hooks == [0] and artifacts.put_uuids == [f"video-{task['taskUUID']}-0"]
    render.release.set()
    done = wait_for(lambda: finished(manager, task["taskUUID"]))
    assert done.status == "success"
    # render_task's returned list repeats both results: neither is delivered a second time.
    assert hooks == [0, 1]
    assert len(artifacts.put_uuids) == 2


def test_a_result_failing_on_its_own_is_an_error_while_the_other_succeeds(fake_manager, make_task):
    from farm.domain.errors import SafetyError
    from farm.gateway.wire import task_answer

    hooks = []
    artifacts = RecordingArtifacts()
    render = StreamingRender(fail={1: SafetyError("result 1 was flagged by the safety checker")})
    manager = fake_manager(render, artifacts=artifacts, on_result=lambda record, task: hooks.append(record))
    task = make_task(numberResults=2)
    manager.submit(task, None)
    manager.start()
    record = wait_for(lambda: finished(manager, task["taskUUID"]))
    # At least one result delivered: the task succeeded; the flagged result carries its own error.
    assert record.status == "success"
    ok, flagged = record.results
    assert ok.status == "success" and ok.video_uuid
    assert (flagged.status, flagged.error_code, flagged.video_uuid) == ("error", "safety", None)
    assert "flagged" in flagged.error_message
    assert artifacts.put_uuids == [ok.video_uuid]  # nothing stored for the flagged result
    assert [(r.index, r.status) for r in hooks] == [(0, "success"), (1, "error")]
    data, errors = task_answer(record)
    assert [item["status"] for item in data] == ["success", "error"]
    assert [(e["code"], e["taskUUID"]) for e in errors] == [("safety", task["taskUUID"])]


def test_a_task_whose_every_result_failed_is_an_error(fake_manager, make_task):
    from farm.domain.errors import SafetyError

    render = StreamingRender(fail={0: SafetyError("flagged"), 1: SafetyError("flagged too")})
    manager = fake_manager(render)
    task = make_task(numberResults=2)
    manager.submit(task, None)
    manager.start()
    record = wait_for(lambda: finished(manager, task["taskUUID"]))
    assert record.status == "error"
    assert {r.error_code for r in record.results} == {"safety"}


def test_resume_renders_only_the_results_not_yet_finished(fake_manager, make_task, tmp_path):
    task = make_task(numberResults=2, seed=100)
    first = fake_manager()
    first.submit(task, "k")
    # As a crash leaves it: result 0 delivered, result 1 mid-render, the task running.
    store = TaskStore(tmp_path / "tasks.db")
    stored = store.get_task(task["taskUUID"])
    store.upsert_result(dataclasses.replace(stored.results[0], status="success", video_uuid="v-kept", progress=1.0))
    store.upsert_result(dataclasses.replace(stored.results[1], status="running", progress=0.4))
    store.update_task_status(task["taskUUID"], "running")

    render = StreamingRender()
    hooks = []
    manager = fake_manager(render, on_result=lambda record, task: hooks.append(record.index))
    manager.start()
    record = wait_for(lambda: finished(manager, task["taskUUID"], "k"))
    assert [call["results"] for call in render.calls] == [[1]]
    assert hooks == [1]
    assert record.status == "success"
    assert record.results[0].video_uuid == "v-kept"
    assert (record.results[1].status, record.results[1].seed) == ("success", 101)


def test_extended_prompt_is_stored_with_the_result_and_answered(fake_manager, make_task):
    from farm.gateway.wire import task_answer

    manager = fake_manager(StreamingRender(extended="A lighthouse on a cliff at dusk, in golden light"))
    task = make_task()
    manager.submit(task, None)
    manager.start()
    record = wait_for(lambda: finished(manager, task["taskUUID"]))
    assert record.results[0].extended_prompt == "A lighthouse on a cliff at dusk, in golden light"
    data, _ = task_answer(record)
    assert data[0]["extendedPrompt"] == "A lighthouse on a cliff at dusk, in golden light"


def test_bad_media_fails_the_task_naming_the_field_and_resolves_as_the_owner(fake_manager, make_task, tmp_path):
    from farm.domain.errors import Violation
    from farm.gateway.wire import task_answer
    from farm.io.urlguard import UrlGuard

    def render(task, pool, out_dir, *, resolver=None, **_):
        seen.append(resolver)
        raise TaskValidationError([Violation(field="inputs.frameImages[0].image", message="image does not decode")])

    seen = []
    guard = UrlGuard(["127.0.0.1"])
    manager = fake_manager(render, url_guard=guard, assets_dir=tmp_path / "assets")
    task = make_task()
    manager.submit(task, "alice")
    manager.start()
    record = wait_for(lambda: finished(manager, task["taskUUID"], "alice"))
    assert record.status == "error"
    (resolver,) = seen
    assert (resolver.guard, resolver.api_key, resolver.assets_dir) == (guard, "alice", tmp_path / "assets")
    _, errors = task_answer(record)
    assert [(e["code"], e["parameter"]) for e in errors] == [("invalidParameter", "inputs.frameImages[0].image")]
    assert "does not decode" in errors[0]["message"]
