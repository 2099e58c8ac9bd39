"""The stitcher emits frames in order, as soon as they are final, blended with the plan's weights."""

import random

import numpy as np
import pytest
import torch

from farm.domain.planner import plan_clip
from farm.render.stitch import Stitcher, Yuv420Planes
from farm.workers.messages import Yuv420Frames
from farm.workers.noise import latent_noise
from kernels.blend import blend_frames


def _chunk_frames(plan, clip):
    return {c.index: clip[c.start : c.end].clone() for c in plan.chunks}


def test_consistent_chunks_stitch_back_to_the_clip_in_any_order():
    plan = plan_clip(96, window_frames=17, overlap_frames=5)
    clip = torch.randint(0, 256, (plan.render_frames, 8, 12, 3), dtype=torch.uint8)
    chunks = _chunk_frames(plan, clip)
    for trial in range(5):
        order = list(chunks)
        random.Random(trial).shuffle(order)
        stitcher = Stitcher(plan)
        out = [f for i in order if (f := stitcher.add(i, chunks[i])) is not None]
        result = torch.cat(out)
        assert result.shape[0] == 96, "padding frames of the render grid must be dropped"
        # identical inputs in an overlap blend back to themselves (weights sum to 1)
        assert (result.int() - clip[:96].int()).abs().max() <= 1
        assert stitcher.done and stitcher.chunks_held == 0


def test_frames_leave_as_soon_as_they_are_final():
    plan = plan_clip(160, window_frames=17, overlap_frames=5)
    clip = torch.zeros((plan.render_frames, 2, 2, 3), dtype=torch.uint8)
    chunks = _chunk_frames(plan, clip)
    stitcher = Stitcher(plan)
    first = stitcher.add(0, chunks[0])
    # chunk 0 alone finalises everything before chunk 1 starts
    assert first is not None and first.shape[0] == plan.chunks[1].start
    assert stitcher.add(2, chunks[2]) is None, "chunk 2 cannot emit before chunk 1 arrives"
    emitted = stitcher.add(1, chunks[1])
    assert emitted.shape[0] == plan.chunks[3].start - plan.chunks[1].start
    assert stitcher.chunks_held <= 2, "memory stays about one chunk plus the overlap"


def test_overlap_is_a_crossfade_between_neighbours():
    plan = plan_clip(96, window_frames=17, overlap_frames=5, blend="linear")
    stitcher = Stitcher(plan)
    a = torch.full((17, 1, 1, 3), 0, dtype=torch.uint8)
    b = torch.full((17, 1, 1, 3), 240, dtype=torch.uint8)
    out = [stitcher.add(0, a)]
    out.append(stitcher.add(1, b))
    frames = torch.cat([o for o in out if o is not None])[:, 0, 0, 0].tolist()
    overlap = frames[12:17]
    assert overlap == [40, 80, 120, 160, 200], overlap


def test_blend_of_one_block_is_exact_and_weights_apply():
    x = torch.randint(0, 256, (3, 4, 4, 3), dtype=torch.uint8)
    assert torch.equal(blend_frames([x], [torch.ones(3, dtype=torch.float64)]), x)
    y = blend_frames([x, torch.zeros_like(x)], [torch.full((3,), 0.5), torch.full((3,), 0.5)])
    assert (y.int() - (x.int() / 2).round().int()).abs().max() <= 1


def test_noise_slices_of_overlapping_chunks_are_identical():
    plan = plan_clip(96, window_frames=17, overlap_frames=5)
    a, b = plan.chunks[0], plan.chunks[1]
    na = latent_noise(7, a.latent_start, a.latent_frames, (16, 8, 14))
    nb = latent_noise(7, b.latent_start, b.latent_frames, (16, 8, 14))
    shared = a.latent_start + a.latent_frames - b.latent_start
    assert shared == 2
    assert torch.equal(na[:, :, -shared:], nb[:, :, :shared])
    assert not torch.equal(na[:, :, 0], na[:, :, 1])
    assert not torch.equal(latent_noise(8, 0, 1, (16, 8, 14)), na[:, :, :1]), "seed must matter"
    assert na.shape == (1, 16, 5, 8, 14) and na.dtype == torch.float32
    assert np.isclose(float(na.std()), 1.0, atol=0.05)


