"""RGB -> yuv420p (BT.709, limited range) as libswscale writes it, and back.

Torch reference kernel. The encoder (PyAV) converts each RGB frame to the codec's ``yuv420p``
with one swscale pass; doing that conversion on the GPU instead sends a quarter less data to the
host (12 instead of 24 bits a pixel) and takes the conversion off the CPU. To be a drop-in
replacement it must produce what swscale produces, so this module copies swscale's choices, found
by feeding impulses through ``av.VideoFrame.reformat`` (PyAV 18.1, libswscale 9.5):

* **Luma** is per pixel: ``Y = 16 + 219/255 * (0.2126 R + 0.7152 G + 0.0722 B)``, rounded.
* **Chroma, horizontally:** swscale averages each pair of RGB pixels (its ``rgb24ToUV_half``
  input path, used for even widths) and converts the average; the chroma sample sits between
  the two pixels.
* **Chroma, vertically:** swscale then *scales* the full-height chroma rows to half height with
  the context's interpolation filter, chroma sited between two luma rows (MPEG-1/JPEG siting, its
  default). For output row ``j`` that is a symmetric 8-tap filter over luma rows ``2j-3 .. 2j+4``
  (edge rows repeated): the Keys cubic with ``a = -0.6`` stretched by 2 for ``"bicubic"`` (what
  the farm's encoder asks for: ``SWS_INTERPOLATION = "BICUBIC"``), the triangle ``[1, 3, 3, 1] / 8``
  for ``"bilinear"`` (PyAV's default ``interpolation``). So 4:2:0 chroma here is *not* a plain 2x2
  box average, and it depends on the interpolation the encoder is given.
* ``Cb = 128 + 224/255 * (B - Y') / 1.8556``, ``Cr = 128 + 224/255 * (R - Y') / 1.5748``, rounded
  and clipped (the cubic can overshoot).

Measured against PyAV on random frames: equal within 1 level of 255 on every plane for even sizes
from 12 rows up (bicubic; 8 rows up for bilinear), e.g. 480x832: Y differs by 1 on 0.8% of
pixels, U/V on 7-9% (swscale works in fixed point: 15-bit intermediates, 12-bit filter
coefficients). Known differences, none of which the farm produces (its output sides are even and
at least 128): for fewer rows swscale shortens its filter; for odd sizes it resamples the chroma
by ``W / ceil(W / 2)`` instead of 2, while here the last row/column is repeated to make the size
even. Output sizes are the same (``ceil(H/2) x ceil(W/2)`` chroma) either way.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from kernels.backend import Backend, resolve_backend

ChromaFilter = Literal["bicubic", "bilinear"]

#: BT.709 luma coefficients of R and B (G is the rest).
KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB
#: Limited ("TV", MPEG) range: luma 16..235, chroma 16..240 around 128.
Y_OFFSET, Y_SCALE = 16.0, 219.0 / 255.0
C_OFFSET, C_SCALE = 128.0, 224.0 / 255.0

#: Rows of the RGB -> YUV matrix (each applied to R, G, B in 0..255, before the offsets).
Y_ROW = (Y_SCALE * KR, Y_SCALE * KG, Y_SCALE * KB)
U_ROW = tuple(C_SCALE * c / (2.0 * (1.0 - KB)) for c in (-KR, -KG, 1.0 - KB))
V_ROW = tuple(C_SCALE * c / (2.0 * (1.0 - KR)) for c in (1.0 - KR, -KG, -KB))

#: swscale's bicubic is Mitchell-Netravali with B = 0, C = 0.6: the Keys cubic with a = -0.6.
_CUBIC_A = -0.6
#: First tap of the vertical chroma filter, relative to ``2 * j``; it has ``CHROMA_TAPS`` taps.
CHROMA_TAP_START, CHROMA_TAPS = -3, 8


def _keys_cubic(x: float, a: float = _CUBIC_A) -> float:
    x = abs(x)
    if x < 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    if x < 2:
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return 0.0


def chroma_filter_taps(chroma_filter: ChromaFilter) -> tuple[float, ...]:
    """The 8 weights of luma rows ``2j-3 .. 2j+4`` for chroma row ``j`` (they sum to 1).

    >>> [round(w * 8, 3) for w in chroma_filter_taps("bilinear")]
    [0.0, 0.0, 1.0, 3.0, 3.0, 1.0, 0.0, 0.0]
    >>> round(sum(chroma_filter_taps("bicubic")), 9)
    1.0
    """
    if chroma_filter == "bicubic":
        # Row 2j+k-3 lies |k - 3.5| luma rows from the chroma sample, half that in chroma rows.
        half = [_keys_cubic((k + 0.5) / 2) / 2 for k in range(CHROMA_TAPS // 2)]
    elif chroma_filter == "bilinear":
        half = [0.375, 0.125, 0.0, 0.0]
    else:
        raise ValueError(f"chroma_filter must be 'bicubic' or 'bilinear' (received: {chroma_filter!r})")
    return tuple(half[::-1] + half)


def check_rgb_frames(frames: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``frames`` is uint8 ``[n, H, W, 3]`` with ``n, H, W >= 1``."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8 or 0 in frames.shape:
        raise ValueError(f"expected uint8 [n, H, W, 3] frames, got {frames.dtype} {tuple(frames.shape)}")


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


def rgb_to_yuv420p_torch(
    frames: torch.Tensor, *, chroma_filter: ChromaFilter = "bicubic"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 RGB ``[n, H, W, 3]`` -> uint8 planes ``y [n, H, W]``, ``u``, ``v [n, ceil(H/2), ceil(W/2)]``."""
    check_rgb_frames(frames)
    taps = chroma_filter_taps(chroma_filter)
    n, height, width, _ = frames.shape
    rgb = frames.to(torch.float32)
    y = rgb @ torch.tensor(Y_ROW, device=frames.device) + Y_OFFSET
    if width % 2:
        rgb = torch.cat([rgb, rgb[:, :, -1:]], dim=2)
    pairs = rgb.view(n, height, -1, 2, 3).mean(dim=3)  # [n, H, ceil(W/2), 3]
    # Filter the RGB rows (linear, so the same as filtering U and V), then convert.
    rows = 2 * torch.arange(math.ceil(height / 2), device=frames.device)[:, None]
    rows = (rows + torch.arange(CHROMA_TAP_START, CHROMA_TAP_START + CHROMA_TAPS, device=frames.device)).clamp_(
        0, height - 1
    )
    filtered = torch.zeros((n, rows.shape[0], pairs.shape[2], 3), device=frames.device)
    for k, weight in enumerate(taps):  # one tap at a time: no 8x-sized gather in memory
        if weight:
            filtered.add_(pairs[:, rows[:, k]], alpha=weight)
    u = filtered @ torch.tensor(U_ROW, device=frames.device) + C_OFFSET
    v = filtered @ torch.tensor(V_ROW, device=frames.device) + C_OFFSET
    return _to_uint8(y), _to_uint8(u), _to_uint8(v)


