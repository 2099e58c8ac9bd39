"""Lean start, clean exit: ``farm render`` and ``farm serve`` start only what the work needs, and
no Ray process outlives them. Real processes, watched from the outside with psutil."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.serving import serve_command

ROOT = Path(__file__).resolve().parents[3]
FARM = [sys.executable, "-m", "farm.cli"]


class TreeWatch:
    """Every process below ``pid`` while it runs, with every title (command line) each one had.

    Ray workers rename themselves (``ray::IDLE`` -> ``ray::VideoWorker.chunk``), so titles are
    sampled every 50 ms rather than read once.
    """

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.seen: dict[int, psutil.Process] = {}
        self.titles: dict[int, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                children = self.root.children(recursive=True)
            except psutil.Error:
                return
            for child in children:
                try:
                    title = " ".join(child.cmdline())
                except psutil.Error:
                    continue
                self.seen.setdefault(child.pid, child)
                self.titles.setdefault(child.pid, set()).add(title)
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def all_titles(self) -> str:
        return "\n".join(t for titles in self.titles.values() for t in titles)

    def session_dirs(self) -> set[str]:
        """The Ray session directories named on the command lines seen (raylet, dashboard)."""
        return set(re.findall(r"--session[-_]dir=(\S+)", self.all_titles()))

    def watchdogs(self) -> list[int]:
        return [pid for pid, titles in self.titles.items() if any("farm.workers.cluster" in t for t in titles)]


def alive(process: psutil.Process) -> bool:
    try:
        if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
            return False
        # An empty command line: the process is exiting and the kernel has released its memory
        # already (a check right at the command's return can catch one in that instant).
        return bool(process.cmdline())
    except psutil.Error:
        return False


def still_running(watch: TreeWatch, timeout: float) -> list[str]:
    """Titles of the processes ``watch`` saw that are still up after ``timeout`` seconds, and of
    any other process naming one of its Ray sessions."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in watch.seen.values() if alive(p)]
        sessions = watch.session_dirs()
        strays = []
        for process in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or ())
            if process.pid != os.getpid() and any(s in cmdline for s in sessions) and alive(process):
                strays.append(process)
        gone = not left and not strays
        if gone or time.monotonic() > deadline:
            return sorted({" ".join(p.cmdline())[:80] for p in [*left, *strays] if alive(p)})
        time.sleep(0.05)


def write_task(tmp_path: Path, make_task, **overrides) -> Path:
    path = tmp_path / "task.json"
    path.write_text(json.dumps(make_task(**overrides)))
    return path


def start_render(task: Path, out: Path, *options: str, **popen) -> subprocess.Popen:
    """``farm render`` of ``task`` into ``out`` (seed 1, no progress bars), running."""
    command = [*FARM, "render", str(task), "--out", str(out), "--no-progress", "--seed", "1", *options]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, **popen)


@pytest.mark.slow
def test_render_in_process_starts_no_process_at_all(tmp_path, make_task):
    """The default on one machine: no Ray node, no worker process, nothing left behind."""
    task = write_task(tmp_path, make_task, settings={"audio": False})
    process = start_render(task, tmp_path / "out")
    watch = TreeWatch(process.pid)
    stdout, stderr = process.communicate(timeout=600)
    watch.stop()
    assert process.returncode == 0, stderr[-3000:]
    assert "no Ray" in stderr
    [path] = (tmp_path / "out").iterdir()
    assert str(path) in stdout and path.stat().st_size > 0
    # PyAV and torch may run helper threads, never processes: the whole render is one process.
    assert watch.seen == {}, f"processes started: {watch.all_titles()}"


