"""Triton twins of the frame kernels: blend, resize (RGB frames or one yuv420p plane), RGB -> yuv420p.

Each ``*_triton`` function takes and returns what its torch reference does (``kernels.blend``,
``kernels.resize``, ``kernels.yuv``) and equals it within 1 level of 255; the public kernels pick
between the two at run time (:mod:`kernels.backend`). Importing this module imports triton, so
nothing else in :mod:`kernels` imports it at module level.

``@triton.jit`` decides when this module is imported whether the kernels compile for the GPU or
run in Triton's CPU interpreter (``TRITON_INTERPRET=1``, which must stay set while they run);
under the interpreter they accept CPU tensors, which is how the tests run them without a GPU
(slowly: keep shapes small).

All three kernels read uint8 frames, compute in float32 and round half to even like
``torch.round``, so the only differences from the references are float32 summation order and
fused multiply-adds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from kernels.backend import TRITON_INTERPRET_ENV
from kernels.blend import check_blend_inputs
from kernels.resize import antialias_bilinear_taps, check_plane_inputs, check_resize_inputs
from kernels.yuv import (
    C_OFFSET,
    CHROMA_TAP_START,
    CHROMA_TAPS,
    U_ROW,
    V_ROW,
    Y_OFFSET,
    Y_ROW,
    ChromaFilter,
    check_rgb_frames,
    chroma_filter_taps,
)

#: Whether the kernels below were decorated for Triton's CPU interpreter.
INTERPRETED = os.environ.get(TRITON_INTERPRET_ENV) == "1"

# Elements per program for the element-wise kernels (blend, luma); tiles for the 2-D ones.
_BLOCK = 1024
_RESIZE_TILE = (8, 128)  # output rows x (output columns * 3 channels)
_CHROMA_TILE = (8, 64)  # chroma rows x chroma columns


def _check_device(frames: torch.Tensor) -> None:
    if not frames.is_cuda and not INTERPRETED:
        raise ValueError(
            f"the Triton kernels got {frames.device.type} tensors but were compiled for the GPU: "
            f"set {TRITON_INTERPRET_ENV}=1 before kernels.triton_kernels is first imported"
        )


@triton.jit
def _round_to_uint8(x):
    """Round half to even (as ``torch.round``), clamp to 0..255, cast to uint8."""
    r = tl.floor(x + 0.5)
    odd = (r - 2.0 * tl.floor(r * 0.5)) == 1.0
    r = tl.where(((r - x) == 0.5) & odd, r - 1.0, r)
    return tl.minimum(tl.maximum(r, 0.0), 255.0).to(tl.uint8)


# ---------------------------------------------------------------------------------------- blend


@triton.jit
def _blend_kernel(block_ptrs, weights, out, num_blocks, num_frames, frame_numel, BLOCK: tl.constexpr):
    # grid: (blocks of one frame, frames). The input blocks are separate tensors (slices of
    # different chunks): their addresses come in as an int64 table, so any number of them is
    # blended in one pass without stacking them first.
    frame = tl.program_id(1)
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < frame_numel
    index = frame.to(tl.int64) * frame_numel + offsets
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in range(num_blocks):
        block = tl.load(block_ptrs + k).to(tl.pointer_type(tl.uint8))
        weight = tl.load(weights + k * num_frames + frame)
        pixels = tl.load(block + index, mask=mask, other=0)
        acc += pixels.to(tl.float32) * weight
    tl.store(out + index, _round_to_uint8(acc), mask=mask)


def blend_frames_triton(frames: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Triton twin of :func:`kernels.blend.blend_frames_torch`."""
    check_blend_inputs(frames, weights)
    if len(frames) == 1 and bool(torch.all(weights[0] == 1)):
        return frames[0]
    first = frames[0]
    _check_device(first)
    for block in frames:
        if block.shape != first.shape or block.dtype != torch.uint8 or block.device != first.device:
            raise ValueError(
                f"frame blocks must all be uint8 {tuple(first.shape)} on {first.device}, "
                f"got {block.dtype} {tuple(block.shape)} on {block.device}"
            )
    blocks = [block.contiguous() for block in frames]  # kept alive until the kernel has run
    num_frames = first.shape[0]
    table = torch.tensor([b.data_ptr() for b in blocks], dtype=torch.int64, device=first.device)
    weight_table = torch.stack([w.to(first.device, torch.float32).reshape(num_frames) for w in weights])
    out = torch.empty_like(blocks[0])
    frame_numel = first[0].numel() if num_frames else 0
    if out.numel():
        grid = (triton.cdiv(frame_numel, _BLOCK), num_frames)
        _blend_kernel[grid](table, weight_table, out, len(blocks), num_frames, frame_numel, BLOCK=_BLOCK)
    return out


