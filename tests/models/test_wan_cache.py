"""The VACE backend encodes a text-only chunk's blank conditioning once per shape, bit-identically."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import ChunkConditioning
from models.tiny import tiny_vace_pipeline
from models.wan import WanVideoBackend

from .conftest import FRAMES, HEIGHT, WIDTH, make_latents, make_request


def fresh_backend(cache_size: int) -> WanVideoBackend:
    """A tiny VACE backend of its own (counters start at zero), same weights as the default's."""
    return WanVideoBackend(tiny_vace_pipeline(), conditioning_cache_size=cache_size)


@pytest.fixture(scope="module")
def uncached() -> WanVideoBackend:
    return fresh_backend(0)


def test_text_only_chunks_encode_their_blank_conditioning_once_per_shape(embeds):
    backend = fresh_backend(4)
    for seed in range(3):
        backend.render_chunk(make_request(embeds, make_latents(backend, seed)))
    for seed in range(2):  # another shape: portrait
        latents = make_latents(backend, seed, height=WIDTH, width=HEIGHT)
        backend.render_chunk(make_request(embeds, latents, height=WIDTH, width=HEIGHT))
    info = backend.conditioning_cache_info()
    assert (info.misses, info.hits, info.currsize) == (2, 3, 2)


def test_reusing_the_conditioning_changes_no_frame(embeds, uncached):
    cached = fresh_backend(4)
    for seed in (5, 6):  # the second chunk reuses the first one's conditioning
        request = make_request(embeds, make_latents(cached, seed), chunk_index=seed)
        assert np.array_equal(cached.render_chunk(request), uncached.render_chunk(request))
    assert cached.conditioning_cache_info().hits == 1
    assert uncached.conditioning_cache_info().currsize == 0


def test_chunks_with_keyframes_or_references_are_encoded_every_time(embeds, uncached):
    backend = fresh_backend(4)
    keyframe = np.full((HEIGHT, WIDTH, 3), 200, dtype=np.uint8)
    reference = np.full((HEIGHT // 2, WIDTH // 2, 3), 30, dtype=np.uint8)
    for conditioning in (
        ChunkConditioning(frames={0: keyframe}),
        ChunkConditioning(reference_images=(reference,)),
    ):
        request = make_request(embeds, make_latents(backend, 7), conditioning=conditioning)
        assert np.array_equal(backend.render_chunk(request), uncached.render_chunk(request))
    info = backend.conditioning_cache_info()
    assert (info.hits, info.misses) == (0, 0)


def test_a_primed_shape_renders_its_first_chunk_from_the_cache(embeds, uncached):
    backend = fresh_backend(4)
    backend.prime(FRAMES, HEIGHT, WIDTH)
    request = make_request(embeds, make_latents(backend, 8))
    assert np.array_equal(backend.render_chunk(request), uncached.render_chunk(request))
    info = backend.conditioning_cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_the_cache_keeps_at_most_maxsize_shapes(embeds):
    backend = fresh_backend(1)
    sizes = [(HEIGHT, WIDTH), (WIDTH, HEIGHT), (HEIGHT, WIDTH)]
    for height, width in sizes:
        latents = make_latents(backend, 0, height=height, width=width)
        backend.render_chunk(make_request(embeds, latents, height=height, width=width))
    info = backend.conditioning_cache_info()
    assert (info.misses, info.hits, info.currsize, info.maxsize) == (3, 0, 1, 1)


def test_a_negative_cache_size_is_refused():
    with pytest.raises(ValueError, match="conditioning_cache_size must be >= 0, got -1"):
        WanVideoBackend(tiny_vace_pipeline(), conditioning_cache_size=-1)
