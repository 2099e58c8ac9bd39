"""``SchedulerCore`` with the in-memory ``FakeExecutor``: every rule of the loop, no Ray, no threads.

Each test drives the loop by hand (``core.step(0)``: scale, dispatch, poll one simulated tick,
handle) and reads what the fake executor saw: which unit ran on which worker, from which tick to
which. The fake also checks the scheduler never breaks the executor's contract (a unit on a busy
or dead worker, a chunk handed to a finisher twice, ...); every test ends with that check.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from farm.domain.errors import TaskValidationError, Violation
from farm.domain.planner import plan_clip
from farm.scheduler.core import SchedulerConfig, SchedulerCore
from farm.scheduler.events import SchedulerEvent, TaskSnapshot, TaskSpec
from farm.scheduler.pools import PoolPolicy
from farm.scheduler.queue import TenantPolicy
from tests.farm.scheduler.fakes import MODEL, FakeClock, FakeExecutor, Frames, fake_profile

#: A 3 s task at 32 fps on the tiny windows: 96 frames in 8 chunks.
PLAN = plan_clip(96, window_frames=17, overlap_frames=5, temporal_stride=4)
CHUNKS = len(PLAN.chunks)
VIDEO = f"video:{MODEL}"
AUDIO = f"audio:{MODEL}"


@dataclass
class Farm:
    core: SchedulerCore
    executor: FakeExecutor
    clock: FakeClock
    out: Path

    def submit(self, raw: dict, *, key: str | None = None, priority: int = 0, results=None, seed: int = 100) -> str:
        count = raw.get("numberResults", 1)
        spec = TaskSpec(
            task_uuid=raw["taskUUID"],
            body=raw,
            api_key=key,
            seeds=tuple(seed + i for i in range(count)),
            results=tuple(range(count)) if results is None else tuple(results),
            out_dir=str(self.out),
            priority=priority,
        )
        assert self.core.hand_over(spec)
        return raw["taskUUID"]

    def run(self, until=None, max_steps: int = 5000) -> None:
        """Step until ``until()`` (default: until no task is left unfinished)."""
        done = until or (lambda: not self.core.pending_work())
        for _ in range(max_steps):
            if done():
                return
            self.core.step(0)
        raise AssertionError(f"not done after {max_steps} steps")

    def events(self, task_uuid: str | None = None, kind: str | None = None) -> list[SchedulerEvent]:
        events = self.core.events(0, limit=1_000_000).events
        return [e for e in events if task_uuid in (None, e.task_uuid) and kind in (None, e.kind)]

    def task(self, task_uuid: str) -> TaskSnapshot:
        return next(t for t in self.core.snapshot().tasks if t.task_uuid == task_uuid)

    def outcome(self, task_uuid: str, index: int = 0):
        return next(r.outcome for r in self.task(task_uuid).results if r.index == index)


@pytest.fixture
def farm(tmp_path):
    """A factory of cores over fake executors; checks afterwards that none broke the contract."""
    executors: list[FakeExecutor] = []

    def make(executor: FakeExecutor | None = None, *, profiles=None, clock=None, **config) -> Farm:
        executor = executor or FakeExecutor()
        clock = clock or FakeClock()
        config.setdefault("stats_interval_s", 1e9)
        core = SchedulerCore(executor, profiles or {MODEL: fake_profile()}, SchedulerConfig(**config), clock=clock)
        executors.append(executor)
        return Farm(core, executor, clock, tmp_path / "out")

    yield make
    for executor in executors:
        executor.check()


@pytest.fixture
def task(make_task):
    """A 3 s task without audio (keyword arguments override fields)."""

    def make(**overrides):
        overrides.setdefault("settings", {"audio": False})
        return make_task(**overrides)

    return make


def pool(workers: int, minimum: int = 0, **fields) -> PoolPolicy:
    return PoolPolicy(min_workers=minimum, max_workers=workers, **fields)


# -- concurrency, fair share, priority -----------------------------------------------------------


def test_two_tasks_render_concurrently_on_three_workers(farm, task):
    f = farm(FakeExecutor(ticks={"chunk": 3}), default_pool=pool(3))
    first = f.submit(task())
    f.run(lambda: len(f.executor.units("chunk", first)) >= 3)
    second = f.submit(task())
    f.run()

    assert f.task(first).status == f.task(second).status == "success"
    assert len({c.worker for c in f.executor.units()}) == 3
    a, b = f.executor.units("chunk", first), f.executor.units("chunk", second)
    # The second task's chunks run while the first one's last chunks do: it never waits for the tail.
    assert min(c.started for c in b) < max(c.ended for c in a)
    assert any(x.overlaps(y) for x in a for y in b)


def test_a_new_task_of_another_key_starts_on_the_first_free_worker(farm, task):
    f = farm(FakeExecutor(ticks={"chunk": 3}), default_pool=pool(3))
    first = f.submit(task(numberResults=2), key="a")
    f.run(lambda: len(f.executor.units("chunk", first)) >= 3)
    arrived = f.executor.tick
    second = f.submit(task(), key="b")
    f.run()

    freed = min(c.ended for c in f.executor.units(task_uuid=first) if c.ended > arrived)
    (prompt,) = f.executor.units("prompt", second)
    assert prompt.started == freed, "the second key's task took the first worker that came free"
    later_of_first = [c for c in f.executor.units("chunk", first) if c.started >= freed]
    assert later_of_first, "the first task still had chunks queued when the second arrived"


def test_fair_share_across_keys_follows_the_weights_under_backlog(farm, task):
    f = farm(
        default_pool=pool(2),
        tenants={"heavy": TenantPolicy(weight=3.0), "light": TenantPolicy(weight=1.0)},
    )
    owner = {}
    for _ in range(30):
        owner[f.submit(task(), key="heavy")] = "heavy"
    for _ in range(12):
        owner[f.submit(task(), key="light")] = "light"
    f.run(lambda: len(f.executor.units("chunk")) >= 240)

    served = Counter(owner[c.task_uuid] for c in f.executor.units("chunk")[:240])
    assert 0.70 <= served["heavy"] / 240 <= 0.80, served
    # Within a key, tasks start oldest first.
    started = [t for t in f.executor.started_tasks() if owner[t] == "heavy"]
    assert started == [t for t in owner if owner[t] == "heavy"][: len(started)]


def test_a_keys_concurrency_limit_leaves_the_other_workers_to_other_keys(farm, task):
    f = farm(
        FakeExecutor(ticks={"chunk": 2}), default_pool=pool(3), tenants={"capped": TenantPolicy(max_concurrency=1)}
    )
    capped = f.submit(task(), key="capped")
    other = f.submit(task(), key="other")
    f.run()
    mine, theirs = f.executor.units(task_uuid=capped), f.executor.units(task_uuid=other)
    assert all(not x.overlaps(y) for x in mine for y in mine if x is not y), "one unit at a time"
    assert any(x.overlaps(y) for x in theirs for y in theirs if x is not y), "the other key used the rest"


def test_priority_goes_first_within_a_key(farm, task):
    f = farm(FakeExecutor(auto_ready=False), default_pool=pool(1))
    low = f.submit(task(), key="k")
    high = f.submit(task(), key="k", priority=5)
    f.core.step(0)
    f.executor.make_ready()
    f.run()
    assert f.executor.started_tasks() == [high, low]
    calls = f.executor.units()
    last_of_high = max(i for i, c in enumerate(calls) if c.task_uuid == high)
    first_of_low = min(i for i, c in enumerate(calls) if c.task_uuid == low)
    assert last_of_high < first_of_low, "on one worker, every unit of the urgent task ran first"


# -- sequential results ------------------------------------------------------------------------


def test_sequential_chunks_wait_for_their_predecessor_and_carry_its_frames_as_the_tail(farm, task):
    f = farm(default_pool=pool(3))
    uuid = f.submit(task(numberResults=2, settings={"audio": False, "chunkMode": "sequential"}))
    f.run()
    assert f.task(uuid).status == "success"
    for result in (0, 1):
        chunks = [c for c in f.executor.units("chunk", uuid) if c.result_index == result]
        assert [c.chunk_index for c in chunks] == list(range(CHUNKS))
        assert chunks[0].tail is None and chunks[0].work.tail_start is None
        for before, after in zip(chunks, chunks[1:]):
            assert after.started >= before.ended
            assert after.tail == Frames(uuid, result, before.chunk_index, 1)
            assert after.work.tail_start == PLAN.chunks[before.chunk_index].start
    # The two results' chains run side by side.
    zero, one = ([c for c in f.executor.units("chunk", uuid) if c.result_index == r] for r in (0, 1))
    assert any(x.overlaps(y) for x in zero for y in one)


# -- failures, retries, worker health ----------------------------------------------------------


def test_a_failing_chunk_is_retried_on_another_worker(farm, task):
    f = farm(default_pool=pool(3))
    uuid = f.submit(task())
    f.executor.fail(lambda c: c.chunk_index == 2)
    f.run()
    assert f.task(uuid).status == "success"
    tries = [c for c in f.executor.units("chunk", uuid) if c.chunk_index == 2]
    assert [c.outcome for c in tries] == ["failed", "done"]
    assert tries[0].worker != tries[1].worker
    assert f.task(uuid).chunk_renders == CHUNKS + 1


def test_a_chunk_failing_every_attempt_fails_its_result_naming_the_chunk_and_the_cause(farm, task):
    f = farm(default_pool=pool(3), max_attempts=3)
    uuid = f.submit(task(numberResults=2))
    f.executor.fail(
        lambda c: (c.result_index, c.chunk_index) == (0, 2), times=None, error=RuntimeError("CUDA out of memory")
    )
    f.run()

    failed, ok = f.outcome(uuid, 0), f.outcome(uuid, 1)
    assert failed.status == "error" and failed.error_code == "renderFailed"
    assert "chunk 2 of result 0" in failed.error_message
    assert "failed 3 time(s)" in failed.error_message
    assert "RuntimeError: CUDA out of memory" in failed.error_message
    assert ok.status == "success" and Path(ok.path).is_file()
    assert f.task(uuid).status == "success"  # one result delivered
    tries = [c for c in f.executor.units("chunk", uuid) if (c.result_index, c.chunk_index) == (0, 2)]
    assert len(tries) == 3 and len({c.worker for c in tries}) == 3
    assert (uuid, 0) in f.executor.aborted
    assert not Path(f.out, f"{uuid}-0.mp4").exists()


def test_a_worker_whose_units_always_fail_is_retired_and_replaced_and_the_task_finishes(farm, task):
    f = farm(default_pool=pool(3))  # the defaults: retired after 3 failures in a row, 3 attempts a unit
    f.executor.fail(lambda c: c.worker == "video-1", times=None, error=RuntimeError("bad GPU"))
    uuid = f.submit(task(numberResults=2))
    f.run()

    assert f.task(uuid).status == "success"
    assert all(r.status == "success" for r in f.task(uuid).results)
    assert f.executor.stopped == ["video-1"]
    assert f.executor.dispatches["video-1"] == 3
    assert len(f.executor.started_workers) == 4, "a replacement was started"
    assert f.core.stats()["pools"][VIDEO]["replacements"] == 1


def test_a_lost_workers_unit_is_requeued_and_its_key_refunded(farm, task):
    def usage(f: Farm) -> float:
        return f.core._queue._tenant("k").usage  # what the fair share charged the key

    lossy, clean = farm(default_pool=pool(3)), farm(default_pool=pool(3))
    lossy.executor.lose(lambda c: c.chunk_index == 3)
    for f in (lossy, clean):
        f.submit(task(), key="k")
        f.run()

    (uuid,) = lossy.executor.started_tasks()
    assert lossy.task(uuid).status == "success"
    tries = [c for c in lossy.executor.units("chunk", uuid) if c.chunk_index == 3]
    assert [c.outcome for c in tries] == ["lost", "done"]
    assert lossy.task(uuid).chunk_renders == CHUNKS + 1
    assert tries[0].worker in lossy.executor.dead and tries[0].worker not in lossy.executor.stopped
    assert tries[0].worker not in lossy.core.workers(VIDEO)
    assert usage(lossy) == pytest.approx(usage(clean)), "the lost render was not charged"


def test_a_retry_does_not_wait_for_a_worker_that_cannot_be_placed(farm, task):
    f = farm(default_pool=pool(2))
    f.executor.unplaceable.add("video-2")  # pending forever: no GPU for it
    f.executor.fail(lambda c: c.chunk_index == 0)
    uuid = f.submit(task())
    f.run(max_steps=200)
    assert f.task(uuid).status == "success"
    assert {c.worker for c in f.executor.units()} == {"video-1"}


def test_a_pool_out_of_replacements_fails_the_tasks_waiting_on_it(farm, task):
    f = farm(default_pool=pool(1), max_replacements=2, max_attempts=10)
    f.executor.lose(lambda c: True, times=None)
    uuid = f.submit(task())
    f.run(max_steps=200)
    (event,) = f.events(uuid, "failed")
    assert event.code == "workerLost" and "no worker left in video:" in event.message
    assert f.task(uuid).status == "error" and len(f.executor.started_workers) == 2


def test_a_worker_lost_while_its_task_is_cancelled_still_ends_the_task(farm, task):
    f = farm(FakeExecutor(stop_on_cancel=False), default_pool=pool(2))
    f.executor.hold(lambda c: c.kind == "chunk")
    uuid = f.submit(task())
    f.run(lambda: len(f.executor.held()) == 2)
    f.core.cancel(uuid)
    first, second = f.executor.held()
    f.executor.kill_worker(first.worker)
    f.core.step(0)
    assert f.core.ended(uuid) is None
    f.executor.release()
    f.run()
    assert f.core.ended(uuid) == "cancelled"
    assert first.outcome == "lost" and second.outcome == "cancelled"


def test_a_task_that_ended_with_units_in_flight_releases_its_cancel_token_once_they_return(farm, task):
    f = farm(FakeExecutor(ticks={"chunk": 3}), default_pool=pool(3))
    uuid = f.submit(task(safety={"checkContent": True}))
    f.executor.flag(lambda c: c.chunk_index == 0)  # chunks 1 and 2 are still rendering then
    f.run()
    assert f.task(uuid).status == "error"
    token = f.executor.units("chunk")[0].token
    assert f.executor.cancelled == [token], "the chunks still in flight were told to stop"
    f.core.forget(uuid)  # the gateway stored the end at once
    f.run(lambda: all(c.ended is not None for c in f.executor.units()))
    assert f.executor.forgotten == [token], "and the token is forgotten once they returned"
    f.core.forget(uuid)
    assert f.core.snapshot().tasks == ()


def test_a_worker_dying_while_idle_is_replaced(farm, task):
    f = farm(default_pool=pool(1, minimum=1))
    f.core.warm_up()
    f.run(lambda: f.executor.tick >= 2)
    f.executor.kill_worker("video-1")
    f.core.step(0)
    uuid = f.submit(task())
    f.run()
    assert f.task(uuid).status == "success"
    assert f.core.workers(VIDEO) == ["video-2"]


def test_a_unit_sent_to_a_worker_that_died_unnoticed_is_rendered_elsewhere(farm, task):
    f = farm(default_pool=pool(2, minimum=2))
    f.core.warm_up()
    f.run(lambda: f.executor.tick >= 2)
    f.executor.kill_worker("video-1")  # the scheduler hears of it only from the next call
    uuid = f.submit(task())
    f.run()
    assert f.task(uuid).status == "success"
    (lost,) = [c for c in f.executor.units() if c.outcome == "lost"]
    assert lost.worker == "video-1" and lost.kind == "prompt"
    assert "video-1" not in f.core.workers(VIDEO) and len(f.executor.started_workers) == 3


def test_a_safety_flag_ends_only_its_result(farm, task):
    f = farm(default_pool=pool(3))
    uuid = f.submit(task(numberResults=2, safety={"checkContent": True}))
    f.executor.flag(lambda c: (c.result_index, c.chunk_index) == (1, 4), concept="gore", frame=2)
    f.run()

    ok, flagged = f.outcome(uuid, 0), f.outcome(uuid, 1)
    assert ok.status == "success" and Path(ok.path).is_file()
    assert (flagged.status, flagged.error_code) == ("error", "safety")
    assert "gore" in flagged.error_message and f"near frame {PLAN.chunks[4].start + 2}" in flagged.error_message
    assert (uuid, 1) in f.executor.aborted
    assert not Path(f.out, f"{uuid}-1.mp4").exists()
    assert f.task(uuid).status == "success"
    assert {c.work.safety_mode for c in f.executor.units("chunk")} == {"fast"}


def test_an_encode_failure_fails_the_result_naming_the_cause(farm, task):
    f = farm(default_pool=pool(2))
    raw = task()
    f.executor.encode_errors[(raw["taskUUID"], 0)] = OSError("disk full")
    uuid = f.submit(raw)
    f.run()
    outcome = f.outcome(uuid)
    assert outcome.status == "error" and "failed while encoding: OSError: disk full" in outcome.error_message
    assert f.task(uuid).status == "error"


# -- cancel --------------------------------------------------------------------------------------


def test_cancel_a_queued_task_never_dispatches_it(farm, task):
    f = farm(FakeExecutor(auto_ready=False), default_pool=pool(2))
    kept, victim = f.submit(task()), f.submit(task())
    f.core.step(0)
    assert f.core.cancel(victim)
    assert f.core.ended(victim) == "cancelled"
    (event,) = f.events(victim, "cancelled")
    assert (event.code, event.message) == ("taskCancelled", "cancelled while queued")
    assert not f.core.cancel(victim), "an ended task cannot be cancelled again"
    f.executor.make_ready()
    f.run()
    assert f.executor.started_tasks() == [kept]
    assert f.task(kept).status == "success"


def test_cancel_a_running_task_ends_it_once_its_units_return(farm, task):
    f = farm(FakeExecutor(stop_on_cancel=False), default_pool=pool(3))
    f.executor.hold(lambda c: c.kind == "chunk")
    uuid = f.submit(task(numberResults=2))
    f.run(lambda: len(f.executor.held()) == 3)
    assert f.core.cancel(uuid)

    for _ in range(5):
        f.core.step(0)
    assert f.core.ended(uuid) is None, "in-flight chunks are still running"
    assert len(f.executor.units("chunk")) == 3, "nothing else was dispatched"
    assert f.executor.cancelled and f.executor.cancelled[-1].startswith(uuid)

    f.executor.release()
    f.run()
    assert f.core.ended(uuid) == "cancelled"
    snapshot = f.task(uuid)
    assert snapshot.status == "cancelled" and snapshot.message == "cancelled while running"
    assert {r.status for r in snapshot.results} == {"cancelled"}
    assert sorted(f.executor.aborted) == [(uuid, 0), (uuid, 1)]
    assert not f.events(uuid, "result") and not f.events(uuid, "done")
    assert f.executor.forgotten == [f.executor.cancelled[-1]]
    assert not list(f.out.glob(f"{uuid}*"))


# -- elastic pools -------------------------------------------------------------------------------


def test_pools_grow_with_demand_up_to_max_workers_and_shrink_to_min_after_the_idle_timeout(farm, task):
    clock = FakeClock()
    f = farm(clock=clock, default_pool=pool(3, minimum=1, idle_timeout_s=300))
    assert f.executor.started_workers == []
    for _ in range(2):
        f.submit(task())
    f.core.step(0)
    assert len(f.executor.started_workers) == 3, "demand of 2 tasks x 8 chunks: the pool's maximum"
    f.run()
    assert len(f.executor.started_workers) == 3

    clock.advance(299)
    f.core.step(0)
    assert f.executor.stopped == []
    clock.advance(2)
    f.core.step(0)
    assert len(f.executor.stopped) == 2
    assert f.executor.live_workers("video") == sorted(f.core.workers(VIDEO)) and len(f.core.workers(VIDEO)) == 1
    clock.advance(3600)
    f.core.step(0)
    assert len(f.core.workers(VIDEO)) == 1, "never below min_workers"


def test_an_unused_model_shrinks_to_zero_and_grows_again_on_demand(farm, task):
    clock = FakeClock()
    f = farm(clock=clock, default_pool=pool(2, idle_timeout_s=60))
    f.submit(task())
    f.run()
    clock.advance(61)
    f.core.step(0)
    assert f.core.workers(VIDEO) == [] and len(f.executor.stopped) == 2
    second = f.submit(task())
    f.run()
    assert f.task(second).status == "success" and len(f.executor.started_workers) == 4


def test_warm_up_starts_min_workers_before_any_task(farm):
    f = farm(pools={MODEL: pool(4, minimum=2)})
    f.core.warm_up()
    assert len(f.executor.started_workers) == 2
    f.run(lambda: f.executor.tick >= 1)
    assert f.core.stats()["pools"][VIDEO]["idle"] == 2


def test_an_audio_worker_starts_only_when_a_result_wants_audio(farm, task):
    f = farm(default_pool=pool(2))
    silent = f.submit(task())
    f.run()
    assert f.executor.live_workers("audio") == [] and AUDIO not in f.core.stats()["pools"]

    loud = f.submit(task(numberResults=2, settings={"audio": True}))
    f.run()
    assert len(f.executor.live_workers("audio")) == 1, "one audio worker (the pool's maximum) for both results"
    audio = f.executor.units("audio", loud)
    assert [c.result_index for c in audio] == [0, 1] and audio[0].work.duration_s == 3.0
    assert f.executor.results[(loud, 0)].audio == (f"audio:{loud}", f.executor.sample_rate)
    assert f.outcome(loud).has_audio and not f.outcome(silent).has_audio
    assert [e.result_index for e in f.events(loud, "audio")] == [0, 1]


# -- admission and inputs ------------------------------------------------------------------------


def test_a_repeated_hand_over_is_refused(farm, task):
    f = farm()
    raw = task()
    f.submit(raw)
    spec = TaskSpec(task_uuid=raw["taskUUID"], body=raw, api_key=None, seeds=(1,), results=(0,), out_dir=str(f.out))
    assert not f.core.hand_over(spec)


def test_a_task_for_a_model_not_served_fails_clearly(farm, task):
    f = farm()
    uuid = f.submit(task(model="other:model@v1"))
    (event,) = f.events(uuid, "failed")
    assert "other:model@v1" in event.message
    assert f.task(uuid).status == "error" and f.core.ended(uuid) == "error"


def test_bad_media_fails_the_task_naming_the_field_before_any_unit_runs(farm, task):
    f = farm()
    f.executor.prepare_error = TaskValidationError(
        [Violation(field="inputs.frameImages[0].image", message="image does not decode")]
    )
    raw = task(inputs={"frameImages": [{"image": "https://example.com/a.png", "frame": "first"}]})
    uuid = f.submit(raw, key="alice")
    f.run()
    (event,) = f.events(uuid, "failed")
    assert (event.code, event.parameter) == ("invalidParameter", "inputs.frameImages[0].image")
    assert "does not decode" in event.message
    assert f.executor.units() == [] and f.task(uuid).status == "error"
    ((parsed, profile, media),) = f.executor.prepared
    assert parsed.task_uuid == uuid and profile.model_id == MODEL


def test_media_inputs_on_a_text_only_profile_fail_naming_the_field(farm, task):
    f = farm(profiles={MODEL: fake_profile(conditioning=False)})
    uuid = f.submit(task(inputs={"frameImages": [{"image": "https://example.com/a.png", "frame": "first"}]}))
    f.run()
    (event,) = f.events(uuid, "failed")
    assert event.parameter == "inputs.frameImages" and "text-to-video only" in event.message


def test_the_conditioning_reaches_every_chunk(farm, task):
    f = farm()
    uuid = f.submit(task(inputs={"frameImages": [{"image": "https://example.com/a.png", "frame": "first"}]}))
    f.run()
    assert f.task(uuid).status == "success"
    assert {c.conditioning for c in f.executor.units("chunk")} == {"conditioning"}
    assert {c.prompt for c in f.executor.units("chunk")} == {f"embeds:{uuid}"}


def test_a_resumed_task_renders_only_the_results_asked_for_with_their_seeds(farm, task):
    f = farm()
    uuid = f.submit(task(numberResults=3), results=(2,), seed=500)
    f.run()
    assert {c.result_index for c in f.executor.units("chunk")} == {2}
    assert {c.work.seed for c in f.executor.units("chunk")} == {502}
    assert [r.index for r in f.task(uuid).results] == [2]
    assert f.outcome(uuid, 2).seed == 502


# -- events and snapshots ------------------------------------------------------------------------


def test_events_come_in_order_and_a_reader_resumes_from_its_cursor(farm, task):
    f = farm(default_pool=pool(2))
    uuid = f.submit(task())
    f.run()
    events = f.events()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    mine = [e.kind for e in events if e.task_uuid == uuid]
    assert mine[0] == "running" and mine[-2:] == ["result", "done"]
    assert [e.done for e in f.events(uuid, "chunk")] == list(range(1, CHUNKS + 1))
    assert mine.index("encode") < mine.index("result")
    (done,) = f.events(uuid, "done")
    assert done.data == {"status": "success", "succeeded": 1, "failed": 0}

    cursor = events[4].seq
    assert f.core.events(cursor).events == tuple(events[5:])
    assert f.core.events(events[-1].seq).events == ()
    batch = f.core.events(events[-1].seq, timeout=0.01)
    assert batch.events == () and not batch.resync and batch.epoch == f.core.epoch


def test_a_reader_that_fell_behind_the_kept_log_is_told_to_resync(farm, task):
    f = farm(event_log=5)
    f.submit(task())
    f.run()
    assert f.core.events(0).resync
    latest = f.core.snapshot().seq
    assert not f.core.events(latest - 2).resync and len(f.core.events(latest - 2).events) == 2


def test_positions_follow_the_fair_share_of_the_tasks_not_started(farm, task):
    f = farm(FakeExecutor(auto_ready=False), default_pool=pool(1))
    a1, a2 = f.submit(task(), key="a"), f.submit(task(), key="a")
    b1 = f.submit(task(), key="b")
    anon = f.submit(task())
    f.core.step(0)
    (event,) = f.events(kind="positions")
    assert event.data == {a1: 1, b1: 2, anon: 3, a2: 4}
    assert {t.task_uuid: t.position for t in f.core.snapshot().tasks} == event.data


def test_positions_events_carry_only_changes_and_come_at_most_every_interval(farm, task):
    clock = FakeClock()
    f = farm(FakeExecutor(auto_ready=False), clock=clock, default_pool=pool(1), positions_interval_s=0.25)
    first = f.submit(task())
    f.core.step(0)
    assert [e.data for e in f.events(kind="positions")] == [{first: 1}]
    second = f.submit(task())
    f.core.step(0)
    assert len(f.events(kind="positions")) == 1, "a second event within the interval"
    clock.advance(0.3)
    f.core.step(0)
    assert f.events(kind="positions")[-1].data == {second: 2}, "only what changed"
    f.executor.make_ready()
    f.run(lambda: f.task(first).status == "running")
    clock.advance(0.3)
    f.run(lambda: f.events(kind="positions")[-1].data.get(first, 0) is None)
    assert f.events(kind="positions")[-1].data == {first: None, second: 1}
    # A reader starting from a snapshot has every position; the events after it are changes to them.
    assert {t.task_uuid: t.position for t in f.core.snapshot().tasks} == {first: None, second: 1}


def test_a_batch_of_hand_overs_is_taken_in_order_and_repeats_are_refused(farm, task):
    f = farm(FakeExecutor(auto_ready=False), default_pool=pool(1))
    raws = [task(), task()]
    specs = [
        TaskSpec(task_uuid=r["taskUUID"], body=r, api_key="k", seeds=(7,), results=(0,), out_dir=str(f.out))
        for r in raws
    ]
    assert f.core.hand_over_many([specs[0], specs[1], specs[0]]) == [True, True, False]
    f.core.step(0)
    (event,) = f.events(kind="positions")
    assert event.data == {raws[0]["taskUUID"]: 1, raws[1]["taskUUID"]: 2}


def test_snapshot_reports_status_progress_and_chunk_renders(farm, task):
    f = farm(FakeExecutor(stop_on_cancel=False), default_pool=pool(2))
    f.executor.fail(lambda c: c.chunk_index == 0)
    f.executor.hold(lambda c: c.chunk_index == CHUNKS - 1)
    uuid = f.submit(task())
    f.run(lambda: f.executor.held())
    running = f.task(uuid)
    assert running.status == "running" and running.position is None
    assert running.results[0].chunks_total == CHUNKS and running.results[0].chunks_done < CHUNKS
    f.executor.release()
    f.run()
    done = f.task(uuid)
    assert done.status == "success" and done.chunk_renders == CHUNKS + 1
    assert done.results[0].chunks_done == CHUNKS and done.results[0].outcome.chunks == CHUNKS
    f.core.forget(uuid)
    assert f.core.snapshot().tasks == ()


def test_denoising_steps_are_reported_per_result(farm, task):
    f = farm(FakeExecutor(ticks={"chunk": 3}, report_steps=True), default_pool=pool(2))
    uuid = f.submit(task())
    f.run()
    steps = f.events(uuid, "denoise")
    assert steps and all(e.total == CHUNKS * 4 for e in steps)
    assert [e.done for e in steps] == sorted({e.done for e in steps}), "each event says more than the last"
    assert 0 < steps[-1].done <= CHUNKS * 4


def test_scheduling_overhead_per_dispatch(farm, task):
    f = farm(default_pool=pool(8), tenants={"a": TenantPolicy(weight=2.0)})
    for i in range(40):
        f.submit(task(numberResults=2), key="abcd"[i % 4])
    f.run()
    per_dispatch_ms = 1000 * f.core.dispatch_seconds / f.core.dispatches
    print(f"\nscheduling overhead: {per_dispatch_ms:.3f} ms per dispatch over {f.core.dispatches} dispatches")
    assert f.core.dispatches == len(f.executor.units())


def test_codenoise_is_refused_on_a_profile_with_a_step_cache(farm, task):
    """Co-denoised windows would share First Block Cache's state: refused up front, naming the field."""
    import dataclasses

    cached = dataclasses.replace(fake_profile(), extra={"speed": {"first_block_cache": 0.05}})
    f = farm(default_pool=pool(2), profiles={MODEL: cached})
    uuid = f.submit(task(settings={"audio": False, "chunkMode": "codenoise"}))
    f.run()
    snapshot = f.task(uuid)
    assert (snapshot.status, snapshot.code, snapshot.parameter) == ("error", "invalidParameter", "settings.chunkMode")
    assert "first_block_cache" in snapshot.message
    assert f.executor.units("codenoise") == [] and f.executor.units("chunk") == []
