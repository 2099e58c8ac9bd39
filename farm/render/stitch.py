"""Streaming stitch: chunks of one result arrive in any order; frames leave in order, blended.

A frame is final once every chunk covering it has arrived. ``Stitcher.add`` returns the run of
frames that just became final, so the encoder can start with the first chunk and memory holds only
the chunks that still cover frames not yet emitted (about one chunk plus the overlap when chunks
arrive roughly in order).
"""

from __future__ import annotations

import numpy as np
import torch

from farm.domain.planner import ClipPlan
from kernels.blend import blend_frames


class Stitcher:
    """Blends one result's chunks (native size, uint8 ``[F, H, W, 3]``) back into a clip."""

    def __init__(self, plan: ClipPlan):
        self._plan = plan
        self._pending: dict[int, torch.Tensor] = {}
        self._arrived: set[int] = set()
        self._next_frame = 0
        bounds = {0, plan.render_frames}
        for c in plan.chunks:
            bounds.update((c.start, c.end))
        self._bounds = sorted(bounds)

    @property
    def frames_emitted(self) -> int:
        """Delivered frames emitted so far (never more than ``plan.num_frames``)."""
        return min(self._next_frame, self._plan.num_frames)

    @property
    def done(self) -> bool:
        """True once every delivered frame has been emitted."""
        return self._next_frame >= self._plan.num_frames

    @property
    def chunks_held(self) -> int:
        """Chunks kept in memory because they still cover frames not yet emitted."""
        return len(self._pending)

    def add(self, chunk_index: int, frames: np.ndarray | torch.Tensor) -> torch.Tensor | None:
        """Take chunk ``chunk_index``; return the frames that became final (or None)."""
        chunk = self._plan.chunks[chunk_index]
        if isinstance(frames, np.ndarray) and not frames.flags.writeable:
            frames = frames.copy()  # arrays from Ray's object store are read-only views
        block = torch.as_tensor(frames)
        if block.shape[0] != chunk.num_frames or block.dtype != torch.uint8:
            raise ValueError(
                f"chunk {chunk_index} must be uint8 with {chunk.num_frames} frames, "
                f"got {block.dtype} {tuple(block.shape)}"
            )
        if chunk_index in self._arrived:
            return None  # a retried chunk that already arrived: identical frames, nothing to do
        self._arrived.add(chunk_index)
        self._pending[chunk_index] = block

        out = []
        for a, b in zip(self._bounds, self._bounds[1:]):
            if b <= self._next_frame:
                continue
            if self._next_frame >= self._plan.num_frames:
                break
            cover = self._plan.chunks_covering(a)
            if any(c.index not in self._arrived for c in cover):
                break
            blocks = [self._pending[c.index][a - c.start : b - c.start] for c in cover]
            weights = [torch.from_numpy(self._plan.weights[c.index][a - c.start : b - c.start]) for c in cover]
            out.append(blend_frames(blocks, weights))
            self._next_frame = b
        for index in [i for i in self._pending if self._plan.chunks[i].end <= self._next_frame]:
            del self._pending[index]
        if not out:
            return None
        final = torch.cat(out) if len(out) > 1 else out[0]
        overshoot = self._next_frame - self._plan.num_frames
        if overshoot > 0:  # padding frames of the render grid are never delivered
            final = final[: final.shape[0] - overshoot]
        return final if final.shape[0] else None
