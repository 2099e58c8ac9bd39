"""Media inputs steer the render: where each input lands, what reaches the backend, and whole renders.

The unit tests check ``farm.render.conditioning`` on decoded inputs; the backend-interface tests run real
renders on a real local Ray with a backend that records every ``ChunkConditioning`` it receives
(around the real tiny VACE pipeline); the end-to-end tests decode the delivered files.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import ray
from PIL import Image
from ray import cloudpickle

from farm.domain.constants import DEFAULT_MODEL
from farm.domain.errors import TaskValidationError
from farm.domain.planner import plan_clip
from farm.domain.validation import parse_task
from farm.io.media import MediaResolver, decode_video, resolve_inputs
from farm.io.urlguard import UrlGuard
from farm.render.conditioning import build_conditioning, output_size
from farm.scheduler.local import render_task
from farm.workers.pool import WorkerConfig, WorkerPool
from models.profiles import get_profile
from tests.backends import WrappedTinyBackend
from tests.farm.io.test_media import data_uri, video_bytes, wav_bytes
from tests.media import decode_frames, probe

# The recording backend below is shipped to Ray workers by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

NATIVE = (112, 64)  # the tiny default's native size for 16:9


def png(color, size=(160, 90)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return data_uri(buffer.getvalue(), "image/png")


def task_of(inputs: dict | None = None, prompt: str = "a scene", **fields) -> object:
    raw = {
        "taskType": "videoInference",
        "taskUUID": str(uuid.uuid4()),
        "model": DEFAULT_MODEL,
        "positivePrompt": prompt,
        "duration": 3,
        "resolution": "480p",
        **fields,
    }
    if inputs is not None:
        raw["inputs"] = inputs
    return parse_task(raw)


def resolved(task):
    return resolve_inputs(task, MediaResolver(guard=UrlGuard()))


# -- where inputs land (farm.render.conditioning) --------------------------------------------------------


def test_frame_images_are_known_frames_at_their_positions_and_reach_every_covering_chunk():
    task = task_of(
        {
            "frameImages": [
                {"image": png("red"), "frame": "first"},
                {"image": png("blue"), "frame": 12},
                {"image": png("lime"), "frame": "last"},
            ]
        }
    )
    clip = build_conditioning(resolved(task), num_frames=96, native_width=112, native_height=64, extend_frames=5)
    assert sorted(clip.frames) == [0, 12, 95] and not clip.masks and clip.lead_frames == 0
    assert clip.frames[0].shape == (64, 112, 3)
    assert tuple(clip.frames[12][32, 56]) == (0, 0, 255)
    plan = plan_clip(96, window_frames=17, overlap_frames=5, temporal_stride=4)
    covering = {c.index: clip.for_chunk(c) for c in plan.chunks}
    # frame 12 is the overlap of chunk 0 [0, 17) and chunk 1 [12, 29): both get it, at local 12 and 0
    assert sorted(covering[0].frames) == [0, 12]
    assert sorted(covering[1].frames) == [0]
    np.testing.assert_array_equal(covering[1].frames[0], clip.frames[12])
    last = plan.chunks[-1]
    assert covering[last.index].frames.keys() == {95 - last.start}
    # chunks holding no input get nothing at all
    assert all(
        covering[c.index] is None
        for c in plan.chunks
        if c.index not in (0, 1, last.index) and not (c.start <= 95 < c.end)
    )


def test_reference_images_go_to_every_chunk_fitted_inside_the_native_frame_and_voice_to_audio():
    task = task_of(
        {
            "referenceImages": [
                {
                    "type": "image",
                    "tag": "@hero",
                    "audio": data_uri(wav_bytes(1.0), "audio/wav"),
                    "images": [png("green", (400, 400)), png("navy", (50, 20))],
                }
            ]
        },
        prompt="@hero waves",
    )
    clip = build_conditioning(resolved(task), num_frames=96, native_width=112, native_height=64, extend_frames=5)
    assert [r.shape for r in clip.reference_images] == [(64, 64, 3), (20, 50, 3)]  # down-scaled, never up
    plan = plan_clip(96, window_frames=17, overlap_frames=5, temporal_stride=4)
    assert all(len(clip.for_chunk(c).reference_images) == 2 for c in plan.chunks)
    samples, rate = clip.voice
    assert rate == 8000 and samples.shape == (2, 8000)


def test_extend_leads_the_grid_with_the_inputs_last_frames():
    raw = video_bytes(width=1920, height=1080, frames=30, fps=30)
    task = task_of(
        {"referenceVideos": [{"type": "extend", "tag": "@clip", "video": data_uri(raw, "video/mp4")}]},
        prompt="@clip goes on",
    )
    clip = build_conditioning(resolved(task), num_frames=96, native_width=112, native_height=64, extend_frames=5)
    assert clip.lead_frames == 5 and sorted(clip.frames) == [0, 1, 2, 3, 4] and not clip.masks
    expected = decode_video(raw, "v").last_frames(5, NATIVE)
    np.testing.assert_array_equal(np.stack([clip.frames[g] for g in range(5)]), expected)
    assert clip.carried_audio is None


def test_reference_video_is_followed_in_time_with_its_audio_and_a_mask_keeps_the_black_area():
    raw = video_bytes(width=1920, height=1080, frames=16, fps=16, audio=True)  # 1 s: covers frames 0..31
    mask = np.zeros((90, 160, 3), np.uint8)
    mask[:, 80:] = 255  # regenerate the right half
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, "PNG")
    task = task_of(
        {
            "referenceVideos": [{"type": "reference", "tag": "@clip", "video": data_uri(raw, "video/mp4")}],
            "mask": data_uri(buffer.getvalue(), "image/png"),
        },
        prompt="@clip in the rain",
    )
    clip = build_conditioning(resolved(task), num_frames=96, native_width=112, native_height=64, extend_frames=5)
    assert sorted(clip.frames) == list(range(32)), "frames follow the input while it lasts (1 s at 32 fps)"
    source = list(decode_video(raw, "v").frames(NATIVE))
    # output frame 10 is shown at 10/32 s: input frame floor(10/32*16) = 5
    np.testing.assert_array_equal(clip.frames[10], source[5])
    assert clip.masks[10][:, :50].max() == 0 and clip.masks[10][:, 62:].min() == 255
    samples, rate = clip.carried_audio
    assert rate == 16000 and samples.shape[1] == pytest.approx(16000, abs=2100)  # AAC pads whole 1024-sample frames


def test_output_size_follows_the_inputs_aspect_only_for_presets():
    portrait = task_of({"frameImages": [png("red", (90, 160))]})
    assert output_size(848, 480, "480p", resolved(portrait)) == (480, 848)
    square = task_of({"frameImages": [png("red", (100, 100))]})
    w, h = output_size(1920, 1080, "1080p", resolved(square))
    assert w == h and abs(w * h - 1920 * 1080) / (1920 * 1080) < 0.01 and w % 8 == 0
    assert output_size(848, 480, None, resolved(portrait)) == (848, 480), "explicit sizes are kept"


# -- what reaches the backend (real Ray, recording backend) ---------------------------------------


class RecordingBackend(WrappedTinyBackend):
    """The tiny VACE backend, saving each chunk's conditioning and frames to ``directory``."""

    def __init__(self, directory: str):
        super().__init__()
        self._directory = Path(directory)

    def render_chunk(self, request, on_step=None):
        frames = self._inner.render_chunk(request, on_step)
        record = {
            "chunk": request.chunk_index,
            "seed": request.seed,
            "conditioning": request.conditioning,
            "frames": frames,
        }
        (self._directory / f"{request.seed}-{request.chunk_index}.pkl").write_bytes(pickle.dumps(record))
        return frames


