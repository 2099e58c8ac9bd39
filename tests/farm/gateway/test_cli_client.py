"""``farm submit`` / ``status`` / ``cancel`` against a loopback gateway (FakeService)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from farm.cli.main import EXIT_INVALID, main


def test_submit_status_cancel(fake_gateway, make_task, tmp_path, capsys):
    task = make_task()
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task))
    assert main(["submit", str(path), "--server", fake_gateway.grpc_target]) == 0
    assert f"accepted {task['taskUUID']}" in capsys.readouterr().out

    video_uuid = str(uuid.uuid4())
    fake_gateway.gateway.service.finish(task["taskUUID"], video_uuid, seed=3)
    assert main(["status", task["taskUUID"], "--server", fake_gateway.grpc_target]) == 0
    out = capsys.readouterr().out
    assert "success" in out and f"/v1/videos/{video_uuid}" in out and "seed=3" in out

    assert main(["cancel", task["taskUUID"], "--server", fake_gateway.grpc_target]) == 0
    assert "cancelled" in capsys.readouterr().out


def test_submit_wait_streams_progress_then_prints_results(fake_gateway, make_task, tmp_path, capsys):
    task = make_task()
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task))
    assert main(["submit", str(path), "--server", fake_gateway.grpc_target, "--wait", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"accepted {task['taskUUID']}" in out and "queued" in out


def test_invalid_task_and_unknown_uuid(fake_gateway, make_task, tmp_path, capsys):
    path = tmp_path / "task.json"
    path.write_text(json.dumps(make_task(outputQuality=5)))
    assert main(["submit", str(path), "--server", fake_gateway.grpc_target]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "outputQuality" in err
    assert main(["status", str(uuid.uuid4()), "--server", fake_gateway.grpc_target]) == EXIT_INVALID
    assert "NOT_FOUND" in capsys.readouterr().err


def test_serve_help_lists_the_flags():
    out = subprocess.run(
        [sys.executable, "-m", "farm.cli", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--grpc-port", "--http-port", "--data-dir", "--config", "--ray-address", "--workers"):
        assert flag in out
