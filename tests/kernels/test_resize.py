"""Resizing to the output size keeps content where it was and matches a float reference."""

import pytest
import torch
import torch.nn.functional as F

from kernels.resize import resize_frames


def test_resize_matches_float_reference_and_shape():
    frames = torch.randint(0, 256, (3, 64, 112, 3), dtype=torch.uint8)
    out = resize_frames(frames, 848, 480)
    assert out.shape == (3, 480, 848, 3) and out.dtype == torch.uint8 and out.is_contiguous()
    ref = (
        F.interpolate(
            frames.permute(0, 3, 1, 2).float(), size=(480, 848), mode="bilinear", antialias=True, align_corners=False
        )
        .round()
        .clamp(0, 255)
        .permute(0, 2, 3, 1)
    )
    assert (out.int() - ref.int()).abs().max() <= 1


def test_resize_keeps_a_left_right_split():
    frames = torch.zeros((1, 64, 112, 3), dtype=torch.uint8)
    frames[:, :, 56:] = 255
    out = resize_frames(frames, 1920, 1080)
    assert out[0, :, :900].max() < 10 and out[0, :, 1020:].min() > 245


def test_same_size_is_a_no_op_and_bad_input_is_refused():
    frames = torch.zeros((2, 16, 16, 3), dtype=torch.uint8)
    assert resize_frames(frames, 16, 16) is frames
    with pytest.raises(ValueError, match="uint8"):
        resize_frames(frames.float(), 32, 32)