# --------------------------------------------------------------------------------------- resize


@triton.jit
def _resize_kernel(
    src,
    dst,
    row_first,
    row_weights,
    col_first,
    col_weights,
    in_h,
    in_w,
    out_h,
    out_w,
    row_taps,
    col_taps,
    CHANNELS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_Q: tl.constexpr,
):
    # grid: (output row tiles, output column tiles, frames). A tile's columns are interleaved
    # (x, channel) pairs q = CHANNELS * x + c, so loads and stores of RGB pixels are contiguous
    # (CHANNELS = 3; 1 for a single yuv420p plane).
    frame = tl.program_id(2)
    rows = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    q = tl.program_id(1) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    cols = q // CHANNELS
    channel = q % CHANNELS
    row_ok = rows < out_h
    col_ok = q < out_w * CHANNELS
    y0 = tl.load(row_first + rows, mask=row_ok, other=0)
    x0 = tl.load(col_first + cols, mask=col_ok, other=0)
    frame_src = src + frame.to(tl.int64) * in_h * in_w * CHANNELS
    acc = tl.zeros([BLOCK_H, BLOCK_Q], dtype=tl.float32)
    for ky in range(row_taps):
        wy = tl.load(row_weights + rows * row_taps + ky, mask=row_ok, other=0.0)
        y = tl.minimum(y0 + ky, in_h - 1)  # padded taps have weight 0; just stay in bounds
        row_acc = tl.zeros([BLOCK_H, BLOCK_Q], dtype=tl.float32)
        for kx in range(col_taps):
            wx = tl.load(col_weights + cols * col_taps + kx, mask=col_ok, other=0.0)
            x = tl.minimum(x0 + kx, in_w - 1)
            offsets = (y[:, None] * in_w + x[None, :]) * CHANNELS + channel[None, :]
            pixels = tl.load(frame_src + offsets, mask=row_ok[:, None] & col_ok[None, :], other=0)
            row_acc += pixels.to(tl.float32) * wx[None, :]
        acc += row_acc * wy[:, None]
    out_offsets = frame.to(tl.int64) * out_h * out_w * CHANNELS + rows[:, None] * (out_w * CHANNELS) + q[None, :]
    tl.store(dst + out_offsets, _round_to_uint8(acc), mask=row_ok[:, None] & col_ok[None, :])