@pytest.mark.slow
def test_ctrl_c_stops_an_in_process_render_and_removes_its_partial_file(tmp_path, make_task):
    task = write_task(tmp_path, make_task, settings={"audio": False}, duration=15)
    out = tmp_path / "out"
    # SIGINT handled as when a terminal starts it (a background job of a script ignores it).
    process = start_render(task, out, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not (out.is_dir() and any(out.iterdir())):  # the encoder's hidden partial file
        assert process.poll() is None and time.monotonic() < deadline, "the render never started encoding"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == [], "no partial file is left"
    assert stdout == "", "no result is reported"


@pytest.mark.slow
def test_render_without_audio_starts_no_audio_worker_and_leaves_no_ray_process(tmp_path, make_task):
    task = write_task(tmp_path, make_task, settings={"audio": False})
    process = start_render(task, tmp_path / "out", "--executor", "ray")
    watch = TreeWatch(process.pid)
    stdout, stderr = process.communicate(timeout=600)
    watch.stop()
    assert process.returncode == 0, stderr[-3000:]
    assert "+audio" not in stdout and "+ 1 audio" not in stderr
    titles = watch.all_titles()
    assert "ray::VideoWorker" in titles, "the watch saw the workers"
    assert "AudioWorker" not in titles, "no audio model starts for a task without audio"
    assert watch.session_dirs(), "the watch saw the embedded node"
    # Right when the command has returned, nothing of its Ray is left. The watchdog is no Ray
    # process: it leaves once it sees the node gone (within its 0.25 s poll).
    at_exit = still_running(watch, timeout=0.0)
    assert [p for p in at_exit if "farm.workers.cluster" not in p] == []
    assert still_running(watch, timeout=5.0) == []
    assert "died" not in stderr and "killed" not in stderr, "a clean exit reports no dead worker"


@pytest.mark.slow
def test_the_cancel_flags_actor_holds_no_torch(ray_cluster):
    from farm.workers.cancel import cancel_flags

    modules = ray_cluster.get(cancel_flags().python_modules.remote())
    assert "farm.workers.cancel" in modules
    assert "torch" not in modules and "diffusers" not in modules


@pytest.mark.slow
def test_the_scheduler_actor_holds_no_torch(ray_cluster):
    from farm.scheduler.actor import ActorClient
    from farm.scheduler.core import SchedulerConfig
    from models.profiles import get_profile, known_models

    client = ActorClient({m: get_profile(m) for m in known_models()}, SchedulerConfig(), name="lean-test-scheduler")
    try:
        modules = ray_cluster.get(client.actor.python_modules.remote())
    finally:
        client.close(shutdown=True)
    assert "farm.scheduler.core" in modules
    assert "torch" not in modules


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_serve_warms_its_minimum_pool_tells_live_from_ready_and_its_ray_dies_with_it(tmp_path):
    model = "skywork:skyreels@v4"
    config = tmp_path / "farm.yaml"
    config.write_text(f"pools:\n  '{model}':\n    min_workers: 1\n    max_workers: 1\n")
    process = subprocess.Popen(
        serve_command(tmp_path / "data", "--config", str(config), "--workers", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    watch = TreeWatch(process.pid)
    try:
        line = ""
        deadline = time.time() + 300
        while time.time() < deadline:
            line = process.stdout.readline()
            if "farm gateway:" in line or not line:
                break
        match = re.search(r"HTTP on [\d.]+:(\d+)", line)
        assert match, line
        base = f"http://127.0.0.1:{match.group(1)}"
        assert get(f"{base}/livez") == (200, {"status": "ok"})
        statuses = []
        while time.time() < deadline:
            status, body = get(f"{base}/readyz")
            statuses.append(status)
            if status == 200:
                break
            assert body["status"] == "not ready" and f"video:{model}" in body["loading"], body
            time.sleep(0.2)
        assert statuses[-1] == 200, "the minimum pool loads without any task"
        assert "ray::VideoWorker" in watch.all_titles(), "the warm worker was started at serve time"
        assert "AudioWorker" not in watch.all_titles(), "no audio model before a task wants audio"
        assert get(f"{base}/healthz")[0] == 200
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        watch.stop()
    # Without the watchdog the raylet's agents outlived a SIGKILLed parent by more than a minute.
    assert still_running(watch, timeout=10.0) == []


def test_readyz_answers_from_the_farms_check_and_livez_while_draining():
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from farm.gateway.http_app import RestFace, make_app

    answers = iter(
        [
            (False, {"loading": {"video:skywork:skyreels@v4": "1/2 workers ready"}}),
            (True, {}),
            RuntimeError("actor unreachable"),
        ]
    )

    def check():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def probe() -> list[tuple[str, int, dict]]:
        face = RestFace(service=None, readiness=check)  # type: ignore[arg-type]  # no service needed for /readyz
        seen = []
        async with TestClient(TestServer(make_app(face))) as client:
            for path in ("/readyz", "/readyz", "/readyz", "/livez"):
                response = await client.get(path)
                seen.append((path, response.status, await response.json()))
            face.admitting = False  # graceful shutdown: not ready, still alive
            for path in ("/readyz", "/livez", "/healthz"):
                response = await client.get(path)
                seen.append((path, response.status, await response.json()))
        return seen

    seen = asyncio.run(probe())
    assert seen[0][1:] == (503, {"status": "not ready", "loading": {"video:skywork:skyreels@v4": "1/2 workers ready"}})
    assert seen[1][1:] == (200, {"status": "ready"})
    assert seen[2][1] == 503 and "actor unreachable" in seen[2][2]["reason"]
    assert seen[3][1:] == (200, {"status": "ok"})
    assert [s[1] for s in seen[4:]] == [503, 200, 503]
