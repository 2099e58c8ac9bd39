"""Streaming stitch: chunks of one result arrive in any order; frames leave in order, blended.

A frame is final once every chunk covering it has arrived. ``Stitcher.add`` returns the run of
frames that just became final, so the encoder can start with the first chunk and memory holds only
the chunks that still cover frames not yet emitted (about one chunk plus the overlap when chunks
arrive roughly in order).

Chunks come as the workers send them: uint8 RGB ``[F, H, W, 3]``, or yuv420p planes
(``Yuv420Frames``). Each plane is blended on its own with the frame's weights (the same for Y, U
and V), so both sides of an overlap are blended in the representation they travelled in, and a
result's chunks must all use the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from farm.domain.planner import ClipPlan
from farm.workers.messages import Yuv420Frames
from kernels.blend import blend_frames


@dataclass(frozen=True)
class Yuv420Planes:
    """Stitched yuv420p frames as torch planes: ``y`` uint8 ``[n, H, W]``, ``u`` and ``v``
    ``[n, ceil(H/2), ceil(W/2)]``. ``len`` counts frames; slicing cuts frames from every plane."""

    y: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor

    def __len__(self) -> int:
        return self.y.shape[0]

    def __getitem__(self, frames: slice) -> Yuv420Planes:
        return Yuv420Planes(self.y[frames], self.u[frames], self.v[frames])


def _tensor(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        array = array.copy()  # arrays from Ray's object store are read-only views
    return torch.as_tensor(array)


class Stitcher:
    """Blends one result's chunks (native size; RGB or yuv420p planes) back into a clip."""

    def __init__(self, plan: ClipPlan):
        self._plan = plan
        #: Per chunk held, its planes: ``(rgb,)`` or ``(y, u, v)``.
        self._pending: dict[int, tuple[torch.Tensor, ...]] = {}
        self._arrived: set[int] = set()
        self._next_frame = 0
        #: "rgb" or "yuv420p" once the first chunk has arrived.
        self._wire_format: str | None = None
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

    def add(
        self, chunk_index: int, frames: np.ndarray | torch.Tensor | Yuv420Frames
    ) -> torch.Tensor | Yuv420Planes | None:
        """Take chunk ``chunk_index``; return the frames that became final (or None): RGB
        ``[n, H, W, 3]`` for RGB chunks, ``Yuv420Planes`` for yuv420p ones."""
        chunk = self._plan.chunks[chunk_index]
        if isinstance(frames, Yuv420Frames):
            block, wire_format = tuple(_tensor(p) for p in (frames.y, frames.u, frames.v)), "yuv420p"
        else:
            block, wire_format = (_tensor(frames),), "rgb"
        if any(p.shape[0] != chunk.num_frames or p.dtype != torch.uint8 for p in block):
            raise ValueError(
                f"chunk {chunk_index} must be uint8 with {chunk.num_frames} frames, got "
                + ", ".join(f"{p.dtype} {tuple(p.shape)}" for p in block)
            )
        if self._wire_format is None:
            self._wire_format = wire_format
        elif wire_format != self._wire_format:
            raise ValueError(
                f"chunk {chunk_index} arrived as {wire_format}, the result's earlier chunks as "
                f"{self._wire_format}: a result's chunks must all travel in one wire format"
            )
        if chunk_index in self._arrived:
            return None  # a retried chunk that already arrived: identical frames, nothing to do
        self._arrived.add(chunk_index)
        self._pending[chunk_index] = block

        out: list[tuple[torch.Tensor, ...]] = []
        for a, b in zip(self._bounds, self._bounds[1:]):
            if b <= self._next_frame:
                continue
            if self._next_frame >= self._plan.num_frames:
                break
            cover = self._plan.chunks_covering(a)
            if any(c.index not in self._arrived for c in cover):
                break
            weights = [torch.from_numpy(self._plan.weights[c.index][a - c.start : b - c.start]) for c in cover]
            out.append(
                tuple(
                    blend_frames([self._pending[c.index][k][a - c.start : b - c.start] for c in cover], weights)
                    for k in range(len(block))
                )
            )
            self._next_frame = b
        for index in [i for i in self._pending if self._plan.chunks[i].end <= self._next_frame]:
            del self._pending[index]
        if not out:
            return None
        planes = [torch.cat(run) if len(run) > 1 else run[0] for run in zip(*out)]
        overshoot = self._next_frame - self._plan.num_frames
        if overshoot > 0:  # padding frames of the render grid are never delivered
            planes = [p[: p.shape[0] - overshoot] for p in planes]
        if not planes[0].shape[0]:
            return None
        return Yuv420Planes(*planes) if len(planes) == 3 else planes[0]
