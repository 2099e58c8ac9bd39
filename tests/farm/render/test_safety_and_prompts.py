"""``safety`` and ``settings.promptExtend`` on real renders (real local Ray, the tiny default models).

The embedded default's CLIP checker has random weights, so its verdicts mean nothing; the tests use
its real code path with thresholds that make the outcome certain (0: everything is flagged).
"""

from __future__ import annotations

import dataclasses
import functools
import uuid

import pytest

from farm.domain.constants import DEFAULT_MODEL
from farm.domain.errors import SafetyError, TaskValidationError
from farm.domain.validation import parse_task
from farm.scheduler.local import render_task
from farm.workers.pool import WorkerConfig, WorkerPool
from models.profiles import get_profile, tiny_safety_checker
from tests.media import probe


def task_of(**fields):
    raw = {
        "taskType": "videoInference",
        "taskUUID": str(uuid.uuid4()),
        "model": DEFAULT_MODEL,
        "positivePrompt": "A paper boat drifts down a rainy street",
        "duration": 3,
        "resolution": "480p",
        "settings": {"audio": False},
        **fields,
    }
    return parse_task(raw)


@pytest.fixture(scope="module")
def pool(ray_cluster):
    pool = WorkerPool(get_profile(DEFAULT_MODEL), WorkerConfig(video_workers=2, audio_worker=False))
    pool.wait_ready()
    yield pool
    pool.shutdown()


def test_flagged_results_are_errors_with_code_safety_and_nothing_is_delivered(ray_cluster, tmp_path):
    profile = dataclasses.replace(
        get_profile(DEFAULT_MODEL), safety_factory=functools.partial(tiny_safety_checker, threshold=0.0)
    )
    pool = WorkerPool(profile, WorkerConfig(video_workers=2, audio_worker=False))
    try:
        seen = []
        task = task_of(numberResults=2, safety={"checkContent": True, "mode": "fast"})
        results = render_task(task, pool, tmp_path, base_seed=1, on_result=seen.append)
    finally:
        pool.shutdown()
    assert [r.index for r in results] == [0, 1]
    for result in results:
        assert isinstance(result.error, SafetyError) and result.error.code == "safety"
        assert result.path is None and "safety checker" in str(result.error)
    assert sorted(r.index for r in seen if r.error is not None) == [0, 1], "each refusal is reported"
    assert list(tmp_path.iterdir()) == [], "no file, not even a partial one"


def test_checked_results_that_pass_are_delivered(pool, tmp_path):
    task = task_of(safety={"checkContent": True, "mode": "full"})
    [result] = render_task(task, pool, tmp_path, base_seed=2)
    assert result.error is None and probe(result.path).frames == 96


def test_safety_on_a_profile_without_a_checker_is_refused_naming_the_field(ray_cluster, tmp_path):
    profile = dataclasses.replace(get_profile(DEFAULT_MODEL), safety_factory=None)
    pool = WorkerPool(profile, WorkerConfig(video_workers=1, audio_worker=False))
    try:
        with pytest.raises(TaskValidationError) as error:
            render_task(task_of(safety={"checkContent": True}), pool, tmp_path)
    finally:
        pool.shutdown()
    assert error.value.violations[0].field == "safety.checkContent"


def test_the_extended_prompt_is_rendered_and_returned(pool, tmp_path):
    frames = {}

    def keep(index, first, batch):
        frames.setdefault(index, []).append(batch.clone())

    [extended] = render_task(task_of(), pool, tmp_path, base_seed=3, on_frames=keep)
    assert extended.extended_prompt is not None
    assert extended.extended_prompt.startswith("A paper boat drifts down a rainy street")
    assert len(extended.extended_prompt) > len("A paper boat drifts down a rainy street")
    first = frames.pop(0)

    [plain] = render_task(
        task_of(settings={"audio": False, "promptExtend": False}), pool, tmp_path, base_seed=3, on_frames=keep
    )
    assert plain.extended_prompt is None
    import torch

    assert not torch.equal(torch.cat(first), torch.cat(frames[0])), "the model rendered the extension"
