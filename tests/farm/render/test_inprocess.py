"""The in-process executor (``farm render``'s default on one machine): the same render as the Ray
actors give, on threads of one process, with cancel, progress, sequential chunks and failures.

Real tiny models, real PyAV encoding, files decoded and compared.
"""

from __future__ import annotations

import dataclasses
import functools
import threading

import numpy as np
import pytest

from farm.domain.errors import RenderError, TaskCancelledError
from farm.domain.validation import parse_task
from farm.render.results import RenderEvent
from farm.scheduler.local import render_task
from farm.workers.pool import InProcessPool, WorkerConfig, WorkerPool
from models.profiles import get_profile
from tests.farm.render.test_render import FrameRecorder, SlowSteps, _failing_factory
from tests.media import probe

pytestmark = pytest.mark.slow


def decoded_audio(path) -> np.ndarray:
    """Every audio sample of ``path``, float32 ``[channels, n]``."""
    import av

    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


@pytest.fixture(scope="module")
def profile():
    return get_profile("skywork:skyreels@v4")


@pytest.fixture(scope="module")
def pool(profile):
    pool = InProcessPool(profile, WorkerConfig(video_workers=2))
    yield pool
    pool.shutdown()


def test_in_process_renders_what_the_ray_workers_render(ray_cluster, pool, profile, make_task, tmp_path):
    spec = make_task(settings={"audio": True})
    here = FrameRecorder()
    [local] = render_task(parse_task(spec), pool, tmp_path / "here", base_seed=42, on_frames=here)
    there = FrameRecorder()
    ray_pool = WorkerPool(profile, WorkerConfig(video_workers=1))
    try:
        [remote] = render_task(parse_task(spec), ray_pool, tmp_path / "ray", base_seed=42, on_frames=there)
    finally:
        ray_pool.shutdown()
    assert here.frames.shape == (96, 480, 848, 3)
    assert np.array_equal(here.frames, there.frames), "every final frame is the same"
    info = probe(local.path)
    assert (info.frames, info.fps, info.audio_channels) == (96, 32, 2)
    assert info.audio_seconds == pytest.approx(3.0, abs=0.03)
    ours, theirs = decoded_audio(local.path), decoded_audio(remote.path)
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() < 1e-3, "the same audio"
    # The pool keeps its workers for the next task: models are built once per command.
    assert len(pool.video_workers) >= 1 and pool.audio_worker is not None


def test_workers_are_kept_between_tasks(pool, make_task, tmp_path):
    render_task(parse_task(make_task(settings={"audio": False})), pool, tmp_path / "a", base_seed=1)
    kept = list(pool.video_workers)
    assert kept, "the first task left its workers in the pool"
    events: list[RenderEvent] = []
    render_task(
        parse_task(make_task(settings={"audio": False})), pool, tmp_path / "b", base_seed=2, on_event=events.append
    )
    assert [id(w) for w in pool.video_workers[: len(kept)]] == [id(w) for w in kept], "the same workers rendered"
    assert len([e for e in events if e.stage == "chunk"]) == 8


def test_sequential_chunks_render_in_process(pool, make_task, tmp_path):
    spec = make_task(settings={"audio": False, "chunkMode": "sequential"})
    events: list[RenderEvent] = []
    [result] = render_task(parse_task(spec), pool, tmp_path, base_seed=3, on_event=events.append)
    info = probe(result.path)
    assert (info.frames, info.width, info.height) == (96, 848, 480)
    chunks = [e for e in events if e.stage == "chunk"]
    assert len(chunks) == 8


def test_cancel_stops_the_render_and_leaves_no_file(pool, make_task, tmp_path):
    spec = make_task(settings={"audio": False}, duration=10)
    seen = threading.Event()

    def on_event(event: RenderEvent) -> None:
        if event.stage == "chunk":
            seen.set()

    with pytest.raises(TaskCancelledError):
        render_task(parse_task(spec), pool, tmp_path, base_seed=4, on_event=on_event, should_cancel=seen.is_set)
    assert list(tmp_path.iterdir()) == [], "no partial file is left"
    # and the pool renders the next task as usual
    [result] = render_task(parse_task(make_task(settings={"audio": False})), pool, tmp_path / "next", base_seed=5)
    assert probe(result.path).frames == 96


