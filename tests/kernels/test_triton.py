"""The Triton twins equal their torch references (within 1 level of 255), run on CPU tensors
under Triton's interpreter, and the public kernels pick the right one."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from kernels import blend_frames, resize_frames, rgb_to_yuv420p
from kernels.backend import resolve_backend
from kernels.blend import blend_frames_torch
from kernels.resize import resize_frames_torch
from kernels.yuv import rgb_to_yuv420p_torch


def random_frames(shape, seed=0):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def max_diff(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
    return int((a.int() - b.int()).abs().max()) if a.numel() else 0


# ---------------------------------------------------------------------------------------- blend


@pytest.mark.parametrize(
    "shape, weights",
    [
        ((3, 17, 23, 3), [[0.25, 0.5, 0.9], [0.75, 0.5, 0.1]]),  # odd sizes, ties at 0.5
        ((4, 8, 8, 3), [[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]]),  # weights 0 and 1
        ((1, 5, 7, 3), [[0.3], [0.7]]),  # a 1-frame chunk
        ((2, 9, 6, 3), [[0.2, 0.1], [0.3, 0.6], [0.5, 0.3]]),  # three overlapping chunks
        ((2, 3, 3, 3), [[0.5, 0.25]]),  # one block faded (weights not 1)
    ],
)
def test_blend_twin_matches_reference(triton_kernels, shape, weights):
    blocks = [random_frames(shape, seed=i) for i in range(len(weights))]
    weight_vectors = [torch.tensor(w, dtype=torch.float64) for w in weights]
    out = triton_kernels.blend_frames_triton(blocks, weight_vectors)
    assert max_diff(out, blend_frames_torch(blocks, weight_vectors)) <= 1
    assert out.shape == shape and out.is_contiguous()


def test_blend_weight_one_is_exact_and_extremes_stay_in_range(triton_kernels):
    white, black = torch.full((2, 4, 6, 3), 255, dtype=torch.uint8), torch.zeros((2, 4, 6, 3), dtype=torch.uint8)
    out = triton_kernels.blend_frames_triton([white, black], [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])])
    assert bool((out[0] == 255).all()) and bool((out[1] == 0).all())
    block = random_frames((2, 4, 6, 3))
    assert triton_kernels.blend_frames_triton([block], [torch.ones(2)]) is block


def test_blend_twin_reads_non_contiguous_blocks(triton_kernels):
    chunk = random_frames((6, 10, 12, 3))
    a, b = chunk[::2], chunk[1::2]  # strided views, as a caller might pass
    w = torch.tensor([0.1, 0.5, 0.9])
    assert max_diff(triton_kernels.blend_frames_triton([a, b], [w, 1 - w]), blend_frames_torch([a, b], [w, 1 - w])) <= 1


# --------------------------------------------------------------------------------------- resize


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [
        ((17, 23), (40, 31)),  # up, odd sizes
        ((40, 31), (9, 13)),  # down (antialiased: wider taps)
        ((40, 30), (5, 3)),  # strongly down
        ((16, 24), (16, 40)),  # one axis only
        ((1, 1), (4, 5)),  # from a single pixel
        ((12, 10), (1, 1)),  # to a single pixel
    ],
)
@pytest.mark.parametrize("frames", [1, 2])
def test_resize_twin_matches_reference_and_float(triton_kernels, in_hw, out_hw, frames):
    src = random_frames((frames, *in_hw, 3))
    height, width = out_hw
    out = triton_kernels.resize_frames_triton(src, width, height)
    assert out.shape == (frames, height, width, 3) and out.is_contiguous()
    assert max_diff(out, resize_frames_torch(src, width, height)) <= 1
    exact = (
        F.interpolate(
            src.permute(0, 3, 1, 2).double(), size=out_hw, mode="bilinear", antialias=True, align_corners=False
        )
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
        .permute(0, 2, 3, 1)
    )
    assert max_diff(out, exact) <= 1


def test_resize_twin_same_size_is_a_no_op(triton_kernels):
    src = random_frames((1, 8, 8, 3))
    assert triton_kernels.resize_frames_triton(src, 8, 8) is src


# ------------------------------------------------------------------------------------------ yuv


@pytest.mark.parametrize("chroma_filter", ["bicubic", "bilinear"])
@pytest.mark.parametrize("shape", [(2, 16, 24, 3), (1, 17, 23, 3), (1, 1, 1, 3), (3, 2, 5, 3), (1, 30, 2, 3)])
def test_yuv_twin_matches_reference(triton_kernels, shape, chroma_filter):
    src = random_frames(shape)
    planes = triton_kernels.rgb_to_yuv420p_triton(src, chroma_filter=chroma_filter)
    reference = rgb_to_yuv420p_torch(src, chroma_filter=chroma_filter)
    for plane, ref in zip(planes, reference):
        assert max_diff(plane, ref) <= 1 and plane.is_contiguous()


def test_yuv_twin_clips_the_cubic_overshoot(triton_kernels):
    # Hard red/cyan stripes: the cubic overshoots past 0 and 255 next to each edge.
    src = torch.zeros((1, 24, 8, 3), dtype=torch.uint8)
    src[:, ::4, :, 0] = 255
    src[:, 1::4, :, 1:] = 255
    planes = triton_kernels.rgb_to_yuv420p_triton(src)
    for plane, ref in zip(planes, rgb_to_yuv420p_torch(src)):
        assert max_diff(plane, ref) <= 1


# ------------------------------------------------------------------------------------- dispatch


def test_public_kernels_run_the_twin_when_asked(triton_kernels, monkeypatch):
    a, b = random_frames((2, 6, 10, 3), 1), random_frames((2, 6, 10, 3), 2)
    w = torch.tensor([0.25, 0.75])
    assert max_diff(blend_frames([a, b], [w, 1 - w], backend="triton"), blend_frames([a, b], [w, 1 - w])) <= 1
    monkeypatch.setenv("FARM_KERNEL_BACKEND", "triton")
    assert resolve_backend(None, a) == "triton"
    assert max_diff(resize_frames(a, 7, 5), resize_frames(a, 7, 5, backend="torch")) <= 1
    for plane, ref in zip(rgb_to_yuv420p(a), rgb_to_yuv420p(a, backend="torch")):
        assert max_diff(plane, ref) <= 1


def test_auto_picks_torch_for_cpu_frames_and_bad_names_are_refused(monkeypatch):
    frames = torch.zeros((1, 2, 2, 3), dtype=torch.uint8)
    assert resolve_backend("auto", frames) == "torch"
    monkeypatch.delenv("FARM_KERNEL_BACKEND", raising=False)
    assert resolve_backend(None, frames) == "torch"
    with pytest.raises(ValueError, match="backend must be one of .* 'cuda'"):
        resolve_backend("cuda", frames)
    monkeypatch.setenv("FARM_KERNEL_BACKEND", "fast")
    with pytest.raises(ValueError, match="FARM_KERNEL_BACKEND must be one of .* 'fast'"):
        blend_frames([frames, frames], [torch.ones(1), torch.zeros(1)])


def test_importing_kernels_does_not_import_triton():
    code = "import sys, kernels; kernels.blend_frames; assert 'triton' not in sys.modules, 'triton imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
