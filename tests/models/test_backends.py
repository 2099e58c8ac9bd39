"""The tiny Wan and Stable Audio backends: shapes, determinism and the real loading path."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.base import AudioBackend, AudioRequest, VideoBackend
from models.stable_audio import StableAudioBackend
from models.tiny import (
    TINY_AUDIO_SAMPLE_RATE,
    save_tiny_stable_audio,
    save_tiny_wan,
    tiny_vace_pipeline,
    tiny_wan_pipeline,
)
from models.wan import WanVideoBackend

from .conftest import FRAMES, HEIGHT, STEPS, WIDTH, make_latents, make_request

REPO = Path(__file__).resolve().parents[2]


def test_backends_satisfy_the_protocols(video_backend, audio_backend):
    assert isinstance(video_backend, VideoBackend)
    assert isinstance(audio_backend, AudioBackend)
    assert video_backend.temporal_stride == 4
    assert video_backend.latent_frame_shape(HEIGHT, WIDTH) == (16, HEIGHT // 8, WIDTH // 8)
    assert audio_backend.sample_rate == TINY_AUDIO_SAMPLE_RATE
    assert audio_backend.max_duration_s >= 15.0


def test_encode_prompt_gives_positive_and_negative(video_backend, embeds):
    assert embeds.prompt_embeds.device.type == "cpu"
    assert embeds.negative_prompt_embeds is not None
    assert embeds.prompt_embeds.shape == embeds.negative_prompt_embeds.shape
    assert embeds.prompt_embeds.shape[-1] == video_backend.pipeline.transformer.config.text_dim
    assert not torch.equal(embeds.prompt_embeds, embeds.negative_prompt_embeds)


def test_chunk_shape_dtype_and_steps(video_backend, embeds):
    steps = []
    frames = video_backend.render_chunk(
        make_request(embeds, make_latents(video_backend, 1)), lambda i, n: steps.append((i, n))
    )
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert frames.dtype == np.uint8
    assert steps == [(i, STEPS) for i in range(STEPS)]


def test_chunk_portrait_native_size(video_backend, embeds):
    latents = make_latents(video_backend, 2, height=WIDTH, width=HEIGHT)
    frames = video_backend.render_chunk(make_request(embeds, latents, height=WIDTH, width=HEIGHT))
    assert frames.shape == (FRAMES, WIDTH, HEIGHT, 3)


def test_chunk_is_deterministic_and_follows_the_noise(video_backend, embeds):
    latents = make_latents(video_backend, 3)
    first = video_backend.render_chunk(make_request(embeds, latents))
    again = video_backend.render_chunk(make_request(embeds, latents.clone(), seed=99))
    other = video_backend.render_chunk(make_request(embeds, make_latents(video_backend, 4)))
    assert np.array_equal(first, again)  # the seed field does not matter: the noise is given
    assert not np.array_equal(first, other)


def test_chunk_does_not_modify_the_given_latents(video_backend, embeds):
    latents = make_latents(video_backend, 5)
    before = latents.clone()
    video_backend.render_chunk(make_request(embeds, latents))
    assert torch.equal(latents, before)


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_frames": 16},  # not 4k+1
        {"height": 72},  # not a multiple of 16
        {"num_frames": 21},  # latents are for 17 frames
    ],
)
def test_chunk_refuses_what_the_pipeline_would_round(video_backend, embeds, overrides):
    with pytest.raises(ValueError):
        video_backend.render_chunk(make_request(embeds, make_latents(video_backend, 6), **overrides))


_CHILD = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from models.profiles import tiny_video_backend
from tests.models.conftest import make_latents, make_request
backend = tiny_video_backend()
embeds = backend.encode_prompt("a red fox runs through snow", "blurry")
frames = backend.render_chunk(make_request(embeds, make_latents(backend, 7)))
print(hashlib.sha256(frames.tobytes()).hexdigest())
"""


def test_chunk_is_identical_in_a_fresh_process(video_backend):
    embeds = video_backend.encode_prompt("a red fox runs through snow", "blurry")
    frames = video_backend.render_chunk(make_request(embeds, make_latents(video_backend, 7)))
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(torch.get_num_threads())],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == hashlib.sha256(frames.tobytes()).hexdigest()


def test_audio_shape_range_and_length(audio_backend):
    audio = audio_backend.render(
        AudioRequest(prompt="rain on a tin roof", duration_s=15.0, seed=1, num_inference_steps=STEPS)
    )
    assert audio.dtype == np.float32
    assert audio.shape[0] == 2
    assert audio.shape[1] >= 15 * audio_backend.sample_rate
    assert np.isfinite(audio).all()
    assert np.abs(audio).max() <= 1.0
    assert np.abs(audio).max() > 0.0


def test_audio_length_rounds_up_to_whole_samples(audio_backend):
    audio = audio_backend.render(AudioRequest(prompt="wind", duration_s=3.33333, seed=1, num_inference_steps=2))
    assert audio.shape == (2, int(np.ceil(3.33333 * audio_backend.sample_rate)))