def resize_frames_triton(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Triton twin of :func:`kernels.resize.resize_frames_torch` (antialiased bilinear, in float32).

    One pass per output pixel over its rows x columns taps, with no rounded intermediate: it
    equals the float32 ``F.interpolate`` within float rounding, and the CPU reference's uint8
    path (which rounds between its two passes) within 1 level.
    """
    check_resize_inputs(frames, width, height)
    if tuple(frames.shape[1:3]) == (height, width):
        return frames
    return _resize_interleaved(frames, width, height)


def resize_plane_triton(planes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Triton twin of :func:`kernels.resize.resize_plane_torch`: the same kernel on one channel."""
    check_plane_inputs(planes, width, height)
    if tuple(planes.shape[1:]) == (height, width):
        return planes
    return _resize_interleaved(planes.unsqueeze(-1), width, height).squeeze(-1)


def _resize_interleaved(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """uint8 ``[n, H, W, C]`` -> ``[n, height, width, C]`` with :func:`_resize_kernel`."""
    _check_device(frames)
    n, in_h, in_w, channels = frames.shape
    src = frames.contiguous()
    row_first, row_weights = (t.to(frames.device) for t in antialias_bilinear_taps(in_h, height))
    col_first, col_weights = (t.to(frames.device) for t in antialias_bilinear_taps(in_w, width))
    out = torch.empty((n, height, width, channels), dtype=torch.uint8, device=frames.device)
    if n:
        block_h, block_q = _RESIZE_TILE
        grid = (triton.cdiv(height, block_h), triton.cdiv(width * channels, block_q), n)
        _resize_kernel[grid](
            src,
            out,
            row_first,
            row_weights,
            col_first,
            col_weights,
            in_h,
            in_w,
            height,
            width,
            row_weights.shape[1],
            col_weights.shape[1],
            CHANNELS=channels,
            BLOCK_H=block_h,
            BLOCK_Q=block_q,
        )
    return out


# ------------------------------------------------------------------------------------------ yuv


@triton.jit
def _luma_kernel(src, y_out, frame_numel, yr, yg, yb, y_offset, BLOCK: tl.constexpr):
    # grid: (pixel blocks of one frame, frames)
    frame = tl.program_id(1)
    pixels = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = pixels < frame_numel
    index = frame.to(tl.int64) * frame_numel + pixels
    r = tl.load(src + index * 3, mask=mask, other=0).to(tl.float32)
    g = tl.load(src + index * 3 + 1, mask=mask, other=0).to(tl.float32)
    b = tl.load(src + index * 3 + 2, mask=mask, other=0).to(tl.float32)
    tl.store(y_out + index, _round_to_uint8(r * yr + g * yg + b * yb + y_offset), mask=mask)


@triton.jit
def _chroma_kernel(
    src,
    u_out,
    v_out,
    taps,
    in_h,
    in_w,
    chroma_h,
    chroma_w,
    ur,
    ug,
    ub,
    vr,
    vg,
    vb,
    c_offset,
    TAP_START: tl.constexpr,
    NUM_TAPS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    # grid: (chroma row tiles, chroma column tiles, frames). Chroma (j, i) averages RGB pixels
    # 2i and 2i+1 of each row, filters rows 2j+TAP_START .. (edges repeated), then converts.
    frame = tl.program_id(2)
    j = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    i = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    mask = (j < chroma_h)[:, None] & (i < chroma_w)[None, :]
    x0 = tl.minimum(2 * i, in_w - 1)
    x1 = tl.minimum(2 * i + 1, in_w - 1)  # odd widths: the last pixel pairs with itself
    frame_src = src + frame.to(tl.int64) * in_h * in_w * 3
    r = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
    g = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
    b = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
    for k in tl.static_range(NUM_TAPS):
        weight = tl.load(taps + k) * 0.5  # 0.5: the mean of the pixel pair
        y = tl.minimum(tl.maximum(2 * j + (TAP_START + k), 0), in_h - 1)
        p0 = frame_src + (y[:, None] * in_w + x0[None, :]) * 3
        p1 = frame_src + (y[:, None] * in_w + x1[None, :]) * 3
        r += weight * (tl.load(p0, mask=mask, other=0).to(tl.float32) + tl.load(p1, mask=mask, other=0).to(tl.float32))
        g += weight * (
            tl.load(p0 + 1, mask=mask, other=0).to(tl.float32) + tl.load(p1 + 1, mask=mask, other=0).to(tl.float32)
        )
        b += weight * (
            tl.load(p0 + 2, mask=mask, other=0).to(tl.float32) + tl.load(p1 + 2, mask=mask, other=0).to(tl.float32)
        )
    out = frame.to(tl.int64) * chroma_h * chroma_w + j[:, None] * chroma_w + i[None, :]
    tl.store(u_out + out, _round_to_uint8(r * ur + g * ug + b * ub + c_offset), mask=mask)
    tl.store(v_out + out, _round_to_uint8(r * vr + g * vg + b * vb + c_offset), mask=mask)


def rgb_to_yuv420p_triton(
    frames: torch.Tensor, *, chroma_filter: ChromaFilter = "bicubic"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton twin of :func:`kernels.yuv.rgb_to_yuv420p_torch`."""
    check_rgb_frames(frames)
    taps = torch.tensor(chroma_filter_taps(chroma_filter), dtype=torch.float32, device=frames.device)
    _check_device(frames)
    n, height, width, _ = frames.shape
    chroma_h, chroma_w = math.ceil(height / 2), math.ceil(width / 2)
    src = frames.contiguous()
    y = torch.empty((n, height, width), dtype=torch.uint8, device=frames.device)
    u = torch.empty((n, chroma_h, chroma_w), dtype=torch.uint8, device=frames.device)
    v = torch.empty_like(u)
    _luma_kernel[(triton.cdiv(height * width, _BLOCK), n)](src, y, height * width, *Y_ROW, Y_OFFSET, BLOCK=_BLOCK)
    block_h, block_w = _CHROMA_TILE
    grid = (triton.cdiv(chroma_h, block_h), triton.cdiv(chroma_w, block_w), n)
    _chroma_kernel[grid](
        src,
        u,
        v,
        taps,
        height,
        width,
        chroma_h,
        chroma_w,
        *U_ROW,
        *V_ROW,
        C_OFFSET,
        TAP_START=CHROMA_TAP_START,
        NUM_TAPS=CHROMA_TAPS,
        BLOCK_H=block_h,
        BLOCK_W=block_w,
    )
    return y, u, v
