"""A real crash: ``farm serve`` killed with SIGKILL while it renders, then started again on the same data dir.

The first gateway gets no chance to persist anything at the end (no SIGTERM handler runs), and its
embedded Ray dies with it. The second gateway must answer ``GetResponse`` for the task at once
and, as ``TaskManager.start`` re-queues tasks left ``running``, finish it: the video downloads and
decodes with all its frames.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request

import grpc
import pytest
from google.protobuf import json_format

from farm.v1 import farm_pb2, farm_pb2_grpc
from tests.media import probe
from tests.serving import serve_command

pytest.importorskip("farm.scheduler.manager")
psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.slow

SMALL = {
    "width": 256,
    "height": 144,
    "duration": 3,
    "outputFormat": "MP4",
    "settings": {"audio": False, "promptExtend": False},
}
START_TIMEOUT_S = 180
RENDER_TIMEOUT_S = 300


def _start(data_dir, log_path):
    """``farm serve`` on free ports in its own session (so its whole process group can be killed)."""
    log = open(log_path, "a")
    process = subprocess.Popen(
        [
            *serve_command(data_dir),
            "--workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    process.log = log
    deadline = time.time() + START_TIMEOUT_S
    line = ""
    while time.time() < deadline:
        line = process.stdout.readline()  # the gateway prints its ports, then nothing until shutdown
        if "farm gateway:" in line or not line:
            break
    match = re.search(r"gRPC on [\d.]+:(\d+), HTTP on [\d.]+:(\d+)", line)
    if not match:
        _kill(process)
        pytest.fail(f"farm serve did not start: {line!r}\n{open(log_path).read()[-4000:]}")
    return process, int(match.group(1)), int(match.group(2))


def _kill(process) -> None:
    """SIGKILL the gateway, its process group and every descendant (embedded Ray: gcs, raylet, workers)."""
    try:
        family = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in family:  # some Ray daemons start their own sessions
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait(30)
    psutil.wait_procs(family, timeout=30)
    if process.stdout:
        process.stdout.close()
    process.log.close()


def test_sigkill_mid_render_then_restart_finishes_the_task(tmp_path, make_task):
    data_dir, log_path = tmp_path / "data", tmp_path / "serve.log"
    raw = make_task(**SMALL)
    raw.pop("resolution", None)
    task = json_format.ParseDict(raw, farm_pb2.VideoInferenceTask())
    request = farm_pb2.GetResponseRequest(task_uuid=task.task_uuid)

    first, grpc_port, _ = _start(data_dir, log_path)
    second = None
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = farm_pb2_grpc.VideoInferenceStub(channel)
            ack = stub.Submit(farm_pb2.SubmitRequest(tasks=[task]), timeout=30)
            assert [a.task_uuid for a in ack.data] == [task.task_uuid]
            kinds = []
            for event in stub.Watch(farm_pb2.WatchRequest(task_uuid=task.task_uuid), timeout=RENDER_TIMEOUT_S):
                kinds.append(event.kind)
                if event.kind == "chunks" or event.kind in ("done", "error", "cancelled"):
                    break
            assert kinds[-1] == "chunks", f"the render did not start, or ended before the kill: {kinds}"
            before = stub.GetResponse(request, timeout=30)
            assert [r.state for r in before.data] == ["running"], before
        family = psutil.Process(first.pid).children(recursive=True)
        _kill(first)
        assert first.returncode == -signal.SIGKILL
        assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], (
            "processes of the killed gateway (embedded Ray) are still alive"
        )

        second, grpc_port, http_port = _start(data_dir, log_path)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = farm_pb2_grpc.VideoInferenceStub(channel)
            answer = stub.GetResponse(request, timeout=30)
            assert [r.task_uuid for r in answer.data] == [task.task_uuid]
            assert answer.data[0].status in ("processing", "success"), answer
            deadline = time.time() + RENDER_TIMEOUT_S
            while any(r.status == "processing" for r in answer.data) and time.time() < deadline:
                time.sleep(0.5)
                answer = stub.GetResponse(request, timeout=30)
        # TaskManager resumes interrupted tasks, so this is a success, not merely "failed clearly".
        assert [(r.status, r.state) for r in answer.data] == [("success", "success")], (
            f"{answer}\nerrors: {list(answer.errors)}\n{log_path.read_text()[-4000:]}"
        )
        (result,) = answer.data
        assert result.video_url == f"http://127.0.0.1:{http_port}/v1/videos/{result.video_uuid}"
        with urllib.request.urlopen(result.video_url, timeout=30) as response:
            assert response.headers["Content-Type"] == "video/mp4"
            (tmp_path / "video.mp4").write_bytes(response.read())
        info = probe(tmp_path / "video.mp4")
        assert (info.frames, info.width, info.height, info.video_codec) == (96, 256, 144, "h264")
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                _kill(process)
