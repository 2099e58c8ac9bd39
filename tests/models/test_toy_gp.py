"""The toy Gaussian-process backend: determinism, the stepped loop, seams it makes measurable."""

from __future__ import annotations

import dataclasses
import doctest
import pickle

import numpy as np
import pytest
import torch

import models.toy_gp
from farm.domain.planner import plan_clip
from farm.io.seams import frame_stats, measure_seams, planned_seams
from models.base import ChunkConditioning, ChunkRequest, PromptEmbeds, VideoBackend
from models.stepped import SteppedVideoBackend
from models.toy_gp import TOY_GP_MODEL, TOY_STEPS, ToyGPBackend, ToyGPConfig, toy_gp_profile

#: The toy profile's native size for a 16:9 clip.
WIDTH, HEIGHT = 224, 128


@pytest.fixture(scope="module")
def backend() -> ToyGPBackend:
    return ToyGPBackend()


@pytest.fixture(scope="module")
def embeds(backend: ToyGPBackend) -> PromptEmbeds:
    return backend.encode_prompt("a red fox runs through snow", "blurry")


def noise(backend: ToyGPBackend, seed: int, frames: int = 17, height: int = HEIGHT, width: int = WIDTH) -> torch.Tensor:
    return torch.randn(backend.latent_shape(frames, height, width), generator=torch.Generator().manual_seed(seed))


def request(embeds: PromptEmbeds, latents: torch.Tensor, **overrides) -> ChunkRequest:
    fields = dict(
        chunk_index=0,
        prompt=embeds,
        latents=latents,
        num_frames=17,
        height=HEIGHT,
        width=WIDTH,
        num_inference_steps=TOY_STEPS,
        guidance_scale=1.0,
        seed=0,
    )
    fields.update(overrides)
    return ChunkRequest(**fields)


def stepped_render(backend: ToyGPBackend, req: ChunkRequest) -> np.ndarray:
    state = backend.begin_window(req)
    for i in range(backend.num_steps(state)):
        backend.step(state, i, backend.predict(state, i))
    return backend.decode(state)


