"""Temporal planning: a clip of N frames becomes K overlapping chunks of the model's window.

The Wan-family VAE compresses time by ``temporal_stride`` (4): a window of ``4k+1`` pixel frames is
``k+1`` latent frames. To let every chunk take its noise from one global latent noise tensor, the
clip is rendered on a grid of ``R = 4m+1 >= N`` frames and every chunk starts on a multiple of the
stride; the last chunk is aligned to the end of that grid and the (at most ``stride-1``) padding
frames past ``N`` are dropped after stitching.

Blend weights: every chunk gets a ramp up over its overlap with the previous chunk and a ramp down
over its overlap with the next one (linear or raised cosine); the weights of all chunks covering a
frame are normalised to sum to exactly 1. For plain pairwise overlaps the two ramps are already
complementary, so the normalisation changes nothing; it only matters where the end-aligned last
chunk reaches back over more than one predecessor.

Example::

    >>> plan = plan_clip(96, window_frames=17, overlap_frames=5, temporal_stride=4)
    >>> plan.render_frames, len(plan.chunks), [c.start for c in plan.chunks][:3]
    (97, 8, [0, 12, 24])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from farm.domain.errors import PlanError

BlendShape = Literal["linear", "cosine"]


@dataclass(frozen=True, kw_only=True)
class ChunkPlan:
    """One temporal chunk: pixel frames ``[start, start + num_frames)`` of the render grid."""

    index: int
    start: int
    num_frames: int
    #: First global latent frame of the chunk and how many latent frames it spans.
    latent_start: int
    latent_frames: int

    @property
    def end(self) -> int:
        """One past the chunk's last pixel frame."""
        return self.start + self.num_frames


@dataclass(frozen=True, kw_only=True)
class ClipPlan:
    """How one result's frames are cut into chunks and blended back together."""

    #: Frames delivered (``round(duration x fps)``).
    num_frames: int
    #: Frames rendered: ``num_frames`` rounded up onto the ``stride*m + 1`` grid.
    render_frames: int
    window_frames: int
    overlap_frames: int
    temporal_stride: int
    blend: BlendShape
    chunks: tuple[ChunkPlan, ...]
    #: Per chunk, the blend weight of each of its frames (float64, length ``num_frames`` of the chunk).
    weights: tuple[np.ndarray, ...]

    @property
    def latent_frames(self) -> int:
        """Length of the result's global latent noise tensor along time."""
        return (self.render_frames - 1) // self.temporal_stride + 1

    def chunks_covering(self, frame: int) -> list[ChunkPlan]:
        """Chunks whose window contains render-grid ``frame``."""
        return [c for c in self.chunks if c.start <= frame < c.end]

    @property
    def rendered_frames_total(self) -> int:
        """Pixel frames rendered over all chunks (overlaps counted twice): the work of the clip."""
        return sum(c.num_frames for c in self.chunks)


def _ramp(length: int, shape: BlendShape) -> np.ndarray:
    """Rising weights over ``length`` frames, strictly inside (0, 1), complementary to their mirror."""
    x = np.arange(1, length + 1, dtype=np.float64) / (length + 1)
    if shape == "linear":
        return x
    if shape == "cosine":
        return 0.5 - 0.5 * np.cos(np.pi * x)
    raise PlanError(f"blend must be 'linear' or 'cosine', got {shape!r}")


def plan_clip(
    num_frames: int,
    *,
    window_frames: int,
    overlap_frames: int,
    temporal_stride: int = 4,
    blend: BlendShape = "cosine",
) -> ClipPlan:
    """Cut ``num_frames`` into overlapping chunks of ``window_frames``.

    Raises ``PlanError`` (quoting the values) when the window is not ``k*stride+1``, the overlap
    leaves no stride on the latent grid, or the overlap is not below half the window.
    """
    if num_frames < 1:
        raise PlanError(f"num_frames must be >= 1, got {num_frames}")
    if temporal_stride < 1:
        raise PlanError(f"temporal_stride must be >= 1, got {temporal_stride}")
    if window_frames < 1 or (window_frames - 1) % temporal_stride:
        raise PlanError(f"window_frames must be k*{temporal_stride}+1, got {window_frames}")
    step = window_frames - overlap_frames
    if overlap_frames < 0 or step <= 0 or step % temporal_stride:
        raise PlanError(
            f"window_frames - overlap_frames must be a positive multiple of {temporal_stride}, "
            f"got window_frames={window_frames}, overlap_frames={overlap_frames}"
        )
    if 2 * overlap_frames > window_frames:
        raise PlanError(
            f"overlap_frames must be at most half the window, got overlap_frames={overlap_frames}, "
            f"window_frames={window_frames}"
        )
    _ramp(1, blend)  # validates the shape name early

    render_frames = math.ceil((num_frames - 1) / temporal_stride) * temporal_stride + 1
    if render_frames <= window_frames:
        starts = [0]
        window = render_frames
    else:
        window = window_frames
        count = math.ceil((render_frames - window) / step) + 1
        starts = [i * step for i in range(count - 1)] + [render_frames - window]

    chunks = tuple(
        ChunkPlan(
            index=i,
            start=s,
            num_frames=window,
            latent_start=s // temporal_stride,
            latent_frames=(window - 1) // temporal_stride + 1,
        )
        for i, s in enumerate(starts)
    )
    raw = []
    for i, c in enumerate(chunks):
        w = np.ones(c.num_frames, dtype=np.float64)
        if i > 0:
            lead = chunks[i - 1].end - c.start
            w[:lead] *= _ramp(lead, blend)
        if i + 1 < len(chunks):
            trail = c.end - chunks[i + 1].start
            w[c.num_frames - trail :] *= _ramp(trail, blend)[::-1]
        raw.append(w)
    total = np.zeros(render_frames, dtype=np.float64)
    for c, w in zip(chunks, raw):
        total[c.start : c.end] += w
    weights = tuple(w / total[c.start : c.end] for c, w in zip(chunks, raw))
    return ClipPlan(
        num_frames=num_frames,
        render_frames=render_frames,
        window_frames=window,
        overlap_frames=overlap_frames if len(chunks) > 1 else 0,
        temporal_stride=temporal_stride,
        blend=blend,
        chunks=chunks,
        weights=weights,
    )
