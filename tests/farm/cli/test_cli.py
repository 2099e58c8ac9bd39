"""The ``farm`` command as a user runs it: a real process, a real local Ray, files decoded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.media import probe

ROOT = Path(__file__).resolve().parents[3]
FARM = [sys.executable, "-m", "farm.cli"]


def run_farm(*args, **kwargs):
    return subprocess.run([*FARM, *args], capture_output=True, text=True, cwd=ROOT, timeout=600, **kwargs)


def test_render_help_explains_the_options():
    done = run_farm("render", "--help")
    assert done.returncode == 0
    for option in ("--out", "--executor", "--workers", "--ray-address", "--gpus-per-worker", "--seed", "--weights"):
        assert option in done.stdout


def test_an_invalid_task_exits_non_zero_listing_every_violation(tmp_path):
    task = {
        "taskType": "videoInference",
        "taskUUID": "not-a-uuid",
        "model": "skywork:skyreels@v4",
        "positivePrompt": "x",
        "duration": 20,
        "outputQuality": 5,
        "inputs": {"frameImages": [{"image": "https://example.com/a.png", "frame": 9999}]},
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(task))
    done = run_farm("render", str(path), "--out", str(tmp_path / "out"), "--no-progress")
    assert done.returncode == 2
    for field in ("taskUUID", "duration", "outputQuality"):
        assert field in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_in_process_with_a_ray_address_is_refused_naming_both(tmp_path, make_task):
    path = tmp_path / "task.json"
    path.write_text(json.dumps(make_task(settings={"audio": False})))
    done = run_farm(
        "render", str(path), "--out", str(tmp_path / "out"), "--executor", "in-process", "--ray-address", "auto"
    )
    assert done.returncode == 2
    assert "--ray-address" in done.stderr and "--executor ray" in done.stderr
    assert not (tmp_path / "out").exists()


def test_missing_file_and_bad_json_are_clear_errors(tmp_path):
    done = run_farm("render", str(tmp_path / "nope.json"))
    assert done.returncode == 2 and "nope.json" in done.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    done = run_farm("render", str(bad))
    assert done.returncode == 2 and "not valid JSON" in done.stderr


@pytest.mark.slow
def test_render_the_readme_example_end_to_end(tmp_path):
    example = ROOT / "examples" / "text-to-video-480p.json"
    task = json.loads(example.read_text())
    done = run_farm("render", str(example), "--out", str(tmp_path), "--workers", "2", "--seed", "7")
    assert done.returncode == 0, done.stderr[-2000:]
    [path] = list(tmp_path.iterdir())
    assert path.name == f"{task['taskUUID']}-0.mp4"
    assert "seed=7" in done.stdout and str(path) in done.stdout
    assert "render chunks" in done.stderr, "a progress bar is shown"
    info = probe(path)
    assert (info.frames, info.width, info.height, info.fps) == (96, 848, 480, 32)
    assert info.audio_seconds == pytest.approx(3.0, abs=0.03)


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_serve_runs_on_the_configured_event_loop(event_loop):
    """``event_loop`` (gateway config) picks the loop ``farm serve`` runs on: uvloop by default."""
    from farm.cli.main import run_loop

    seen: list[str] = []

    async def main() -> None:
        import asyncio

        seen.append(type(asyncio.get_running_loop()).__module__)

    run_loop(main(), event_loop)
    assert len(seen) == 1 and seen[0].split(".")[0] == event_loop
