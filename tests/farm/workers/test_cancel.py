"""The ``CancelFlags`` actor: cancel tokens and denoising steps, in a process without torch."""

from __future__ import annotations

import time

import pytest

from farm.domain.errors import TaskCancelledError
from farm.workers.cancel import (
    CANCEL_FLAGS_ACTOR,
    CANCEL_FLAGS_NAMESPACE,
    CancelFlags,
    cancel_flags,
    shutdown_cancel_flags,
    step_callback,
)


def test_flags_record_steps_until_a_render_is_cancelled_and_forget_it_when_cleared():
    flags = CancelFlags()
    assert flags.report("t", 0, 1, 2, 4) is False
    assert flags.report("t", 1, 0, 1, 4) is False
    assert flags.progress(["t", "unknown"]) == {"t": {(0, 1): 2, (1, 0): 1}}
    flags.cancel("t")
    assert flags.is_cancelled("t") and not flags.is_cancelled("other")
    assert flags.report("t", 0, 1, 3, 4) is True
    assert flags.progress(["t"]) == {"t": {(0, 1): 2, (1, 0): 1}}, "steps after the cancel are not recorded"
    flags.clear("t")
    assert not flags.is_cancelled("t") and flags.progress(["t"]) == {}


def test_no_token_means_no_step_callback():
    assert step_callback(None) is None


@pytest.mark.slow
def test_the_cancel_flags_actor_runs_without_torch_and_stops_a_render_at_its_next_step(ray_cluster):
    import ray

    shutdown_cancel_flags()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            ray.get_actor(CANCEL_FLAGS_ACTOR, namespace=CANCEL_FLAGS_NAMESPACE)
        except ValueError:
            break
        time.sleep(0.05)
    flags = cancel_flags()  # a fresh actor, in a fresh process
    modules = ray.get(flags.python_modules.remote(), timeout=60)
    assert "farm.workers.cancel" in modules
    assert [m for m in modules if m == "torch" or m.startswith("torch.")] == []

    on_step = step_callback("render-1", (0, 3))
    on_step(0, 4)
    assert ray.get(flags.progress.remote(["render-1"])) == {"render-1": {(0, 3): 1}}
    ray.get(flags.cancel.remote("render-1"))
    with pytest.raises(TaskCancelledError, match="render-1 cancelled at step 4/4"):
        on_step(3, 4)  # the last step is always checked
    ray.get(flags.clear.remote("render-1"))
