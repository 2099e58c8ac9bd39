"""The control plane in a real Ray cluster: renders outlive the gateway, the scheduler survives its death.

A Ray head is started as its own process (``ray start --head``, like a KubeRay head), and
``farm serve --ray-address`` joins it. Killing the gateway with SIGKILL leaves the detached
``farm-scheduler`` actor rendering; a new gateway on the same data dir picks the task up where it
is, and the scheduler's count of chunk dispatches proves no finished chunk was rendered again.
Killing the scheduler actor itself makes Ray restart it empty; the gateway resyncs from its store.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from farm.domain.planner import plan_clip
from farm.v1 import farm_pb2, farm_pb2_grpc
from tests.media import probe
from tests.serving import serve_command

psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
TASK = {
    "taskType": "videoInference",
    "model": "skywork:skyreels@v4",
    "positivePrompt": "A lighthouse on a cliff at dusk",
    "width": 256,
    "height": 144,
    "duration": 5,
    "outputFormat": "MP4",
    "settings": {"audio": False, "promptExtend": False},
}
#: Chunks of a 5 s result on the tiny default (17-frame windows overlapping by 5).
CHUNKS = len(plan_clip(160, window_frames=17, overlap_frames=5, temporal_stride=4).chunks)


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head in its own process group on this machine, like a KubeRay head; at the end only
    that group is killed (``ray stop`` would stop every Ray on the machine, the test session's too)."""
    # Short: Ray's Unix sockets live under it (at most 107 bytes a path), and pytest's own temp
    # paths are too long for them under xdist (``.../popen-gw1/...``): the head then never comes up.
    temp = Path(tempfile.mkdtemp(prefix="rayhead-", dir="/tmp"))
    # A test cluster: no token (the processes of this test are its only clients).
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_AUTH_MODE": "disabled"}
    port = 6400 + os.getpid() % 500
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=6",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    probe_code = f"import ray; ray.init(address={address!r}, logging_level='ERROR'); print('up')"
    deadline = time.time() + 180
    while time.time() < deadline:
        if head.poll() is not None:
            pytest.skip(f"cannot start a Ray head here: {head.stderr.read().decode()[-2000:]}")
        up = subprocess.run([sys.executable, "-c", probe_code], capture_output=True, text=True, env=env, timeout=120)
        if up.returncode == 0:
            break
        time.sleep(1)
    yield address
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait(60)
    # Worker processes of the head may have started their own sessions: end whatever still runs
    # from this head's temp dir.
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(temp) in part for part in process.info["cmdline"] or ()):
                process.kill()
        except psutil.Error:
            pass
    shutil.rmtree(temp, ignore_errors=True)


def _serve(data_dir: Path, address: str, log: Path):
    process = subprocess.Popen(
        [
            *serve_command(data_dir),
            "--workers",
            "2",
            "--ray-address",
            address,
        ],
        stdout=subprocess.PIPE,
        stderr=open(log, "a"),
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 180
    line = ""
    while time.time() < deadline:
        line = process.stdout.readline()
        if "farm gateway:" in line or not line:
            break
    match = re.search(r"gRPC on [\d.]+:(\d+), HTTP on [\d.]+:(\d+)", line)
    if not match:
        process.kill()
        pytest.fail(f"farm serve did not start: {line!r}\n{log.read_text()[-4000:]}")
    return process, int(match.group(1)), int(match.group(2))


def _stub(port: int):
    return farm_pb2_grpc.VideoInferenceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))


def _submit(stub, task: dict) -> None:
    reply = stub.Submit(json_format.ParseDict({"tasks": [task]}, farm_pb2.SubmitRequest()), timeout=30)
    assert not reply.errors, reply.errors


def _wait_chunks(stub, task_uuid: str, at_least: int, timeout: float = 240) -> int:
    """Watch until ``at_least`` chunks of result 0 are done; returns how many."""
    deadline = time.time() + timeout
    for event in stub.Watch(farm_pb2.WatchRequest(task_uuid=task_uuid), timeout=timeout):
        if event.kind == "chunks" and event.chunks_done >= at_least:
            return event.chunks_done
        if event.kind in ("done", "error", "cancelled") or time.time() > deadline:
            break
    pytest.fail(f"task {task_uuid} never reached {at_least} chunks")


def _wait_done(stub, task_uuid: str, timeout: float = 300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task_uuid), timeout=30)
        if answer.data and answer.data[0].status in ("success", "error"):
            return answer
        time.sleep(0.5)
    pytest.fail(f"task {task_uuid} did not finish")


