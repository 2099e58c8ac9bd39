"""Weighted blend of the frames that several overlapping chunks rendered for the same positions.

Torch reference kernel; the planner guarantees the weights of one frame sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def blend_frames(frames: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Blend ``frames[i]`` (uint8 ``[n, H, W, 3]``) with per-frame ``weights[i]`` (``[n]``).

    Returns uint8 ``[n, H, W, 3]``: ``round(sum_i weights[i] * frames[i])``. A single input with
    weight 1 comes back unchanged (no float round trip), so frames outside overlaps are exact.
    """
    if len(frames) != len(weights) or not frames:
        raise ValueError(f"need one weight vector per frame block, got {len(frames)} and {len(weights)}")
    if len(frames) == 1 and bool(torch.all(weights[0] == 1)):
        return frames[0]
    acc = torch.zeros(frames[0].shape, dtype=torch.float32)
    for block, w in zip(frames, weights):
        acc.add_(block.to(torch.float32) * w.to(torch.float32).view(-1, 1, 1, 1))
    return acc.round_().clamp_(0, 255).to(torch.uint8)
