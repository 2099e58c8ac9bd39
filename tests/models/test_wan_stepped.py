"""The stepped Wan backend: the pipeline's loop split at the fusion point, on the tiny default."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import UniPCMultistepScheduler, WanPipeline

from models.base import ChunkConditioning
from models.stepped import SteppedVideoBackend, as_stepped, window_latents
from models.tiny import tiny_wan_components
from models.toy_gp import ToyGPBackend
from models.wan import WanVideoBackend
from models.wan_stepped import WanSteppedBackend
from tests.models.conftest import HEIGHT, WIDTH, make_latents, make_request


@pytest.fixture(scope="module")
def stepped(video_backend) -> WanSteppedBackend:
    return WanSteppedBackend.from_backend(video_backend)


def stepped_render(backend, request, *, stop_after: int | None = None):
    """The plain stepped loop; with ``stop_after``, also the latents after that many steps."""
    state = backend.begin_window(request)
    saved = None
    for i in range(backend.num_steps(state)):
        backend.step(state, i, backend.predict(state, i))
        if stop_after is not None and i + 1 == stop_after:
            saved = backend.latents(state).clone()
    return backend.decode(state), saved


def keyframe_and_mask() -> ChunkConditioning:
    frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame[:, : WIDTH // 2] = (220, 40, 40)
    mask = np.full((HEIGHT, WIDTH), 255, dtype=np.uint8)
    mask[: HEIGHT // 2] = 0
    return ChunkConditioning(frames={0: frame, 8: frame}, masks={8: mask})


def references(*shades: int) -> tuple[np.ndarray, ...]:
    """Reference images (VACE gives each a latent slot in front of the window's frames)."""
    images = []
    for shade in shades:
        image = np.zeros((HEIGHT // 2, WIDTH // 2, 3), dtype=np.uint8)
        image[:, : WIDTH // 4] = (shade, 200 - shade // 2, 60)
        images.append(image)
    return tuple(images)


def with_references() -> ChunkConditioning:
    return dataclasses.replace(keyframe_and_mask(), reference_images=references(40, 180))


@pytest.mark.parametrize(
    "conditioning",
    [None, keyframe_and_mask(), ChunkConditioning(reference_images=references(90)), with_references()],
    ids=["text", "keyframes+mask", "reference", "keyframes+mask+references"],
)
def test_the_stepped_loop_renders_what_render_chunk_renders(video_backend, stepped, embeds, conditioning):
    request = make_request(embeds, make_latents(video_backend, 3), conditioning=conditioning)
    expected = video_backend.render_chunk(request)
    frames, _ = stepped_render(stepped, request)
    assert frames.dtype == np.uint8 and frames.shape == expected.shape
    np.testing.assert_array_equal(frames, expected)


@pytest.mark.parametrize("conditioning", [None, with_references()], ids=["text", "references"])
def test_a_window_restarts_from_its_latents_bit_identically(video_backend, stepped, embeds, conditioning):
    """A checkpoint is ``latents(state)``: with reference images, their slots come first in it."""
    assert stepped.resumable
    request = make_request(embeds, make_latents(video_backend, 4), conditioning=conditioning)
    expected, saved = stepped_render(stepped, request, stop_after=2)
    state = stepped.begin_window(dataclasses.replace(request, latents=saved))
    for i in range(2, stepped.num_steps(state)):
        stepped.step(state, i, stepped.predict(state, i))
    np.testing.assert_array_equal(stepped.decode(state), expected)


def test_predict_is_float32_and_leaves_the_state_alone(video_backend, stepped, embeds):
    state = stepped.begin_window(make_request(embeds, make_latents(video_backend, 5)))
    before = stepped.latents(state).clone()
    first, second = stepped.predict(state, 0), stepped.predict(state, 0)
    assert first.dtype == torch.float32 and first.shape == before.shape
    assert torch.equal(first, second) and first.data_ptr() != second.data_ptr()
    assert torch.equal(stepped.latents(state), before)


def test_text_to_video_wan_pipeline_and_a_multistep_scheduler(embeds):
    """``WanPipeline`` too; with UniPC (Wan's real default) windows keep their own history, render
    the same as the pipeline, but cannot resume from latents or step out of order."""
    components = tiny_wan_components()
    components["scheduler"] = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    backend = WanVideoBackend(WanPipeline(**components))
    stepped = WanSteppedBackend.from_backend(backend)
    assert not stepped.resumable
    request = make_request(embeds, make_latents(backend, 6))
    expected = backend.render_chunk(request)
    # Two windows interleaved on one backend: each keeps its own scheduler state.
    a, b = stepped.begin_window(request), stepped.begin_window(request)
    for i in range(stepped.num_steps(a)):
        stepped.step(a, i, stepped.predict(a, i))
        stepped.step(b, i, stepped.predict(b, i))
    np.testing.assert_array_equal(stepped.decode(a), expected)
    np.testing.assert_array_equal(stepped.decode(b), expected)
    c = stepped.begin_window(request)
    with pytest.raises(ValueError, match="must take step 0 next, not 2"):
        stepped.step(c, 2, stepped.predict(c, 2))


def test_reference_slots_stay_out_of_the_driver_s_sight(video_backend, stepped, embeds):
    """The driver sees the window's frames only: predictions and ``window_latents`` have their
    shape, while ``latents`` (a checkpoint) keeps the slots first; a step needs its prediction."""
    request = make_request(embeds, make_latents(video_backend, 7), conditioning=with_references())
    state = stepped.begin_window(request)
    frames = tuple(request.latents.shape)
    assert state.reference_slots == 2
    assert tuple(stepped.latents(state).shape) == (*frames[:2], frames[2] + 2, *frames[3:])
    assert tuple(window_latents(stepped, state).shape) == frames
    prediction = stepped.predict(state, 0)
    assert tuple(prediction.shape) == frames and prediction.dtype == torch.float32
    with pytest.raises(ValueError, match="must predict step 1 before taking it"):
        stepped.step(state, 1, prediction)
    with pytest.raises(ValueError, match="has shape"):
        stepped.step(state, 0, stepped.latents(state))
    stepped.step(state, 0, prediction)
    with pytest.raises(ValueError, match="must predict step 1 before taking it"):
        stepped.step(state, 1, prediction)


def test_other_pipelines_are_refused_clearly():
    with pytest.raises(ValueError, match="object cannot be denoised step by step"):
        WanSteppedBackend(object())  # type: ignore[arg-type]  # a deliberately wrong call
    with pytest.raises(ValueError, match="str cannot be denoised step by step"):
        as_stepped("not a backend")  # type: ignore[arg-type]  # a deliberately wrong call


def test_as_stepped_shares_the_pipeline(video_backend):
    stepped = as_stepped(video_backend)
    assert isinstance(stepped, WanSteppedBackend) and isinstance(stepped, SteppedVideoBackend)
    assert stepped.pipeline is video_backend.pipeline
    toy = ToyGPBackend()
    assert as_stepped(toy) is toy


@pytest.mark.parametrize("with_refs", [False, True], ids=["text", "references"])
def test_the_tiny_default_co_denoises_on_two_workers_like_the_reference(ray_cluster, video_backend, embeds, with_refs):
    """The embedded tiny VACE default (classifier-free guidance on) through real actors; with
    reference images, every window carries their slots and the frames still match."""
    from farm.domain.constants import DEFAULT_MODEL
    from farm.render.codenoise import LockstepDriver, codenoise_reference, plan_windows
    from farm.workers.actors import VideoWorker, frames_from_wire
    from farm.workers.messages import ClipConditioning, CodenoiseWork
    from models.profiles import get_profile

    profile = get_profile(DEFAULT_MODEL)
    plan = plan_windows(41, window_frames=profile.window_frames, overlap_frames=profile.overlap_frames)
    assert len(plan.chunks) == 3
    settings = dict(seed=11, width=WIDTH, height=HEIGHT, num_inference_steps=profile.num_inference_steps)
    conditioning = ClipConditioning(reference_images=references(40, 180)) if with_refs else None
    reference = codenoise_reference(
        video_backend, plan, prompt=embeds, guidance_scale=profile.guidance_scale, conditioning=conditioning, **settings
    )
    workers = [ray_cluster.remote(VideoWorker).options(num_cpus=0).remote(profile) for _ in range(2)]
    try:
        work = CodenoiseWork(
            task_uuid="tiny",
            result_index=0,
            windows=plan.chunks,
            fusion_weights=plan.fusion_weights,
            guidance_scale=profile.guidance_scale,
            **settings,
        )
        result = LockstepDriver(workers, work, embeds, conditioning=conditioning).run()
        frames = ray_cluster.get(list(result.frames))
    finally:
        for worker in workers:
            ray_cluster.kill(worker)
    assert result.stats.overlap_checks > 0
    for got, want in zip(frames, reference):
        np.testing.assert_array_equal(got, want)
    if with_refs:  # the references change the pictures (they are not dropped on the way)
        plain = codenoise_reference(
            video_backend, plan, prompt=embeds, guidance_scale=profile.guidance_scale, **settings
        )
        assert any(not np.array_equal(frames_from_wire(a), frames_from_wire(b)) for a, b in zip(plain, reference))
