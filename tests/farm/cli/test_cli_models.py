"""``farm models`` and ``--profiles`` as an operator uses them: a real process, real YAML files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.media import probe
from tests.serving import serve_command

ROOT = Path(__file__).resolve().parents[3]
FARM = [sys.executable, "-m", "farm.cli"]


def run_farm(*args, **kwargs):
    return subprocess.run([*FARM, *args], capture_output=True, text=True, cwd=ROOT, timeout=600, **kwargs)


def test_farm_models_lists_the_embedded_default():
    done = run_farm("models")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "skywork:skyreels@v4"
    assert "embedded tiny random weights" in done.stdout
    assert "17 frames, overlap 5" in done.stdout
    assert "pipeline:    WanVACEPipeline" in done.stdout
    assert "extender:    template" in done.stdout and "never flags" in done.stdout


def test_farm_models_lists_the_shipped_profiles():
    done = run_farm("models", "--profiles", "profiles")
    assert done.returncode == 0, done.stderr
    listed = [line for line in done.stdout.splitlines() if line and not line.startswith(" ")]
    assert listed == [
        "skywork:skyreels@v4",  # the seed's model first, then the others sorted
        "farm:toy-gp@1",
        "skywork:skyreels-v2-df@1.3b-540p",
        "wan-ai:wan2.1-vace@1.3b",
        "wan-ai:wan2.1-vace@14b",
    ]
    for text in (
        "WanVACEPipeline",
        "Wan-AI/Wan2.1-VACE-1.3B-diffusers",
        "Wan-AI/Wan2.1-VACE-14B-diffusers",
        "SkyReelsV2DiffusionForcingPipeline",
        "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers",
        "97 frames, overlap 17",
        "81 frames, overlap 17",
        "960x544",
        "1280x720",
        "StableAudioPipeline stabilityai/stable-audio-open-1.0",
        "Qwen/Qwen2.5-1.5B-Instruct (chat model)",
        "openai/clip-vit-large-patch14 (CLIP), threshold 0.5",
        "inputs:      none (text-to-video only)",
    ):
        assert text in done.stdout, text


def test_invalid_profiles_exit_2_naming_file_profile_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "profiles:\n  - {model: x, video: {pipeline: WanPipeline, weights: w}, window_frames: 80, "
        "overlap_frames: 4, native: {area: 7168}}\n"
    )
    for command in (("models",), ("render", "task.json"), ("serve",)):
        done = run_farm(*command, "--profiles", str(path))
        assert done.returncode == 2, (command, done.stderr)
        assert f"{path}: profiles[0].window_frames: must be 4k+1, got 80" in done.stderr, done.stderr
    missing = run_farm("models", "--profiles", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr


def test_serve_config_key_profiles_is_read_relative_to_the_config(tmp_path):
    from farm.gateway.server import GatewayConfig

    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "farm.yaml"
    config.write_text("profiles: profiles.yaml\n")
    assert GatewayConfig.from_file(config).profiles == str(tmp_path / "conf" / "profiles.yaml")
    assert GatewayConfig.from_file(config, profiles="/elsewhere").profiles == "/elsewhere"


@pytest.mark.slow
def test_render_with_a_tiny_weights_profile_end_to_end(tmp_path):
    from models.tiny import save_tiny_stable_audio, save_tiny_wan

    video = save_tiny_wan(tmp_path / "weights" / "tiny-wan")
    audio = save_tiny_stable_audio(tmp_path / "weights" / "tiny-audio")
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(
        textwrap.dedent(f"""\
        profiles:
          - model: test:tiny-yaml@1
            description: tiny random Wan + Stable Audio saved with save_pretrained
            video: {{pipeline: WanPipeline, weights: {video}, dtype: float32}}
            window_frames: 17
            overlap_frames: 5
            native: {{area: {112 * 64}, multiple: 16, fps: 16}}
            steps: 2
            guidance_scale: 5.0
            audio: {{pipeline: StableAudioPipeline, weights: {audio}, steps: 2, guidance_scale: 7.0}}
    """)
    )
    task = {
        "taskType": "videoInference",
        "taskUUID": "0b0e3c8e-6f37-4c53-9d7e-2f8f0a3d4c11",
        "model": "test:tiny-yaml@1",
        "positivePrompt": "a lighthouse in a storm, waves crashing",
        "width": 256,
        "height": 144,
        "duration": 3,
        "outputFormat": "MP4",
        "settings": {"audio": True},
    }
    task_path = tmp_path / "task.json"
    task_path.write_text(json.dumps(task))
    out = tmp_path / "out"
    done = run_farm(
        "render",
        str(task_path),
        "--profiles",
        str(profiles),
        "--out",
        str(out),
        "--workers",
        "1",
        "--seed",
        "3",
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [path] = list(out.iterdir())
    assert "test:tiny-yaml@1" in done.stderr and "+audio" in done.stdout
    info = probe(path)
    assert (info.frames, info.width, info.height, info.fps) == (96, 256, 144, 32)
    assert info.audio_seconds == pytest.approx(3.0, abs=0.03)


@pytest.mark.slow
def test_serve_registers_the_config_files_profiles(tmp_path):
    """``profiles:`` in the gateway config: the gateway accepts tasks for the profile's model id and
    still refuses unknown ids."""
    import re
    import signal
    import time
    import urllib.error
    import urllib.request

    from models.tiny import save_tiny_wan

    # Real (tiny) weights: the accepted task starts rendering before SIGTERM, as in test_serve, and
    # a pool whose weights fail to load would make the shutdown depend on that failure's timing.
    weights = save_tiny_wan(tmp_path / "tiny-wan")
    (tmp_path / "profiles.yaml").write_text(
        f"profiles:\n  - {{model: 'test:served@1', video: {{pipeline: WanPipeline, weights: '{weights}'}}, "
        "window_frames: 17, overlap_frames: 5, native: {area: 7168}, steps: 2}\n"
    )
    config = tmp_path / "farm.yaml"
    config.write_text("profiles: profiles.yaml\nmax_queue: 5\n")
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
        cwd=ROOT,
    )
    try:
        line, deadline = "", time.time() + 180
        while time.time() < deadline:
            line = process.stdout.readline()
            if "farm gateway:" in line or not line:
                break
        match = re.search(r"HTTP on [\d.]+:(\d+)", line)
        assert match, line
        url = f"http://127.0.0.1:{match.group(1)}/v1"

        def post(model: str):
            task = {
                "taskType": "videoInference",
                "taskUUID": "5a1f0a52-3f0e-4d8e-9a43-7c1d2b3e4f50",
                "model": model,
                "positivePrompt": "a kite over a beach",
                "duration": 3,
                "width": 256,
                "height": 144,
                "deliveryMethod": "async",
            }
            request = urllib.request.Request(
                url, data=json.dumps([task]).encode(), headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        status, body = post("test:nope@1")
        assert status == 400 and "test:served@1" in json.dumps(body), body
        status, body = post("test:served@1")
        assert status == 200, body
        assert body["data"][0]["taskUUID"] == "5a1f0a52-3f0e-4d8e-9a43-7c1d2b3e4f50"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