def test_audio_longer_than_the_model_renders_in_pieces(audio_backend):
    duration = audio_backend.max_duration_s + 2.0
    audio = audio_backend.render(AudioRequest(prompt="wind", duration_s=duration, seed=1, num_inference_steps=2))
    assert audio.shape[1] >= duration * audio_backend.sample_rate
    assert np.isfinite(audio).all()


def test_audio_is_deterministic_from_the_seed(audio_backend):
    request = AudioRequest(prompt="birds", duration_s=3.0, seed=11, num_inference_steps=STEPS)
    first = audio_backend.render(request)
    assert np.array_equal(first, audio_backend.render(request))
    other = audio_backend.render(AudioRequest(prompt="birds", duration_s=3.0, seed=12, num_inference_steps=STEPS))
    assert not np.array_equal(first, other)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-weights")
    vace = root / "vace"
    tiny_vace_pipeline().save_pretrained(vace)
    return {"wan": save_tiny_wan(root / "wan"), "vace": vace, "audio": save_tiny_stable_audio(root / "audio")}


@pytest.mark.parametrize(
    "pipeline,key,build", [("WanPipeline", "wan", tiny_wan_pipeline), ("WanVACEPipeline", "vace", tiny_vace_pipeline)]
)
def test_wan_save_load_round_trip(saved, monkeypatch, pipeline, key, build):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    video_backend = WanVideoBackend(build())
    loaded = WanVideoBackend.from_pretrained(
        str(saved[key]), torch_dtype=torch.float32, device="cpu", pipeline=pipeline
    )
    assert type(loaded.pipeline).__name__ == pipeline
    assert loaded.max_sequence_length == video_backend.max_sequence_length
    assert loaded.latent_frame_shape(HEIGHT, WIDTH) == video_backend.latent_frame_shape(HEIGHT, WIDTH)
    embeds = video_backend.encode_prompt("a lighthouse at dusk")
    loaded_embeds = loaded.encode_prompt("a lighthouse at dusk")
    assert torch.equal(embeds.prompt_embeds, loaded_embeds.prompt_embeds)
    latents = make_latents(video_backend, 8)
    built = video_backend.render_chunk(make_request(embeds, latents))
    assert np.array_equal(built, loaded.render_chunk(make_request(loaded_embeds, latents)))


def test_stable_audio_save_load_round_trip(saved, audio_backend, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = StableAudioBackend.from_pretrained(
        str(saved["audio"]), torch_dtype=torch.float32, device="cpu", guidance_scale=audio_backend.guidance_scale
    )
    assert loaded.sample_rate == audio_backend.sample_rate
    request = AudioRequest(prompt="a hammer hits wood", duration_s=3.0, seed=3, num_inference_steps=STEPS)
    assert np.array_equal(audio_backend.render(request), loaded.render(request))


# -- conditioning (VACE) ----------------------------------------------------------------------------


def test_vace_conditioning_steers_the_chunk_deterministically(video_backend, embeds):
    from models.base import ChunkConditioning

    assert video_backend.supports_conditioning
    latents = make_latents(video_backend, 21)
    plain = video_backend.render_chunk(make_request(embeds, latents))
    key = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    key[:, : WIDTH // 2] = 255
    keyed = ChunkConditioning(frames={0: key, FRAMES - 1: key})
    with_keys = video_backend.render_chunk(make_request(embeds, latents, conditioning=keyed))
    assert with_keys.shape == plain.shape and not np.array_equal(with_keys, plain)
    assert np.array_equal(with_keys, video_backend.render_chunk(make_request(embeds, latents, conditioning=keyed)))
    # reference images take extra latent slots internally; the chunk keeps its frame count
    referenced = ChunkConditioning(reference_images=(key[:32, :32], key[:20, :40]))
    frames = video_backend.render_chunk(make_request(embeds, latents, conditioning=referenced))
    assert frames.shape == plain.shape and not np.array_equal(frames, plain)
    # an empty conditioning is text-to-video
    assert np.array_equal(
        plain, video_backend.render_chunk(make_request(embeds, latents, conditioning=ChunkConditioning()))
    )


def test_conditioning_outside_the_chunk_or_on_a_text_only_pipeline_is_refused(video_backend, embeds):
    from models.base import ChunkConditioning

    latents = make_latents(video_backend, 22)
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    with pytest.raises(ValueError, match="outside the chunk"):
        video_backend.render_chunk(
            make_request(embeds, latents, conditioning=ChunkConditioning(frames={FRAMES: frame}))
        )
    with pytest.raises(ValueError, match="shape"):
        video_backend.render_chunk(make_request(embeds, latents, conditioning=ChunkConditioning(frames={0: frame[:8]})))
    plain = WanVideoBackend(tiny_wan_pipeline())
    assert not plain.supports_conditioning
    with pytest.raises(ValueError, match="WanVACEPipeline"):
        plain.render_chunk(
            make_request(plain.encode_prompt("x"), latents, conditioning=ChunkConditioning(frames={0: frame}))
        )