def recording_backend(directory: str) -> RecordingBackend:
    return RecordingBackend(directory)


@pytest.fixture
def recording_pool(ray_cluster, tmp_path):
    import functools

    directory = tmp_path / "calls"
    directory.mkdir()
    profile = dataclasses.replace(
        get_profile(DEFAULT_MODEL), video_factory=functools.partial(recording_backend, str(directory))
    )
    pool = WorkerPool(profile, WorkerConfig(video_workers=2, audio_worker=False))
    pool.wait_ready()
    yield pool, directory
    pool.shutdown()


def calls(directory: Path) -> dict[int, dict]:
    return {record["chunk"]: record for record in (pickle.loads(p.read_bytes()) for p in directory.glob("*.pkl"))}


def test_keyframes_and_references_reach_the_backend_in_the_right_chunks(recording_pool, tmp_path):
    pool, directory = recording_pool
    task = task_of(
        {
            "frameImages": [{"image": png("red"), "frame": "first"}, {"image": png("blue"), "frame": 40}],
            "referenceImages": [{"type": "image", "tag": "@hero", "images": [png("lime", (32, 32))]}],
        },
        prompt="@hero runs",
        settings={"audio": False},
    )
    [result] = render_task(task, pool, tmp_path / "out", base_seed=5)
    got = calls(directory)
    plan = plan_clip(96, window_frames=17, overlap_frames=5, temporal_stride=4)
    assert sorted(got) == [c.index for c in plan.chunks]
    for chunk in plan.chunks:
        conditioning = got[chunk.index]["conditioning"]
        expected = sorted(f - chunk.start for f in (0, 40) if chunk.start <= f < chunk.end)
        assert sorted(conditioning.frames) == expected, f"chunk {chunk.index}"
        assert len(conditioning.reference_images) == 1
        np.testing.assert_array_equal(conditioning.reference_images[0][0, 0], [0, 255, 0])
    red = got[0]["conditioning"].frames[0]
    assert red.shape == (64, 112, 3) and tuple(red[10, 10]) == (255, 0, 0)
    blue_chunk = next(c for c in plan.chunks if c.start <= 40 < c.end)
    assert tuple(got[blue_chunk.index]["conditioning"].frames[40 - blue_chunk.start][5, 5]) == (0, 0, 255)
    assert probe(result.path).frames == 96


