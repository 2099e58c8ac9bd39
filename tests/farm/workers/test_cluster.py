"""The embedded Ray goes with its process: fast on ``stop_ray``, and even when the process is SIGKILLed.

Each test runs its own Ray in a child process (a real embedded node, not the session's cluster) and
follows that node's processes from the outside with psutil.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[3]

#: A process with an embedded Ray and two actors; prints its node's processes as JSON, then
#: either stops Ray (``stop``) or waits to be killed (``wait``).
CHILD = """
import json, os, sys, time
import ray
from farm.workers.cluster import connect_ray, node_processes, stop_ray

connect_ray(min_cpus=2)

@ray.remote
class Echo:
    def pid(self):
        return os.getpid()

actors = [Echo.remote() for _ in range(2)]
actor_pids = ray.get([a.pid.remote() for a in actors])
node = ray._private.worker._global_node
watchdogs = [c.pid for c in __import__("psutil").Process().children() if "farm.workers.cluster" in " ".join(c.cmdline())]
print(json.dumps({
    "pids": [p.pid for p in node_processes()],
    "actors": actor_pids,
    "kinds": sorted(node.all_processes),
    "watchdogs": watchdogs,
}), flush=True)
if sys.argv[1] == "stop":
    started = time.perf_counter()
    stop_ray()
    print(json.dumps({"stop_s": time.perf_counter() - started}), flush=True)
else:
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still alive after waiting up to ``timeout`` seconds for all to go."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def start_child(mode: str) -> tuple[subprocess.Popen, dict]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = child.stdout.readline()
    if not line:
        child.wait(60)
        pytest.fail(f"the child did not start Ray: {child.stderr.read()[-3000:]}")
    return child, json.loads(line)


@pytest.mark.slow
def test_stop_ray_ends_every_process_of_the_node_quickly_and_quietly():
    child, node = start_child("stop")
    try:
        stopped = json.loads(child.stdout.readline())
        child.wait(60)
        stderr = child.stderr.read()
    finally:
        child.kill()
    assert child.returncode == 0, stderr[-3000:]
    assert set(node["actors"]) <= set(node["pids"]), "the node's processes include its workers"
    assert wait_gone(node["pids"], timeout=0.5) == [], "every process of the node is gone when stop_ray returns"
    # ray.shutdown() took 1.9 s here (a second's grace per process); the old CLI exit about 3 s.
    assert stopped["stop_s"] < 1.5
    assert "died" not in stderr and "killed" not in stderr, "stopping on purpose reports no dead worker"
    # What a single-machine farm does not use is not started (it cost 160 MB at every start).
    assert "monitor" not in node["kinds"] and "log_monitor" not in node["kinds"]
    assert wait_gone(node["watchdogs"], timeout=5) == [], "the watchdog leaves with the node"


@pytest.mark.slow
def test_a_sigkilled_process_takes_its_embedded_ray_along():
    child, node = start_child("wait")
    assert node["watchdogs"], "an embedded node has a watchdog"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    # Without the watchdog the raylet's agents lived on for more than a minute.
    assert wait_gone(node["pids"], timeout=5) == []
    assert wait_gone(node["watchdogs"], timeout=5) == []


JOIN = """
import sys
from farm.workers.cluster import connect_ray, node_processes, stop_ray

connect_ray(sys.argv[1])
assert node_processes() == [], "a joined cluster is not this process's to kill"
stop_ray()
"""


@pytest.mark.slow
def test_a_process_that_joined_a_cluster_leaves_it_running(ray_cluster):
    from farm.workers.cluster import node_processes

    cluster = node_processes()  # the session's embedded node, started by this process
    address = ray_cluster.get_runtime_context().gcs_address
    done = subprocess.run([sys.executable, "-c", JOIN, address], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert cluster and all(p.is_running() for p in cluster)
    assert ray_cluster.get([ray_cluster.put(1)]) == [1]