def test_satisfies_both_protocols(backend):
    assert isinstance(backend, VideoBackend)
    assert isinstance(backend, SteppedVideoBackend)
    assert backend.temporal_stride == 4 and backend.supports_conditioning is False
    assert backend.latent_frame_shape(HEIGHT, WIDTH) == (4, HEIGHT // 8, WIDTH // 8)
    assert backend.latent_shape(17, HEIGHT, WIDTH) == (1, 4, 5, HEIGHT // 8, WIDTH // 8)


def test_docstring_examples():
    assert doctest.testmod(models.toy_gp).failed == 0


def test_render_is_bit_identical_and_follows_the_noise(backend, embeds):
    steps = []
    first = backend.render_chunk(request(embeds, noise(backend, 1)), lambda i, n: steps.append((i, n)))
    again = ToyGPBackend().render_chunk(request(embeds, noise(backend, 1), seed=99))  # fresh caches, other seed
    other = backend.render_chunk(request(embeds, noise(backend, 2)))
    assert first.shape == (17, HEIGHT, WIDTH, 3) and first.dtype == np.uint8
    assert steps == [(i, TOY_STEPS) for i in range(TOY_STEPS)]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_output_moves_visibly(backend, embeds):
    frames = backend.render_chunk(request(embeds, noise(backend, 3))).astype(np.float64)
    motion = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert frames.std() > 15  # a picture, not a flat field
    assert np.all(motion > 1.0) and motion.max() < 15  # every frame moves, smoothly


def test_stepped_loop_equals_render_chunk(backend, embeds):
    req = request(embeds, noise(backend, 4))
    assert np.array_equal(stepped_render(backend, req), backend.render_chunk(req))


def test_checkpoint_restores_mid_render(backend, embeds):
    """The stateless-step contract: saved latents after step k plus the request resume the render."""
    req = request(embeds, noise(backend, 5))
    state = backend.begin_window(req)
    for i in range(3):
        backend.step(state, i, backend.predict(state, i))
    restored = backend.begin_window(dataclasses.replace(req, latents=backend.latents(state).clone()))
    for i in range(3, backend.num_steps(restored)):
        backend.step(restored, i, backend.predict(restored, i))
    assert np.array_equal(backend.decode(restored), backend.render_chunk(req))


def test_predict_returns_an_owned_tensor_and_keeps_the_state(backend, embeds):
    req = request(embeds, noise(backend, 6))
    state = backend.begin_window(req)
    before = backend.latents(state).clone()
    prediction = backend.predict(state, 2)
    assert prediction.dtype == torch.float32 and prediction.shape == before.shape
    prediction.zero_()  # the driver may write fused slices into it
    assert torch.equal(backend.latents(state), before)
    assert torch.equal(backend.predict(state, 2), backend.predict(state, 2))


def test_given_latents_are_not_modified(backend, embeds):
    latents = noise(backend, 7)
    before = latents.clone()
    backend.render_chunk(request(embeds, latents))
    assert torch.equal(latents, before)


def test_every_frame_depends_on_the_whole_window(backend, embeds):
    """Like attention: changing the noise of the last latent frame changes the first pixel frames."""
    latents = noise(backend, 8)
    changed = latents.clone()
    changed[:, :, -1] += 1.0
    a = backend.render_chunk(request(embeds, latents))
    b = backend.render_chunk(request(embeds, changed))
    assert not np.array_equal(a[:4], b[:4])


def test_prompt_sets_the_picture_and_guidance_is_ignored(backend, embeds):
    latents = noise(backend, 9)
    base = backend.render_chunk(request(embeds, latents))
    other_prompt = backend.encode_prompt("a blue whale in deep water")
    assert torch.equal(
        backend.encode_prompt("a red fox runs through snow", "blurry").prompt_embeds, embeds.prompt_embeds
    )
    assert not torch.equal(embeds.prompt_embeds, embeds.negative_prompt_embeds)
    assert np.abs(backend.render_chunk(request(other_prompt, latents)).astype(int) - base).mean() > 5
    assert np.array_equal(backend.render_chunk(request(embeds, latents, guidance_scale=5.0)), base)


@pytest.mark.parametrize(
    ("frames", "height", "width"),
    [(1, HEIGHT, WIDTH), (18, HEIGHT, WIDTH), (21, 64, 112), (9, 23, 37), (5, 1, 1), (13, 480, 848)],
)
def test_any_size_and_duration_renders(backend, embeds, frames, height, width):
    req = request(embeds, noise(backend, 10, frames, height, width), num_frames=frames, height=height, width=width)
    assert backend.render_chunk(req).shape == (frames, height, width, 3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_frames": 0}, "must be >= 1"),
        ({"num_frames": 21}, "expected \\(1, 4, 6, 16, 28\\) for 21 frames"),
        ({"num_inference_steps": 0}, "num_inference_steps must be >= 1"),
        ({"conditioning": ChunkConditioning(reference_images=(np.zeros((8, 8, 3), np.uint8),))}, "cannot take"),
    ],
)
def test_refuses_what_it_cannot_render(backend, embeds, overrides, message):
    with pytest.raises(ValueError, match=message):
        backend.render_chunk(request(embeds, noise(backend, 11), **overrides))


def test_config_is_checked():
    with pytest.raises(ValueError, match="smooth_length must be > 0, got 0"):
        ToyGPConfig(smooth_length=0)


def _windows_and_reference(backend, embeds, num_frames, seed):
    """The planner's windows rendered independently and crossfaded, and one full-clip window."""
    plan = plan_clip(num_frames, window_frames=17, overlap_frames=5, temporal_stride=4)
    latents = noise(backend, seed, plan.render_frames)
    blended = np.zeros((plan.render_frames, HEIGHT, WIDTH, 3))
    windows = []
    for chunk, weights in zip(plan.chunks, plan.weights):
        window = latents[:, :, chunk.latent_start : chunk.latent_start + chunk.latent_frames]
        frames = backend.render_chunk(request(embeds, window, num_frames=chunk.num_frames))
        windows.append(frames)
        blended[chunk.start : chunk.end] += weights[:, None, None, None] * frames
    reference = backend.render_chunk(request(embeds, latents, num_frames=plan.render_frames))
    return plan, windows, np.round(blended[:num_frames]).astype(np.uint8), reference[:num_frames]


def test_independent_windows_disagree_and_the_full_clip_is_seamless(backend, embeds):
    plan, windows, parallel, reference = _windows_and_reference(backend, embeds, 160, seed=12)
    # The shared frames of the first two windows start from the same noise but come out different,
    # by more than a frame's typical motion.
    first, second = plan.chunks[0], plan.chunks[1]
    shared = first.end - second.start
    a = windows[0][-shared:].astype(np.float64)
    b = windows[1][:shared].astype(np.float64)
    motion = np.abs(np.diff(reference.astype(np.float64), axis=0)).mean()
    assert np.abs(a - b).mean() > 2 * motion
    # So the crossfade jumps at every seam, while the full-clip window has none (measured about
    # 1.25 and 1.01 for the median seam, 1.29 and 1.04 for the worst).
    seams = planned_seams(160, 17, 5, 4)
    with_seams = measure_seams(frame_stats(parallel), seams)
    without = measure_seams(frame_stats(reference), seams)
    assert min(s.sjr for s in with_seams.seams) > 1.1
    assert np.median([s.sjr for s in with_seams.seams]) > 1.15
    assert without.sjr_max < 1.1
    assert with_seams.dip_mean < without.dip_mean


def test_profile():
    profile = toy_gp_profile()
    assert profile.model_id == TOY_GP_MODEL == "farm:toy-gp@1"
    assert (profile.window_frames, profile.overlap_frames, profile.temporal_stride) == (17, 5, 4)
    assert profile.num_inference_steps == TOY_STEPS
    assert profile.native_size(848, 480) == (WIDTH, HEIGHT)
    assert profile.native_size(480, 848) == (HEIGHT, WIDTH)
    assert profile.audio_factory is not None and profile.safety_factory is not None
    # Ray pickles the factories into the workers.
    video_factory = pickle.loads(pickle.dumps(profile.video_factory))
    assert isinstance(video_factory(), ToyGPBackend)
    custom = toy_gp_profile("lab:toy@2", config=ToyGPConfig(smooth_length=5.0))
    assert custom.model_id == "lab:toy@2" and custom.video_factory().config.smooth_length == 5.0