# -- yuv420p planes (what the workers send by default) ------------------------------------------


def _planes_of(frames: torch.Tensor) -> Yuv420Frames:
    """A block of frames as ``Yuv420Frames``: its first channel as Y, then U and V taken from
    the second and third channels at half size."""
    return Yuv420Frames(
        y=frames[..., 0].numpy().copy(),
        u=frames[:, ::2, ::2, 1].numpy().copy(),
        v=frames[:, ::2, ::2, 2].numpy().copy(),
    )


def test_planes_stitch_back_to_the_clip_in_any_order():
    plan = plan_clip(96, window_frames=17, overlap_frames=5)
    clip = torch.randint(0, 256, (plan.render_frames, 8, 12, 3), dtype=torch.uint8)
    whole = _planes_of(clip)
    for trial in range(3):
        order = [c.index for c in plan.chunks]
        random.Random(trial).shuffle(order)
        stitcher = Stitcher(plan)
        out = [
            f
            for i in order
            if (f := stitcher.add(i, _planes_of(clip[plan.chunks[i].start : plan.chunks[i].end]))) is not None
        ]
        assert all(isinstance(f, Yuv420Planes) for f in out)
        y, u, v = (torch.cat([getattr(f, name) for f in out]) for name in "yuv")
        assert y.shape == (96, 8, 12) and u.shape == v.shape == (96, 4, 6)
        for got, want in ((y, whole.y), (u, whole.u), (v, whole.v)):
            assert (got.int() - torch.from_numpy(want[:96]).int()).abs().max() <= 1
        assert stitcher.done and stitcher.chunks_held == 0


def test_every_plane_of_an_overlap_is_a_crossfade_with_the_same_weights():
    plan = plan_clip(96, window_frames=17, overlap_frames=5, blend="linear")
    stitcher = Stitcher(plan)
    a = Yuv420Frames(
        *(np.full((17, 2, 2), 0, np.uint8) if k == 0 else np.full((17, 1, 1), 0, np.uint8) for k in range(3))
    )
    b = Yuv420Frames(
        *(np.full((17, 2, 2), 240, np.uint8) if k == 0 else np.full((17, 1, 1), 240, np.uint8) for k in range(3))
    )
    out = [o for o in (stitcher.add(0, a), stitcher.add(1, b)) if o is not None]
    for name in "yuv":
        ramp = torch.cat([getattr(o, name) for o in out])[12:17, 0, 0].tolist()
        assert ramp == [40, 80, 120, 160, 200], (name, ramp)


def test_read_only_planes_from_the_object_store_are_taken_and_slices_cut_every_plane():
    plan = plan_clip(12, window_frames=17, overlap_frames=5)
    frames = _planes_of(torch.randint(0, 256, (13, 4, 6, 3), dtype=torch.uint8))
    for plane in (frames.y, frames.u, frames.v):
        plane.flags.writeable = False
    final = Stitcher(plan).add(0, frames)
    assert len(final) == 12 and len(final[2:5]) == 3
    assert final[2:5].u.shape == (3, 2, 3)
    assert np.array_equal(final.y.numpy(), frames.y[:12])


def test_a_result_gets_one_wire_format_and_wrong_frame_counts_are_refused():
    plan = plan_clip(40, window_frames=17, overlap_frames=5)
    clip = torch.zeros((plan.render_frames, 4, 6, 3), dtype=torch.uint8)
    stitcher = Stitcher(plan)
    stitcher.add(0, clip[:17])
    with pytest.raises(ValueError, match="chunk 1 arrived as yuv420p, the result's earlier chunks as rgb"):
        stitcher.add(1, _planes_of(clip[12:29]))
    with pytest.raises(ValueError, match="chunk 1 must be uint8 with 17 frames"):
        Stitcher(plan).add(1, _planes_of(clip[:5]))
