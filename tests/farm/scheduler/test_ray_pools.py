"""The scheduler on real Ray actors: tasks share the workers, pools grow and shrink, a bad worker is retired.

The scheduler core runs in this process with a ``RayExecutor`` that starts real tiny-model worker
actors itself (elastic pools) and finishes results in local threads; no fakes.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
import uuid
from pathlib import Path

import pytest

from farm.domain.validation import parse_task
from farm.render.dispatch import RayExecutor
from farm.scheduler.core import SchedulerConfig, SchedulerCore
from farm.scheduler.events import TaskSpec
from farm.scheduler.pools import PoolPolicy
from models.profiles import tiny_profile
from tests.media import probe

pytestmark = pytest.mark.slow

MODEL = "skywork:skyreels@v4"
POOL = f"video:{MODEL}"


def task_spec(out: Path, **overrides) -> TaskSpec:
    raw = {
        "taskType": "videoInference",
        "taskUUID": str(uuid.uuid4()),
        "model": MODEL,
        "positivePrompt": "a lighthouse at dusk",
        "duration": 3,
        "width": 256,
        "height": 144,
        "settings": {"audio": False, "promptExtend": False},
        **overrides,
    }
    task = parse_task(raw)
    return TaskSpec(
        task_uuid=task.task_uuid, body=raw, api_key=None, seeds=(7,), results=(0,), out_dir=str(out), parsed=task
    )


def run(core: SchedulerCore, uuids: list[str], timeout: float = 300, watch=None) -> dict:
    """Step until every task ended; returns the result outcomes by task."""
    outcomes, cursor = {}, 0
    deadline = time.monotonic() + timeout
    while any(core.ended(u) is None for u in uuids):
        assert time.monotonic() < deadline, "the tasks did not finish in time"
        core.step(0.05)
        if watch is not None:
            watch()
        for event in core.events(cursor).events:
            cursor = event.seq
            if event.kind == "result" and event.outcome is not None:
                outcomes[event.task_uuid] = event.outcome
    return outcomes


def test_two_tasks_share_three_workers_and_the_pool_grows_then_shrinks_to_zero(ray_cluster, tmp_path):
    config = SchedulerConfig(
        default_pool=PoolPolicy(min_workers=0, max_workers=3, idle_timeout_s=1.0), stats_interval_s=1e9
    )
    core = SchedulerCore(RayExecutor(finishing="local"), {MODEL: tiny_profile()}, config)
    first, second = task_spec(tmp_path), task_spec(tmp_path)
    core.hand_over(first)
    core.hand_over(second)
    peak = [0]

    def watch():
        peak[0] = max(peak[0], len(core.workers(POOL)))

    try:
        outcomes = run(core, [first.task_uuid, second.task_uuid], watch=watch)
        assert peak[0] == 3, "the pool grows to max_workers while chunks wait"
        a, b = outcomes[first.task_uuid], outcomes[second.task_uuid]
        assert a.status == b.status == "success"
        for outcome in (a, b):
            assert probe(outcome.path).frames == 96
        # The second task did not wait for the first one's tail: their chunks rendered at once.
        span = lambda o: (min(s for s, _ in o.activity), max(e for _, e in o.activity))  # noqa: E731 - a one-line helper
        (a0, a1), (b0, b1) = span(a), span(b)
        assert max(a0, b0) < min(a1, b1), f"no overlap: {span(a)} vs {span(b)}"
        # Idle past the timeout: every worker is stopped (min_workers 0).
        deadline = time.monotonic() + 60
        while core.workers(POOL) and time.monotonic() < deadline:
            core.step(0.2)
        assert core.workers(POOL) == []
    finally:
        core.executor.shutdown()


class _SometimesBroken:
    """The tiny backend, broken in the first worker process that claims ``marker`` (a GPU gone bad)."""

    def __init__(self, inner, marker: str):
        self._inner = inner
        self.temporal_stride = inner.temporal_stride
        self.supports_conditioning = inner.supports_conditioning
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            self.broken = True
        except FileExistsError:
            self.broken = False

    def latent_frame_shape(self, height, width):
        return self._inner.latent_frame_shape(height, width)

    def encode_prompt(self, prompt, negative_prompt=None):
        return self._inner.encode_prompt(prompt, negative_prompt)

    def render_chunk(self, request, on_step=None):
        if self.broken:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self._inner.render_chunk(request, on_step)


def _sometimes_broken(factory, marker):
    return _SometimesBroken(factory(), marker)


def test_a_worker_whose_chunks_always_fail_is_retired_and_the_task_still_finishes(ray_cluster, tmp_path):
    profile = tiny_profile()
    marker = str(tmp_path / "broken-worker")
    profile = dataclasses.replace(
        profile, video_factory=functools.partial(_sometimes_broken, profile.video_factory, marker)
    )
    config = SchedulerConfig(
        default_pool=PoolPolicy(min_workers=0, max_workers=2, idle_timeout_s=600),
        retire_after_failures=2,
        max_attempts=3,
        stats_interval_s=1e9,
    )
    core = SchedulerCore(RayExecutor(finishing="local"), {MODEL: profile}, config)
    spec = task_spec(tmp_path)
    core.hand_over(spec)
    try:
        outcomes = run(core, [spec.task_uuid])
        assert outcomes[spec.task_uuid].status == "success", outcomes[spec.task_uuid]
        assert probe(outcomes[spec.task_uuid].path).frames == 96
        assert Path(marker).exists(), "one worker was the broken one"
        # The broken worker was retired and replaced.
        assert core.stats()["pools"][POOL]["replacements"] >= 1
    finally:
        core.executor.shutdown()
