"""``farm serve`` as an operator runs it: a real process, port 0, a YAML config, SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import grpc
import pytest

from tests.serving import serve_command

pytest.importorskip("farm.scheduler.manager")

pytestmark = pytest.mark.slow


def test_serve_binds_free_ports_requires_keys_and_stops_on_sigterm(tmp_path, make_task):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    config = tmp_path / "farm.yaml"
    config.write_text("api_keys: [k1]\nmax_queue: 5\npublic_base_url: https://videos.example.com\n")
    process = subprocess.Popen(
        [
            *serve_command(tmp_path / "data"),
            "--config",
            str(config),
            "--workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ""
        deadline = time.time() + 180
        while time.time() < deadline:
            line = process.stdout.readline()
            if "farm gateway:" in line or not line:
                break
        match = re.search(r"gRPC on [\d.]+:(\d+), HTTP on [\d.]+:(\d+)", line)
        assert match, line
        grpc_port, http_port = map(int, match.groups())

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING

        body = json.dumps([make_task()]).encode()
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{http_port}/v1", data=body), timeout=10)
        assert caught.value.code == 401
        request = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/v1", data=body, headers={"Authorization": "Bearer k1"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["data"][0]["taskType"] == "videoInference"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert "shutting down" in output
