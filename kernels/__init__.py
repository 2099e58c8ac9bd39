"""Compute kernels on frames: torch reference implementations with stable signatures."""

from kernels.blend import blend_frames
from kernels.resize import resize_frames

__all__ = ["blend_frames", "resize_frames"]
