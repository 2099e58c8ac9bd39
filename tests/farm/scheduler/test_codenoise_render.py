"""``chunkMode: codenoise`` through the scheduler: a gang of real Ray workers co-denoises a result.

The toy GP model (``farm:toy-gp@1``) makes seams measurable on a CPU. Through ``render_task`` (the
scheduler core in this process, real worker actors, a real encoder) the frames are the same for 1
and 2 workers, the file decodes with every frame, and its seams stay under the issue's target.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from farm.domain.validation import parse_task
from farm.io.seams import measure_file
from farm.scheduler.local import render_task
from farm.workers.pool import WorkerConfig, WorkerPool
from models.profiles import get_profile, known_models
from tests.media import probe

pytestmark = pytest.mark.slow

TOY = "farm:toy-gp@1"


def toy_task(**settings) -> dict:
    return {
        "taskType": "videoInference",
        "taskUUID": str(uuid.uuid4()),
        "model": TOY,
        "positivePrompt": "a red fox in the snow",
        "duration": 3,
        "resolution": "480p",
        "seed": 11,
        "settings": {"audio": False, "promptExtend": False, "chunkMode": "codenoise", **settings},
    }


def render_frames(task, workers: int, out) -> tuple[np.ndarray, object]:
    pool = WorkerPool(get_profile(task.model), WorkerConfig(video_workers=workers, audio_worker=False))
    frames: list[np.ndarray] = []
    try:
        [result] = render_task(task, pool, out, on_frames=lambda _i, _first, block: frames.append(np.asarray(block)))
    finally:
        pool.shutdown()
    return np.concatenate(frames), result


def test_codenoise_frames_do_not_depend_on_the_gang_size_and_the_seams_stay_low(ray_cluster, tmp_path):
    task = parse_task(toy_task(), known_models=known_models())
    one, result = render_frames(task, 1, tmp_path / "one")
    two, _ = render_frames(task, 2, tmp_path / "two")
    assert one.shape == (96, 480, 848, 3)
    assert np.array_equal(one, two), "co-denoised frames must be bit-identical for any number of workers"
    assert probe(result.path).frames == 96
    report = measure_file(result.path, chunks=(17, 5, 4))
    assert report.sjr_max <= 1.20 and report.cuts == 0, report


def test_codenoise_renders_reference_images_on_the_tiny_vace(ray_cluster, tmp_path):
    """Reference images co-denoise (each window carries their latent slots): the task renders
    every frame through the scheduler; bit-identity with them is checked at the actor level
    (``tests/models/test_wan_stepped.py``)."""
    from tests.farm.io.test_media import data_uri, image_bytes

    raw = {**toy_task(), "model": "skywork:skyreels@v4", "positivePrompt": "a red fox @fox in the snow"}
    image = data_uri(image_bytes("PNG"), "image/png")
    raw["inputs"] = {"referenceImages": [{"type": "image", "tag": "@fox", "images": [image]}]}
    task = parse_task(raw, known_models=known_models())
    frames, result = render_frames(task, 2, tmp_path)
    assert frames.shape == (96, 480, 848, 3)
    assert probe(result.path).frames == 96
