"""The planner covers every frame, keeps chunk starts on the latent grid and blends to exactly 1."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from farm.domain.constants import frame_count
from farm.domain.errors import PlanError
from farm.domain.planner import plan_clip


@st.composite
def plans(draw):
    stride = draw(st.sampled_from([1, 2, 4, 8]))
    k = draw(st.integers(1, 12))
    window = k * stride + 1
    overlaps = [window - m * stride for m in range(1, k + 1) if 2 * (window - m * stride) <= window]
    overlap = draw(st.sampled_from(overlaps))
    num_frames = draw(st.integers(1, 600))
    blend = draw(st.sampled_from(["linear", "cosine"]))
    return plan_clip(num_frames, window_frames=window, overlap_frames=overlap, temporal_stride=stride, blend=blend)


@settings(max_examples=300, deadline=None)
@given(plans())
def test_every_frame_covered_and_weights_sum_to_one(plan):
    coverage = np.zeros(plan.render_frames)
    total = np.zeros(plan.render_frames)
    for chunk, weights in zip(plan.chunks, plan.weights):
        assert len(weights) == chunk.num_frames
        assert np.all(weights > 0) and np.all(weights <= 1 + 1e-12)
        coverage[chunk.start : chunk.end] += 1
        total[chunk.start : chunk.end] += weights
    assert np.all(coverage >= 1), "a frame is rendered by no chunk"
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)
    assert plan.render_frames >= plan.num_frames
    assert plan.render_frames - plan.num_frames < plan.temporal_stride
    assert (plan.render_frames - 1) % plan.temporal_stride == 0


@settings(max_examples=300, deadline=None)
@given(plans())
def test_chunks_sit_on_the_latent_grid_and_the_last_is_end_aligned(plan):
    stride = plan.temporal_stride
    starts = [c.start for c in plan.chunks]
    assert starts == sorted(set(starts)), "chunks must advance"
    assert starts[0] == 0
    assert plan.chunks[-1].end == plan.render_frames
    for c in plan.chunks:
        assert c.start % stride == 0
        assert (c.num_frames - 1) % stride == 0
        assert c.latent_start == c.start // stride
        assert c.latent_start + c.latent_frames <= plan.latent_frames
        assert c.num_frames <= max(plan.window_frames, 1)


@pytest.mark.parametrize("seconds,frames", [(3, 96), (5, 160), (15, 480), (3.5, 112)])
def test_frame_count_is_duration_times_32(seconds, frames):
    assert frame_count(seconds) == frames
    plan = plan_clip(frames, window_frames=17, overlap_frames=5)
    assert plan.num_frames == frames


def test_short_clip_is_one_chunk_of_the_clip_length():
    plan = plan_clip(96, window_frames=121, overlap_frames=21)
    assert len(plan.chunks) == 1
    assert plan.chunks[0].num_frames == 97
    assert np.all(plan.weights[0] == 1)


def test_default_overlap_between_neighbours_is_the_configured_one():
    plan = plan_clip(480, window_frames=17, overlap_frames=5)
    for a, b in zip(plan.chunks[:-2], plan.chunks[1:-1]):
        assert a.end - b.start == 5


@pytest.mark.parametrize("blend", ["linear", "cosine"])
def test_pairwise_ramps_are_complementary_without_normalisation(blend):
    plan = plan_clip(160, window_frames=17, overlap_frames=5, blend=blend)
    w0, w1 = plan.weights[0], plan.weights[1]
    np.testing.assert_allclose(w0[-5:] + w1[:5], 1.0, atol=1e-12)
    assert np.all(np.diff(w1[:5]) > 0), "the incoming chunk fades in"


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(window_frames=16, overlap_frames=4), r"window_frames must be k\*4\+1"),
        (dict(window_frames=17, overlap_frames=4), "positive multiple of 4"),
        (dict(window_frames=17, overlap_frames=17), "positive multiple of 4"),
        (dict(window_frames=17, overlap_frames=13), "at most half the window"),
        (dict(window_frames=17, overlap_frames=5, blend="square"), "blend must be"),
    ],
)
def test_inconsistent_profiles_are_refused_with_the_values(kwargs, needle):
    with pytest.raises(PlanError, match=needle):
        plan_clip(96, **kwargs)