ChromaUpsample = Literal["nearest", "bilinear"]


def yuv420p_to_rgb(
    y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, chroma_upsample: ChromaUpsample = "nearest"
) -> torch.Tensor:
    """Inverse of :func:`rgb_to_yuv420p` up to chroma resolution: uint8 planes -> RGB ``[n, H, W, 3]``.

    ``chroma_upsample="nearest"`` repeats each chroma sample 2x2, enough for tests and previews;
    ``"bilinear"`` interpolates it from its site at the centre of its 2x2 luma block (where
    :func:`rgb_to_yuv420p` and swscale put it; edges repeated), which is what a player shows and
    what the farm uses to turn yuv420p frames back into pictures. A flat colour survives either
    round trip within 1-2 levels of 255; chroma detail finer than 2 pixels does not.
    """
    if y.ndim != 3 or y.dtype != torch.uint8:
        raise ValueError(f"expected uint8 y [n, H, W], got {y.dtype} {tuple(y.shape)}")
    if chroma_upsample not in ("nearest", "bilinear"):
        raise ValueError(f"chroma_upsample must be 'nearest' or 'bilinear' (received: {chroma_upsample!r})")
    n, height, width = y.shape
    chroma_shape = (n, math.ceil(height / 2), math.ceil(width / 2))
    if tuple(u.shape) != chroma_shape or tuple(v.shape) != chroma_shape:
        raise ValueError(f"expected u and v of shape {chroma_shape}, got {tuple(u.shape)} and {tuple(v.shape)}")
    luma = (y.to(torch.float32) - Y_OFFSET) / Y_SCALE

    def up(plane: torch.Tensor) -> torch.Tensor:
        if chroma_upsample == "nearest":
            full = plane.repeat_interleave(2, 1).repeat_interleave(2, 2).to(torch.float32)
        else:
            full = F.interpolate(
                plane.to(torch.float32).unsqueeze(1), scale_factor=2, mode="bilinear", align_corners=False
            ).squeeze(1)
        return full[:, :height, :width]

    cb = (up(u) - C_OFFSET) / C_SCALE
    cr = (up(v) - C_OFFSET) / C_SCALE
    r = luma + 2.0 * (1.0 - KR) * cr
    b = luma + 2.0 * (1.0 - KB) * cb
    g = (luma - KR * r - KB * b) / KG
    return _to_uint8(torch.stack([r, g, b], dim=-1))


def rgb_to_yuv420p(
    frames: torch.Tensor, *, chroma_filter: ChromaFilter = "bicubic", backend: Backend | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Convert uint8 RGB frames ``[n, H, W, 3]`` to yuv420p planes as swscale does (module doc).

    Returns uint8 ``(y [n, H, W], u [n, ceil(H/2), ceil(W/2)], v [same])``, contiguous, on the
    frames' device. ``chroma_filter`` must match the encoder's swscale interpolation to give its
    bytes; ``backend`` picks torch or Triton (:mod:`kernels.backend`).
    """
    if resolve_backend(backend, frames) == "triton":
        from kernels.triton_kernels import rgb_to_yuv420p_triton

        return rgb_to_yuv420p_triton(frames, chroma_filter=chroma_filter)
    return rgb_to_yuv420p_torch(frames, chroma_filter=chroma_filter)
