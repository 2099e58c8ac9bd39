"""Shared fixtures of the model tests: tiny backends built once per session, and helpers."""

from __future__ import annotations

import pytest
import torch

from models.base import ChunkRequest, PromptEmbeds
from models.profiles import tiny_audio_backend, tiny_video_backend
from models.stable_audio import StableAudioBackend
from models.wan import WanVideoBackend

#: Native size of a 16:9 clip under the tiny default profile.
WIDTH, HEIGHT = 112, 64
FRAMES = 17
STEPS = 4


@pytest.fixture(scope="session")
def video_backend() -> WanVideoBackend:
    return tiny_video_backend()


@pytest.fixture(scope="session")
def audio_backend() -> StableAudioBackend:
    return tiny_audio_backend()


@pytest.fixture(scope="session")
def embeds(video_backend: WanVideoBackend) -> PromptEmbeds:
    return video_backend.encode_prompt("a red fox runs through snow", "blurry")


def make_latents(backend: WanVideoBackend, seed: int, frames: int = FRAMES, height: int = HEIGHT, width: int = WIDTH):
    """Seeded noise of the shape a chunk of ``frames`` at ``width`` x ``height`` expects."""
    return torch.randn(backend.latent_shape(frames, height, width), generator=torch.Generator().manual_seed(seed))


def make_request(embeds: PromptEmbeds, latents: torch.Tensor, **overrides) -> ChunkRequest:
    """A chunk request for the tiny default's native 16:9 size, with ``overrides`` applied."""
    fields = dict(
        chunk_index=0,
        prompt=embeds,
        latents=latents,
        num_frames=FRAMES,
        height=HEIGHT,
        width=WIDTH,
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        seed=0,
    )
    fields.update(overrides)
    return ChunkRequest(**fields)