def test_sequential_chunks_continue_the_previous_chunks_last_frames(recording_pool, tmp_path):
    pool, directory = recording_pool
    task = task_of(settings={"audio": False, "chunkMode": "sequential"})
    render_task(task, pool, tmp_path / "out", base_seed=9)
    got = calls(directory)
    plan = plan_clip(96, window_frames=17, overlap_frames=5, temporal_stride=4)
    assert got[0]["conditioning"] is None
    for previous, chunk in zip(plan.chunks, plan.chunks[1:]):
        shared = range(chunk.start, previous.end)
        conditioning = got[chunk.index]["conditioning"]
        assert sorted(conditioning.frames) == [g - chunk.start for g in shared]
        for g in shared:
            np.testing.assert_array_equal(
                conditioning.frames[g - chunk.start], got[previous.index]["frames"][g - previous.start]
            )


def test_a_text_only_model_refuses_media_inputs_naming_the_field(ray_cluster, tmp_path):
    from models.profiles import tiny_profile

    # A plain WanPipeline profile says it takes no conditioning (models.profiles.wan_profile does).
    profile = dataclasses.replace(tiny_profile(), video_factory=_plain_wan_backend, takes_conditioning=False)
    pool = WorkerPool(profile, WorkerConfig(video_workers=1, audio_worker=False))
    try:
        task = task_of({"frameImages": [png("red")]}, settings={"audio": False})
        with pytest.raises(TaskValidationError) as error:
            render_task(task, pool, tmp_path)
        assert error.value.violations[0].field == "inputs.frameImages"
        assert list(tmp_path.iterdir()) == []
    finally:
        pool.shutdown()


def _plain_wan_backend():
    from models.tiny import tiny_wan_pipeline
    from models.wan import WanVideoBackend

    return WanVideoBackend(tiny_wan_pipeline())


# -- whole renders with each feature --------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(ray_cluster):
    pool = WorkerPool(get_profile(DEFAULT_MODEL), WorkerConfig(video_workers=2))
    pool.wait_ready()
    yield pool
    pool.shutdown()


def test_render_with_portrait_frame_images_is_portrait_with_audio(pool, tmp_path):
    task = task_of({"frameImages": [png("red", (90, 160)), png("blue", (90, 160))]})
    [result] = render_task(task, pool, tmp_path, base_seed=1)
    info = probe(result.path)
    assert (info.width, info.height, info.frames, info.fps) == (480, 848, 96, 32)
    assert info.audio_seconds == pytest.approx(3.0, abs=0.03)


def test_render_with_tagged_references_and_a_voice(pool, tmp_path):
    task = task_of(
        {
            "referenceImages": [
                {
                    "type": "grid",
                    "tag": "@cast",
                    "images": [png("teal", (300, 200))],
                    "audio": data_uri(wav_bytes(2.0), "audio/wav"),
                }
            ]
        },
        prompt="@cast on stage",
        outputFormat="WEBM",
    )
    [result] = render_task(task, pool, tmp_path, base_seed=2)
    info = probe(result.path)
    assert (info.width, info.height, info.frames) == (848, 480, 96)
    assert info.audio_codec == "opus" and info.audio_seconds == pytest.approx(3.0, abs=0.05)


