"""Content safety (``models.safety``): CLIP zero-shot scoring on a tiny random CLIP saved and
loaded back like a hub checkpoint, the verdict's fields, and the embedded default's checker."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from models.safety import ClipSafetyChecker, SafetyChecker, SafetyVerdict

CONCEPTS = ["nudity", "graphic violence", "gore"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    from models.tiny import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def load(clip_dir: Path, threshold: float, **kwargs) -> ClipSafetyChecker:
    return ClipSafetyChecker.from_pretrained(str(clip_dir), concepts=CONCEPTS, threshold=threshold, **kwargs)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Five 64x112 frames: noise, black, white, a red and a green field."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 112, 3), dtype=np.uint8)
    fields = [
        np.full((64, 112, 3), value, dtype=np.uint8)
        for value in ((0, 0, 0), (255, 255, 255), (220, 20, 20), (20, 200, 40))
    ]
    return np.stack([noise, *fields])


def test_threshold_zero_flags_and_names_the_concept_and_frame(clip_dir, frames):
    checker = load(clip_dir, 0.0)
    assert isinstance(checker, SafetyChecker)
    verdict = checker.check(frames)
    probs = checker.probabilities(frames)
    frame, concept = np.unravel_index(np.argmax(probs), probs.shape)
    assert verdict == SafetyVerdict(
        flagged=True, concept=CONCEPTS[concept], score=pytest.approx(probs.max()), frame=int(frame)
    )


def test_threshold_above_one_flags_nothing(clip_dir, frames):
    verdict = load(clip_dir, 1.01).check(frames)
    assert (verdict.flagged, verdict.concept, verdict.frame) == (False, None, None)
    assert 0.0 < verdict.score < 1.0  # the margin is still reported


def test_a_threshold_between_frames_flags_the_frame_that_reaches_it(clip_dir, frames):
    probs = load(clip_dir, 1.01).probabilities(frames)
    best = probs.max(axis=1)
    order = np.argsort(best)
    # Between the best and the second-best frame: only the best one flags; a batch without it passes.
    threshold = float((best[order[-1]] + best[order[-2]]) / 2)
    checker = load(clip_dir, threshold)
    assert checker.check(frames).frame == order[-1]
    rest = np.delete(frames, order[-1], axis=0)
    assert not checker.check(rest).flagged
    assert checker.check(frames[order[-1] : order[-1] + 1]).frame == 0  # index within the frames given


def test_scores_are_probabilities_shared_with_the_safe_prompts(clip_dir, frames):
    probs = load(clip_dir, 0.5).probabilities(frames)
    assert probs.shape == (5, 3) and probs.dtype == np.float32
    # The neutral prompts take their share of the softmax: the concepts never sum to 1.
    assert np.all(probs > 0) and np.all(probs.sum(axis=1) < 1)


def test_checks_are_deterministic_and_independent_of_batching(clip_dir, frames):
    from models.tiny import tiny_clip

    one = load(clip_dir, 0.0, batch_size=2)
    two = load(clip_dir, 0.0)
    np.testing.assert_allclose(one.probabilities(frames), two.probabilities(frames), rtol=1e-5, atol=1e-7)
    assert one.check(frames) == one.check(frames)
    # The saved checkpoint scores exactly like the in-memory tiny CLIP it was saved from.
    memory = ClipSafetyChecker(*tiny_clip(), concepts=CONCEPTS, threshold=0.0)
    np.testing.assert_array_equal(memory.probabilities(frames), two.probabilities(frames))


def test_frames_of_any_size_and_none(clip_dir):
    checker = load(clip_dir, 0.0)
    tall = np.zeros((2, 200, 48, 3), dtype=np.uint8)
    assert checker.check(tall).flagged
    assert checker.check(np.zeros((0, 64, 64, 3), dtype=np.uint8)) == SafetyVerdict(
        flagged=False, concept=None, score=0.0, frame=None
    )


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 8, 8, 3), dtype=np.float32),
        np.zeros((8, 8, 3), dtype=np.uint8),
        np.zeros((1, 8, 8, 4), dtype=np.uint8),
    ],
)
def test_frames_must_be_uint8_rgb_batches(clip_dir, bad):
    with pytest.raises(ValueError, match=r"uint8 \[n, H, W, 3\]"):
        load(clip_dir, 0.5).check(bad)


def test_bad_settings_are_refused(clip_dir):
    with pytest.raises(ValueError, match="concepts"):
        ClipSafetyChecker.from_pretrained(str(clip_dir), concepts=[], threshold=0.5)
    with pytest.raises(ValueError, match="threshold"):
        load(clip_dir, -0.1)


def test_verdicts_are_frozen():
    verdict = SafetyVerdict(flagged=False, concept=None, score=0.1, frame=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.flagged = True  # type: ignore[misc]  # the point: it is frozen


def test_the_embedded_default_checker_runs_and_does_not_flag(frames):
    from models.profiles import TINY_SAFETY_CONCEPTS, TINY_SAFETY_THRESHOLD, tiny_safety_checker

    checker = tiny_safety_checker()
    assert checker.concepts == list(TINY_SAFETY_CONCEPTS)
    verdict = checker.check(frames)
    assert not verdict.flagged and verdict.score < TINY_SAFETY_THRESHOLD
    # Random weights with logit scale 1 keep the probabilities near uniform over 3 + 6 prompts.
    assert abs(verdict.score - 1 / 9) < 0.1