class SomewhatSlowSteps(SlowSteps):
    """0.06 s per denoising step: a chunk of 8 steps spans about one progress poll (0.5 s)."""

    DELAY_S = 0.06


def test_denoise_progress_inside_chunks(profile, make_task, tmp_path):
    slow = dataclasses.replace(profile, video_factory=SomewhatSlowSteps, num_inference_steps=8)
    pool = InProcessPool(slow, WorkerConfig(video_workers=1))
    for attempt in ("first task (workers built)", "next task (workers kept)"):
        events: list[RenderEvent] = []
        task = parse_task(make_task(settings={"audio": False, "promptExtend": False}))
        render_task(task, pool, tmp_path / attempt[:4], base_seed=4, on_event=events.append)
        done = [e.done for e in events if e.stage == "denoise"]
        assert done and all(e.total == 8 * 8 for e in events if e.stage == "denoise"), attempt
        assert done == sorted(done), f"{attempt}: step progress never goes back"
        assert any(d % 8 for d in done), f"{attempt}: progress is seen inside chunks, not only at their ends"


def test_a_failing_chunk_fails_the_task_naming_the_cause_and_leaves_no_file(profile, make_task, tmp_path):
    failing = dataclasses.replace(profile, video_factory=functools.partial(_failing_factory, profile.video_factory, 4))
    with pytest.raises(RenderError, match="illegal memory access"):
        render_task(
            parse_task(make_task()), InProcessPool(failing, WorkerConfig(video_workers=2)), tmp_path, base_seed=1
        )
    assert list(tmp_path.iterdir()) == [], "neither the result nor a partial file may remain"


def test_codenoise_in_process_gives_the_frames_of_the_ray_gang(ray_cluster, tmp_path):
    from models.profiles import known_models
    from tests.farm.scheduler.test_codenoise_render import TOY, render_frames, toy_task

    task = parse_task(toy_task(), known_models=known_models())
    here = FrameRecorder()
    pool = InProcessPool(get_profile(TOY), WorkerConfig(video_workers=2))
    [result] = render_task(task, pool, tmp_path / "here", on_frames=here)
    on_ray, _ = render_frames(task, 1, tmp_path / "ray")
    assert here.frames.shape == (96, 480, 848, 3)
    assert np.array_equal(here.frames, on_ray), "co-denoised in process: the same bits as a gang of actors"
    assert probe(result.path).frames == 96


class SlowToy:
    """The toy GP backend, 0.1 s slower per co-denoising step (so a cancel lands mid-render)."""

    def __new__(cls, config):
        import time

        from models.toy_gp import ToyGPBackend

        class Slow(ToyGPBackend):
            def step(self, state, step, prediction):
                time.sleep(0.1)
                super().step(state, step, prediction)

        return Slow(config)


def test_codenoise_in_process_stops_on_cancel(tmp_path):
    from models.profiles import known_models
    from tests.farm.scheduler.test_codenoise_render import TOY, toy_task

    task = parse_task(toy_task(), known_models=known_models())
    stepping = threading.Event()

    def on_event(event: RenderEvent) -> None:
        if event.stage == "denoise" and event.done:
            stepping.set()

    toy = get_profile(TOY)
    slow = dataclasses.replace(toy, video_factory=functools.partial(SlowToy, toy.video_factory.args[0]))
    pool = InProcessPool(slow, WorkerConfig(video_workers=2))
    with pytest.raises(TaskCancelledError):
        render_task(task, pool, tmp_path, on_event=on_event, should_cancel=stepping.is_set)
    assert list(tmp_path.iterdir()) == []
    assert all(not worker.windows_held() for worker in pool.video_workers), "no window is left on a worker"
