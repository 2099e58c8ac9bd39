"""End to end on a real local Ray: tasks become decodable files with the promised shape.

Every test here starts real worker actors, renders with the embedded tiny models and decodes the
files with PyAV.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np
import pytest
import ray
from ray import cloudpickle

from farm.domain.errors import RenderError
from farm.domain.validation import parse_task
from farm.render.results import RenderEvent
from farm.scheduler.local import render_task
from farm.workers.pool import WorkerConfig, WorkerPool
from models.profiles import get_profile
from tests.backends import WrappedTinyBackend
from tests.media import decode_frames, probe

pytestmark = pytest.mark.slow

# Test-only backends are defined here; ship them to Ray workers by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def profile():
    return get_profile("skywork:skyreels@v4")


@pytest.fixture(scope="module")
def pool3(ray_cluster, profile):
    pool = WorkerPool(profile, WorkerConfig(video_workers=3))
    pool.wait_ready()
    yield pool
    pool.shutdown()


@pytest.mark.parametrize(
    "output_format,video_codec,audio_codec",
    [("MP4", "h264", "aac"), ("WEBM", "vp9", "opus"), ("MOV", "prores", "pcm_s16le")],
)
def test_three_seconds_at_480p_is_96_frames_at_32fps_with_3s_of_audio(
    pool3, make_task, tmp_path, output_format, video_codec, audio_codec
):
    task = parse_task(make_task(outputFormat=output_format))
    events: list[RenderEvent] = []
    [result] = render_task(task, pool3, tmp_path, base_seed=11, on_event=events.append)

    assert result.path.exists() and result.path.suffix == "." + output_format.lower()
    info = probe(result.path)
    assert info.video_codec.startswith(video_codec)
    assert (info.frames, info.width, info.height) == (96, 848, 480)
    assert info.fps == 32
    assert info.audio_codec.startswith(audio_codec)
    assert info.audio_seconds == pytest.approx(3.0, abs=0.03)
    assert info.audio_channels == 2 and info.audio_rate == 48000
    # progress arrives: every chunk, encode up to the last frame, then the result
    chunk_events = [e for e in events if e.stage == "chunk"]
    assert len(chunk_events) == result.chunks == 8
    assert max(e.done for e in events if e.stage == "encode") == 96
    assert events[-1].stage == "result"
    assert os.listdir(tmp_path) == [result.path.name], "no temporary files are left behind"


def test_audio_off_means_no_audio_stream(pool3, make_task, tmp_path):
    task = parse_task(make_task(settings={"audio": False}, duration=3.5))
    [result] = render_task(task, pool3, tmp_path, base_seed=3)
    info = probe(result.path)
    assert info.audio_codec is None
    assert info.frames == 112 and info.fps == 32


def test_number_results_gives_files_with_different_seeds_and_pictures(pool3, make_task, tmp_path):
    task = parse_task(make_task(numberResults=2))
    results = render_task(task, pool3, tmp_path)
    assert [r.index for r in results] == [0, 1]
    assert results[0].seed != results[1].seed
    assert results[0].path != results[1].path
    a, b = decode_frames(results[0].path), decode_frames(results[1].path)
    assert a.shape == b.shape == (96, 480, 848, 3)
    # the tiny random models are low-contrast, but every seed must move the pixels
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.5, "different seeds must give different videos"


class FrameRecorder:
    """Keeps every final frame of result 0 as rendered (before the lossy encoder)."""

    def __init__(self):
        self.blocks = []

    def __call__(self, result_index, first, frames):
        if result_index == 0:
            assert first == sum(len(b) for b in self.blocks), "frames must arrive in order"
            self.blocks.append(frames.numpy().copy())

    @property
    def frames(self):
        return np.concatenate(self.blocks)


def test_same_seed_gives_the_same_frames_with_one_or_three_workers(ray_cluster, pool3, profile, make_task, tmp_path):
    spec = make_task(settings={"audio": False})
    three = FrameRecorder()
    [with_three] = render_task(parse_task(spec), pool3, tmp_path / "three", base_seed=42, on_frames=three)
    one = FrameRecorder()
    single = WorkerPool(profile, WorkerConfig(video_workers=1, audio_worker=False))
    try:
        render_task(parse_task(spec), single, tmp_path / "one", base_seed=42, on_frames=one)
    finally:
        single.shutdown()
    assert one.frames.shape == (96, 480, 848, 3)
    assert np.array_equal(one.frames, three.frames)
    # and what was rendered is what the file holds (up to the codec's loss)
    decoded = decode_frames(with_three.path)
    assert np.abs(decoded.astype(int) - three.frames).mean() < 3


def test_a_worker_killed_mid_job_is_replaced_and_the_frames_do_not_change(
    ray_cluster, pool3, profile, make_task, tmp_path
):
    spec = make_task(settings={"audio": False})
    reference = FrameRecorder()
    render_task(parse_task(spec), pool3, tmp_path / "ref", base_seed=5, on_frames=reference)

    pool = WorkerPool(profile, WorkerConfig(video_workers=2, audio_worker=False))
    pool.wait_ready()
    killed = []

    def kill_one_worker(event: RenderEvent) -> None:
        # after the first chunk lands both workers are busy again: kill one mid-chunk
        if event.stage == "chunk" and not killed:
            victim = pool.video_workers[0]
            killed.append(victim)
            ray.kill(victim, no_restart=True)

    try:
        survived = FrameRecorder()
        [result] = render_task(
            parse_task(spec), pool, tmp_path / "kill", base_seed=5, on_event=kill_one_worker, on_frames=survived
        )
        assert killed and pool.replacements >= 1
        assert killed[0] not in pool.video_workers
    finally:
        pool.shutdown()
    got, want = survived.frames, reference.frames
    differing = [i for i in range(len(want)) if not np.array_equal(got[i], want[i])]
    assert not differing, f"frames {differing} changed (max diff {np.abs(got.astype(int) - want).max()})"
    assert probe(result.path).frames == 96


class _FailingBackend:
    """Wraps the tiny backend and fails on one chunk, like a model raising mid-render."""

    def __init__(self, inner, fail_chunk):
        self._inner = inner
        self._fail_chunk = fail_chunk
        self.temporal_stride = inner.temporal_stride

    def latent_frame_shape(self, height, width):
        return self._inner.latent_frame_shape(height, width)

    def encode_prompt(self, prompt, negative_prompt=None):
        return self._inner.encode_prompt(prompt, negative_prompt)

    def render_chunk(self, request, on_step=None):
        if request.chunk_index == self._fail_chunk:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self._inner.render_chunk(request, on_step)


def _failing_factory(inner_factory, fail_chunk):
    return _FailingBackend(inner_factory(), fail_chunk)


def test_a_failed_render_leaves_no_file_behind(ray_cluster, profile, make_task, tmp_path):
    import functools

    failing = dataclasses.replace(profile, video_factory=functools.partial(_failing_factory, profile.video_factory, 4))
    pool = WorkerPool(failing, WorkerConfig(video_workers=2))
    try:
        with pytest.raises(RenderError, match="illegal memory access"):
            render_task(parse_task(make_task()), pool, tmp_path, base_seed=1)
    finally:
        pool.shutdown()
    assert list(tmp_path.iterdir()) == [], "neither the result nor a partial file may remain"


class SlowSteps(WrappedTinyBackend):
    """The tiny default backend, 0.15 s slower per denoising step (so progress inside a chunk shows)."""

    DELAY_S = 0.15

    def render_chunk(self, request, on_step=None):
        import time as _time

        def slow(step, total):
            _time.sleep(self.DELAY_S)
            if on_step is not None:
                on_step(step, total)

        return super().render_chunk(request, slow)


def test_denoise_progress_shows_steps_inside_chunks(ray_cluster, profile, make_task, tmp_path):
    slow = dataclasses.replace(profile, video_factory=SlowSteps, num_inference_steps=8)
    pool = WorkerPool(slow, WorkerConfig(video_workers=2, audio_worker=False))
    try:
        events: list[RenderEvent] = []
        task = parse_task(make_task(numberResults=2, settings={"audio": False, "promptExtend": False}))
        render_task(task, pool, tmp_path, base_seed=4, on_event=events.append)
    finally:
        pool.shutdown()
    for index in (0, 1):
        denoise = [e for e in events if e.stage == "denoise" and e.result_index == index]
        assert denoise, f"no step progress for result {index}"
        assert all(e.total == 8 * 8 for e in denoise)  # 8 chunks x 8 steps
        done = [e.done for e in denoise]
        assert done == sorted(done), "step progress never goes back"
        assert any(d % 8 for d in done), "progress is seen inside chunks, not only at their ends"
