"""Resize frames from the model's native size to the output size.

Torch reference kernel: bilinear with antialiasing (``F.interpolate(..., mode="bilinear",
antialias=True, align_corners=False)``). On the CPU it runs directly on uint8 frames in
channels-last layout, which hits torch's vectorised uint8 path (about 4x faster at 1080p on a CPU
than a float32 round trip, and no float intermediate in memory) and matches the float computation
within 1 level of 255; on other devices (CUDA has no uint8 antialiased kernel) it goes through
float32. The Triton twin (chosen at run time, :mod:`kernels.backend`) uses the same filter taps,
:func:`antialias_bilinear_taps`.

yuv420p frames are resized plane by plane with the same filter (:func:`resize_plane`,
:func:`resize_yuv420p`): Y to the output size, U and V to half of it. Chroma is sited at the
centre of each 2x2 luma block (what :func:`kernels.yuv.rgb_to_yuv420p` and swscale produce), so a
chroma plane scales about the same picture edges as the luma plane (``align_corners=False``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kernels.backend import Backend, resolve_backend


def check_resize_inputs(frames: torch.Tensor, width: int, height: int) -> None:
    """Raise ``ValueError`` unless ``frames`` is uint8 ``[n, H, W, 3]`` and the size is positive."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 [n, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    if width < 1 or height < 1:
        raise ValueError(f"output size must be positive, got {width}x{height}")


def resize_frames(frames: torch.Tensor, width: int, height: int, *, backend: Backend | None = None) -> torch.Tensor:
    """Resize uint8 ``[n, H, W, 3]`` frames to uint8 ``[n, height, width, 3]`` (contiguous).

    Frames already at the size come back unchanged. ``backend`` picks torch or Triton
    (:mod:`kernels.backend`; by default Triton for CUDA frames).
    """
    check_resize_inputs(frames, width, height)
    if tuple(frames.shape[1:3]) == (height, width):
        return frames
    if resolve_backend(backend, frames) == "triton":
        from kernels.triton_kernels import resize_frames_triton

        return resize_frames_triton(frames, width, height)
    return resize_frames_torch(frames, width, height)


def resize_frames_torch(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The torch reference of :func:`resize_frames`, on the frames' device."""
    check_resize_inputs(frames, width, height)
    if tuple(frames.shape[1:3]) == (height, width):
        return frames
    # NHWC viewed as NCHW is exactly channels-last; the result is channels-last too, so the
    # permute back to NHWC is contiguous without a copy.
    nchw = frames.contiguous().permute(0, 3, 1, 2)
    if frames.device.type != "cpu":
        nchw = nchw.to(torch.float32)
    resized = F.interpolate(nchw, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    if resized.dtype != torch.uint8:
        resized = resized.round_().clamp_(0, 255).to(torch.uint8)
    return resized.permute(0, 2, 3, 1).contiguous()


def check_plane_inputs(planes: torch.Tensor, width: int, height: int) -> None:
    """Raise ``ValueError`` unless ``planes`` is uint8 ``[n, H, W]`` and the size is positive."""
    if planes.ndim != 3 or planes.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 plane [n, H, W], got {planes.dtype} {tuple(planes.shape)}")
    if width < 1 or height < 1:
        raise ValueError(f"output size must be positive, got {width}x{height}")


def resize_plane(planes: torch.Tensor, width: int, height: int, *, backend: Backend | None = None) -> torch.Tensor:
    """Resize one plane of each frame, uint8 ``[n, H, W]``, to uint8 ``[n, height, width]`` (contiguous).

    The filter of :func:`resize_frames` (antialiased bilinear) on a single channel; a plane already
    at the size comes back unchanged. ``backend`` picks torch or Triton (:mod:`kernels.backend`).
    """
    check_plane_inputs(planes, width, height)
    if tuple(planes.shape[1:]) == (height, width):
        return planes
    if resolve_backend(backend, planes) == "triton":
        from kernels.triton_kernels import resize_plane_triton

        return resize_plane_triton(planes, width, height)
    return resize_plane_torch(planes, width, height)


def resize_plane_torch(planes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The torch reference of :func:`resize_plane`, on the planes' device (uint8 path on the CPU)."""
    check_plane_inputs(planes, width, height)
    if tuple(planes.shape[1:]) == (height, width):
        return planes
    nchw = planes.contiguous().unsqueeze(1)
    if planes.device.type != "cpu":
        nchw = nchw.to(torch.float32)
    resized = F.interpolate(nchw, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    if resized.dtype != torch.uint8:
        resized = resized.round_().clamp_(0, 255).to(torch.uint8)
    return resized.squeeze(1).contiguous()


def resize_yuv420p(
    y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, width: int, height: int, *, backend: Backend | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resize yuv420p planes to a ``width`` x ``height`` picture: Y to that size, U and V to
    ``ceil(width / 2)`` x ``ceil(height / 2)``; each plane with :func:`resize_plane`.

    >>> y, u = torch.zeros(1, 4, 6, dtype=torch.uint8), torch.zeros(1, 2, 3, dtype=torch.uint8)
    >>> [tuple(p.shape) for p in resize_yuv420p(y, u, u, 12, 8)]
    [(1, 8, 12), (1, 4, 6), (1, 4, 6)]
    """
    chroma_w, chroma_h = math.ceil(width / 2), math.ceil(height / 2)
    return (
        resize_plane(y, width, height, backend=backend),
        resize_plane(u, chroma_w, chroma_h, backend=backend),
        resize_plane(v, chroma_w, chroma_h, backend=backend),
    )


def antialias_bilinear_taps(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The taps of torch's antialiased bilinear resampling along one axis.

    Returns ``(first, weights)``: int32 ``first [out_size]``, the first input index each output
    reads, and float32 ``weights [out_size, taps]`` (zero-padded; each row sums to 1). Output
    ``i`` is ``sum_k weights[i, k] * input[first[i] + k]``. The same formula as ATen's
    ``_compute_weights_aa`` (``UpSampleKernel.cpp``), in float64: a triangle filter of support
    ``max(scale, 1)`` centred on ``scale * (i + 0.5)``, ``scale = in_size / out_size``.

    >>> first, weights = antialias_bilinear_taps(4, 2)  # 2x down: a triangle 4 input pixels wide
    >>> first.tolist(), [[round(w * 7, 3) for w in row] for row in weights.tolist()]
    ([0, 1], [[3.0, 3.0, 1.0], [1.0, 3.0, 3.0]])
    """
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    taps = 2 * math.ceil(support) + 1
    center = scale * (torch.arange(out_size, dtype=torch.float64) + 0.5)
    # C++ truncates toward zero before clamping at 0; trunc() does the same.
    first = torch.clamp(torch.trunc(center - support + 0.5), min=0)
    last = torch.clamp(torch.trunc(center + support + 0.5), max=in_size)
    k = torch.arange(taps, dtype=torch.float64)
    weights = torch.clamp(1.0 - ((first[:, None] + k - center[:, None] + 0.5) * invscale).abs(), min=0.0)
    weights = torch.where(k < (last - first)[:, None], weights, 0.0)
    weights = weights[:, : int((last - first).max())]  # the padding ATen keeps is all zeros
    total = weights.sum(dim=1, keepdim=True)
    weights = torch.where(total != 0, weights / total, weights)
    return first.to(torch.int32), weights.to(torch.float32)