def _scheduler_renders(address: str, task_uuid: str) -> int:
    code = (
        "import ray, sys\n"
        f"ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False)\n"
        "actor = ray.get_actor('farm-scheduler', namespace='farm')\n"
        f"print(ray.get(actor.chunk_renders.remote({task_uuid!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


def _kill_tree(process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(30)


def test_sigkill_of_the_gateway_leaves_the_render_going_and_no_chunk_is_rendered_twice(ray_head, tmp_path):
    data = tmp_path / "data"
    task = {**TASK, "taskUUID": str(uuid.uuid4())}
    first, grpc_port, _ = _serve(data, ray_head, tmp_path / "gateway.log")
    try:
        stub = _stub(grpc_port)
        _submit(stub, task)
        done_before = _wait_chunks(stub, task["taskUUID"], 3)
    finally:
        _kill_tree(first)  # SIGKILL: no shutdown code runs
    assert done_before >= 3

    second, grpc_port, http_port = _serve(data, ray_head, tmp_path / "gateway.log")
    try:
        stub = _stub(grpc_port)
        answer = _wait_done(stub, task["taskUUID"])
        result = answer.data[0]
        assert result.status == "success", answer
        path = tmp_path / "out.mp4"
        path.write_bytes(
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1/videos/{result.video_uuid}", timeout=60).read()
        )
        assert probe(path).frames == 160
        # Every chunk was dispatched exactly once: the scheduler kept rendering while no gateway ran.
        assert _scheduler_renders(ray_head, task["taskUUID"]) == CHUNKS
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)


def test_a_killed_scheduler_is_restarted_and_the_gateway_hands_its_tasks_over_again(ray_head, tmp_path):
    data = tmp_path / "data"
    task = {**TASK, "taskUUID": str(uuid.uuid4())}
    gateway, grpc_port, _ = _serve(data, ray_head, tmp_path / "gateway.log")
    try:
        stub = _stub(grpc_port)
        # The killer joins Ray first (seconds) and kills on a word from stdin (milliseconds), so the
        # kill lands while the task renders, not after its last chunk.
        code = (
            "import ray, sys\n"
            f"ray.init(address={ray_head!r}, logging_level='ERROR', log_to_driver=False)\n"
            "actor = ray.get_actor('farm-scheduler', namespace='farm')\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n"
            "ray.kill(actor, no_restart=False)\n"
        )
        killer = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert killer.stdout.readline().strip() == "ready"
        _submit(stub, task)
        _wait_chunks(stub, task["taskUUID"], 2)
        killer.communicate("kill\n", timeout=120)
        assert killer.returncode == 0
        answer = _wait_done(stub, task["taskUUID"], timeout=400)
        assert answer.data[0].status == "success", answer
        # The restarted scheduler rendered the result again from its first chunk (same seed).
        assert _scheduler_renders(ray_head, task["taskUUID"]) == CHUNKS
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(60)


def test_the_gateway_process_holds_no_frames_during_a_1080p_render(ray_head, tmp_path):
    """Peak RSS of the gateway stays flat while a 1080p result is stitched and encoded elsewhere
    (the old gateway held chunks and resized 1080p frames for x264 itself)."""
    gateway, grpc_port, _ = _serve(tmp_path / "data", ray_head, tmp_path / "gateway.log")
    try:
        stub = _stub(grpc_port)
        proc = psutil.Process(gateway.pid)
        baseline = proc.memory_info().rss
        task = {**TASK, "taskUUID": str(uuid.uuid4()), "width": 1920, "height": 1080, "duration": 3}
        _submit(stub, task)
        peak = baseline
        deadline = time.time() + 300
        while time.time() < deadline:
            peak = max(peak, proc.memory_info().rss)
            answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task["taskUUID"]), timeout=30)
            if answer.data and answer.data[0].status in ("success", "error"):
                break
            time.sleep(0.05)
        assert answer.data[0].status == "success", answer
        grown = (peak - baseline) / 2**20
        # One 1080p RGB frame is 6 MiB; a chunk of them ~100 MiB; x264's 1080p lookahead more.
        assert grown < 60, f"the gateway grew by {grown:.0f} MiB during a 1080p render"
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(60)


def test_farm_serve_on_an_external_cluster_leaves_the_scheduler_running_after_sigterm(ray_head, tmp_path):
    """A graceful stop on a cluster stops the gateway, not the renders (the control plane outlives it)."""
    gateway, _, _ = _serve(tmp_path / "data", ray_head, tmp_path / "gateway.log")
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(60) == 0
    code = (
        "import ray\n"
        f"ray.init(address={ray_head!r}, logging_level='ERROR', log_to_driver=False)\n"
        "print(ray.get(ray.get_actor('farm-scheduler', namespace='farm').epoch.remote()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and json.dumps(done.stdout.strip()), done.stderr[-2000:]
