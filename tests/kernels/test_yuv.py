"""RGB -> yuv420p gives the bytes swscale (PyAV's reformat, the encoder's conversion) gives."""

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import Colorspace, Interpolation

from kernels.yuv import chroma_filter_taps, rgb_to_yuv420p, rgb_to_yuv420p_torch, yuv420p_to_rgb


def swscale_yuv420p(rgb: np.ndarray, interpolation: str) -> list[np.ndarray]:
    """What the encoder does to one frame: rgb24 -> yuv420p, BT.709, limited range."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p",
        dst_colorspace=Colorspace.ITU709,
        dst_color_range=1,
        interpolation=Interpolation[interpolation],
    )
    return [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in frame.planes]


def smooth_frames(n, height, width):
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    t = torch.arange(n).view(-1, 1, 1)
    rgb = torch.stack(
        [x * 200 // width + 20 + t, y * 180 // height + 40 + 0 * t, (x + y) * 90 // (height + width) + 100 + 0 * t], -1
    )
    return rgb.to(torch.uint8)


@pytest.mark.parametrize("interpolation", ["BICUBIC", "BILINEAR"])
@pytest.mark.parametrize("height, width", [(12, 16), (48, 64), (128, 130), (240, 416)])
def test_matches_swscale_within_one_level(interpolation, height, width):
    rng = np.random.default_rng(height * width)
    frames = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    planes = rgb_to_yuv420p(torch.from_numpy(frames), chroma_filter=interpolation.lower())
    for i in range(2):
        expected = swscale_yuv420p(frames[i], interpolation)
        for name, ours, theirs in zip("yuv", planes, expected):
            assert ours[i].shape == theirs.shape, name
            diff = np.abs(ours[i].numpy().astype(int) - theirs.astype(int))
            assert diff.max() <= 1, f"{name}: max diff {diff.max()}"
            assert (diff > 0).mean() < 0.15, f"{name}: {(diff > 0).mean():.1%} of samples differ"


def test_flat_colours_are_exact():
    for colour, expected in [
        ((0, 0, 0), (16, 128, 128)),
        ((255, 255, 255), (235, 128, 128)),
        ((255, 0, 0), (63, 102, 240)),
        ((0, 0, 255), (32, 240, 118)),
    ]:
        frames = torch.tensor(colour, dtype=torch.uint8).expand(1, 4, 6, 3)
        y, u, v = rgb_to_yuv420p(frames)
        assert (int(y[0, 0, 0]), int(u[0, 0, 0]), int(v[0, 0, 0])) == expected
        assert bool((y == y[0, 0, 0]).all() and (u == u[0, 0, 0]).all() and (v == v[0, 0, 0]).all())


def test_shapes_odd_sizes_and_round_trip():
    frames = smooth_frames(3, 33, 47)
    y, u, v = rgb_to_yuv420p_torch(frames)
    assert y.shape == (3, 33, 47) and u.shape == v.shape == (3, 17, 24)
    assert all(p.dtype == torch.uint8 and p.is_contiguous() for p in (y, u, v))
    back = yuv420p_to_rgb(y, u, v)
    # Chroma has half the resolution and comes back repeated: on a ramp of 4 levels a pixel, a
    # pixel can be a step off; more than that would be a wrong matrix or a shifted plane.
    diff = (back.int() - frames.int()).abs()
    assert back.shape == frames.shape and int(diff.max()) <= 6 and float(diff.float().mean()) < 2


def test_chroma_taps_and_bad_input():
    assert sum(chroma_filter_taps("bicubic")) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'lanczos'"):
        chroma_filter_taps("lanczos")
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_yuv420p(torch.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"\(1, 2, 3\)"):
        yuv420p_to_rgb(
            torch.zeros((1, 4, 6), dtype=torch.uint8),
            torch.zeros((1, 2, 3), dtype=torch.uint8),
            torch.zeros((1, 3, 3), dtype=torch.uint8),
        )
