"""Resize frames from the model's native size to the output size.

Torch reference kernel: bilinear with antialiasing, run directly on uint8 frames in channels-last
layout, which hits torch's vectorised uint8 path (about 4x faster at 1080p on a CPU than a
float32 round trip, and no float intermediate in memory). Matches the float computation within
1 level of 255.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_frames(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize uint8 ``[n, H, W, 3]`` frames to uint8 ``[n, height, width, 3]`` (contiguous)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 [n, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    if tuple(frames.shape[1:3]) == (height, width):
        return frames
    # NHWC viewed as NCHW is exactly channels-last; the result is channels-last too, so the
    # permute back to NHWC is contiguous without a copy.
    nchw = frames.contiguous().permute(0, 3, 1, 2)
    resized = F.interpolate(nchw, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized.permute(0, 2, 3, 1).contiguous()
