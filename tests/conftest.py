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


#: The files that take longest (measured 2026-12-02 on a 2-core machine), slowest first. ``make
#: test`` runs the suite on two xdist workers, a file to a worker (``--dist loadfile``); starting the
#: long files first lets both workers end together instead of one finishing a long file alone.
SLOWEST_FILES = (
    "tests/farm/gateway/test_end_to_end.py",
    "tests/farm/render/test_render.py",
    "tests/farm/render/test_conditioning.py",
    "tests/farm/cli/test_lean.py",
    "tests/farm/scheduler/test_control_plane.py",
    "tests/farm/render/test_inprocess.py",
    "tests/models/test_speed_options.py",
    "tests/benchmarks/test_gpu_dry_run.py",
    "tests/farm/scheduler/test_ray_pools.py",
    "tests/farm/render/test_safety_and_prompts.py",
    "tests/farm/scheduler/test_manager.py",
    "tests/farm/io/test_encode.py",
    "tests/farm/cli/test_cli_models.py",
    "tests/farm/render/test_codenoise.py",
    "tests/models/test_backends.py",
    "tests/farm/cli/test_cli.py",
    "tests/farm/scheduler/test_codenoise_render.py",
    "tests/models/test_wan_stepped.py",
    "tests/farm/workers/test_cluster.py",
    "tests/kernels/test_triton.py",
    "tests/models/test_wan_cache.py",
    "tests/farm/render/test_yuv_wire.py",
    "tests/farm/gateway/test_serve.py",
    "tests/farm/gateway/test_crash.py",
)


def pytest_collection_modifyitems(config, items):
    """Slowest files first (``SLOWEST_FILES``), the rest in their usual order."""
    rank = {path: i for i, path in enumerate(SLOWEST_FILES)}
    root = config.rootpath
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(rank)))


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
