"""Compute kernels on frames: torch reference implementations with stable signatures, and Triton
twins chosen at run time (Triton for CUDA frames; see :mod:`kernels.backend`).

Importing this package never imports triton.
"""

from kernels.backend import Backend, resolve_backend
from kernels.blend import blend_frames
from kernels.resize import resize_frames
from kernels.yuv import rgb_to_yuv420p, yuv420p_to_rgb

__all__ = ["Backend", "blend_frames", "resize_frames", "resolve_backend", "rgb_to_yuv420p", "yuv420p_to_rgb"]
