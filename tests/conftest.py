"""Shared fixtures: one real local Ray cluster for the whole session, and seed-shaped tasks."""

from __future__ import annotations

import copy
import os
import uuid

import pytest

# Triton runs the kernels/ twins on CPU tensors only through its interpreter, and decides at import
# time: set before anything (diffusers, torch) can import triton. Nothing else here uses triton.
os.environ.setdefault("TRITON_INTERPRET", "1")

BASE_TASK = {
    "taskType": "videoInference",
    "model": "skywork:skyreels@v4",
    "positivePrompt": "A lighthouse on a cliff at dusk, waves crashing, gulls crying",
    "duration": 3,
    "resolution": "480p",
    "outputFormat": "MP4",
    "settings": {"audio": True},
}


@pytest.fixture
def make_task():
    """A valid task dict with a fresh UUID v4; keyword arguments override top-level fields."""

    def make(**overrides):
        task = copy.deepcopy(BASE_TASK)
        task["taskUUID"] = str(uuid.uuid4())
        task.update(overrides)
        return task

    return make


@pytest.fixture(scope="session")
def ray_cluster():
    """A real embedded Ray, started once; enough logical CPUs for a 3-worker pool plus audio."""
    import ray

    from farm.workers.cluster import connect_ray

    connect_ray(min_cpus=6)
    yield ray
    ray.shutdown()
