"""Weighted blend of the frames that several overlapping chunks rendered for the same positions.

Torch reference kernel, with a Triton twin chosen at run time (:mod:`kernels.backend`); the
planner guarantees the weights of one frame sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kernels.backend import Backend, resolve_backend


def check_blend_inputs(frames: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> None:
    """Raise ``ValueError`` unless there is one weight vector per frame block."""
    if len(frames) != len(weights) or not frames:
        raise ValueError(f"need one weight vector per frame block, got {len(frames)} and {len(weights)}")


def blend_frames(
    frames: Sequence[torch.Tensor], weights: Sequence[torch.Tensor], *, backend: Backend | None = None
) -> torch.Tensor:
    """Blend ``frames[i]`` (uint8 ``[n, ...]``) with per-frame ``weights[i]`` (``[n]``).

    The frames are RGB ``[n, H, W, 3]`` or one plane of yuv420p frames, ``[n, H, W]`` (Y) or
    ``[n, H/2, W/2]`` (U, V): every sample of frame ``j`` gets ``weights[i][j]``, so the three
    planes of a yuv420p chunk blend with the same weights. Returns uint8 of the same shape: ``round(sum_i weights[i] * frames[i])`` (half to even, the
    sum in float32 in block order). A single input with weight 1 comes back unchanged (no float
    round trip), so frames outside overlaps are exact. ``backend`` picks torch or Triton
    (:mod:`kernels.backend`; by default Triton for CUDA frames).
    """
    check_blend_inputs(frames, weights)
    if len(frames) == 1 and bool(torch.all(weights[0] == 1)):
        return frames[0]
    if resolve_backend(backend, frames[0]) == "triton":
        from kernels.triton_kernels import blend_frames_triton

        return blend_frames_triton(frames, weights)
    return blend_frames_torch(frames, weights)


def blend_frames_torch(frames: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """The torch reference of :func:`blend_frames`, on the frames' device."""
    check_blend_inputs(frames, weights)
    if len(frames) == 1 and bool(torch.all(weights[0] == 1)):
        return frames[0]
    acc = torch.zeros(frames[0].shape, dtype=torch.float32, device=frames[0].device)
    per_frame = (-1,) + (1,) * (acc.ndim - 1)  # one weight per frame, whatever the frame's shape
    for block, w in zip(frames, weights):
        acc.add_(block.to(torch.float32) * w.to(acc.device, torch.float32).view(per_frame))
    return acc.round_().clamp_(0, 255).to(torch.uint8)