def test_extending_a_video_delivers_only_the_continuation(pool, tmp_path):
    raw = video_bytes(width=1080, height=1920, frames=24, fps=24)  # portrait input, no audio
    task = task_of(
        {"referenceVideos": [{"type": "extend", "tag": "@clip", "video": data_uri(raw, "video/mp4")}]},
        prompt="@clip goes on",
    )
    events = []
    [result] = render_task(task, pool, tmp_path, base_seed=3, on_event=events.append)
    info = probe(result.path)
    assert (info.width, info.height, info.frames) == (480, 848, 96), "portrait follows the input"
    assert info.audio_seconds == pytest.approx(3.0, abs=0.03)
    assert max(e.done for e in events if e.stage == "encode") == 96


def test_editing_with_a_mask_carries_the_input_audio(pool, tmp_path):
    raw = video_bytes(width=1920, height=1080, frames=32, fps=16, audio=True)  # 2 s of 0.25 DC audio
    task = task_of(
        {
            "referenceVideos": [{"type": "reference", "tag": "@clip", "video": data_uri(raw, "video/mp4")}],
            "mask": png("white", (16, 9)),
        },
        prompt="@clip at night",
        outputFormat="MOV",
    )
    assert task.settings.audio is False, "the seed: a reference video's audio is carried instead"
    [result] = render_task(task, pool, tmp_path, base_seed=4)
    info = probe(result.path)
    assert (info.width, info.height, info.frames, info.fps) == (848, 480, 96, 32)
    assert info.audio_codec == "pcm_s16le" and info.audio_seconds == pytest.approx(3.0, abs=0.03)
    import av

    with av.open(str(result.path)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(container.streams.audio[0])])
    rate = 48000 * 2  # interleaved stereo
    assert np.abs(audio[:rate]).mean() > 1000, "the input's audio is heard in its first second"
    assert np.abs(audio[int(2.2 * rate) :]).max() < 50, "and silence after the input ends"
    assert len(decode_frames(result.path)) == 96


# -- the audio job of a cancelled render stops too ------------------------------------------------


def test_a_cancelled_renders_audio_job_stops_at_the_next_step(ray_cluster):
    from farm.domain.errors import TaskCancelledError
    from farm.workers.actors import AudioWorker
    from farm.workers.cancel import cancel_flags
    from farm.workers.messages import AudioWork

    worker = ray.remote(AudioWorker).options(num_cpus=0).remote(get_profile(DEFAULT_MODEL))
    flags = cancel_flags()
    token = f"test/{uuid.uuid4()}"
    ray.get(flags.cancel.remote(token))
    work = AudioWork(
        task_uuid="t", result_index=0, prompt="rain", duration_s=1.0, seed=1, num_inference_steps=50, cancel_token=token
    )
    try:
        with pytest.raises(TaskCancelledError, match="step 1/50"):
            ray.get(worker.audio.options(num_returns=2).remote(work)[1])
        # without a cancelled token the same call renders
        meta, samples = ray.get(
            worker.audio.options(num_returns=2).remote(
                dataclasses.replace(work, num_inference_steps=2, cancel_token=None)
            )
        )
        assert samples.shape[1] >= meta.sample_rate
    finally:
        ray.get(flags.clear.remote(token))
        ray.kill(worker)


@pytest.mark.parametrize(
    "name", ["frame-images", "reference-images", "extend-video", "edit-with-mask", "sequential-chunks", "editing-mov"]
)
def test_each_feature_example_renders_a_valid_file(pool, tmp_path, name):
    import json

    raw = json.loads((Path(__file__).resolve().parents[3] / "examples" / f"{name}.json").read_text())
    task = parse_task(raw)
    [result] = render_task(task, pool, tmp_path, base_seed=1)
    info = probe(result.path)
    assert (info.frames, info.fps) == (task.num_frames, 32)
    assert info.width * info.height == pytest.approx(848 * 480, rel=0.02)
    assert info.audio_seconds == pytest.approx(task.duration, abs=0.03), "generated or carried audio"
