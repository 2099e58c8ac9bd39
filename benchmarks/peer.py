"""Side by side with what a user would write: the farm against a plain diffusers script.

    .venv/bin/python benchmarks/peer.py [--rounds 3] [--parts cold,warm,serve,split] [--json out.json]

Every comparison runs in this one invocation, its two sides interleaved (A, B, A, B, ...), and
reports medians and their ratio (farm / plain):

* ``cold``: ``farm render`` of a 5 s 480p task without audio in a fresh process (its default
  executor: in-process on one machine; the side ``ray`` is ``--executor ray``: embedded Ray, worker
  actors) against ``peer.py plain``, the script a user would write with
  diffusers: the same tiny VACE pipeline, windows (17 frames, overlap 5, 13 of them), steps,
  guidance, noise layout, blend and encoder settings; one process, a loop over the windows, a
  crossfade, PyAV. Wall time from start to exit; the peak of the summed RSS of the whole process
  tree (sampled every 50 ms; Ray's processes included) and of the summed PSS (shared libraries
  counted once); CPU seconds of the tree; for the farm, how long it ran after its file was final.
  Targets: wall <= 1.0x, RSS <= 2.5x. ``--baseline DIR`` adds the ``farm render`` of another
  checkout (``git archive HEAD farm models kernels | tar -x -C DIR``: the code before a change).
  The plain script runs with ``--plain-threads`` torch threads (1 by default, see its help).
* ``warm``: ``render_task`` on a warm ``WorkerPool`` (2 workers) against the plain loop in a
  process that has built its pipeline already. Target: <= 0.6x.
* ``serve``: ``farm serve`` with ``pools.<model>.min_workers: 2``, freshly started: seconds to
  ``/readyz`` 200, then the time from Submit to the first chunk done (Watch) of the first task
  against that of the next (warm) one. Target: within 2x. ``--serve-baseline`` adds the same
  without a minimum pool (the first task loads the models).
* ``split``: where a text-only chunk's time goes in the VACE backend (text encode per task, shown
  per chunk; conditioning encode; denoise; decode), with the blank-conditioning cache off (the old
  code path) and on.

The plain side never imports the farm: ``peer.py plain`` builds the tiny pipeline with
``models.tiny`` (standing in for ``WanVACEPipeline.from_pretrained``) and does the rest with
diffusers, torch, numpy and PyAV.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "skywork:skyreels@v4"
PROMPT = (
    "A red fox trots across a snowy meadow at dawn, breath steaming in the cold air, soft golden "
    "light, the crunch of snow underfoot and distant birdsong."
)
#: The tiny default profile, as a user reads it off its model card (models/profiles.py).
WINDOW, OVERLAP, STEPS, GUIDANCE = 17, 5, 4, 5.0
NATIVE_W, NATIVE_H = 112, 64
OUT_W, OUT_H, FPS = 848, 480, 32


def benchmark_task(duration: float = 5.0) -> dict:
    """The examples' text-to-video task at 480p, ``duration`` seconds, no audio."""
    return {
        "taskType": "videoInference",
        "taskUUID": str(uuid.uuid4()),
        "model": MODEL,
        "positivePrompt": PROMPT,
        "resolution": "480p",
        "duration": duration,
        "outputFormat": "MP4",
        "numberResults": 1,
        "settings": {"audio": False},
    }


# ==================================================================== the plain script


def plain_windows(num_frames: int) -> list[int]:
    """Window starts: every ``WINDOW - OVERLAP`` frames on the 4k+1 grid, the last one at the end."""
    render = -(-(num_frames - 1) // 4) * 4 + 1
    step = WINDOW - OVERLAP
    count = -(-(render - WINDOW) // step) + 1
    return [i * step for i in range(count - 1)] + [render - WINDOW]


def plain_build():
    """What a user's script does first: load the pipeline (here: build the tiny one)."""
    from models.tiny import tiny_vace_pipeline

    pipe = tiny_vace_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def plain_render(pipe, seconds: float, out_path: Path, crf: str, seed: int = 0) -> dict:
    """Render ``seconds`` of video window by window, crossfade, resize, encode: a user's loop."""
    import av
    import numpy as np
    import torch
    from diffusers import WanPipeline

    started = time.perf_counter()
    num_frames = round(seconds * FPS)
    starts = plain_windows(num_frames)
    render_frames = starts[-1] + WINDOW
    # diffusers 0.42's VACE prompt cleaning needs ftfy (not installed here); WanPipeline's is the
    # same T5 encoding and guards it. With ftfy a user would pass prompt= to every call instead.
    with torch.inference_mode():
        embeds, negative = (
            WanPipeline._get_t5_prompt_embeds(pipe, prompt=text, max_sequence_length=64, device="cpu")
            for text in (PROMPT, "")
        )
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((1, 16, (render_frames - 1) // 4 + 1, NATIVE_H // 8, NATIVE_W // 8), generator=generator)
    video = np.zeros((render_frames, NATIVE_H, NATIVE_W, 3), dtype=np.float32)
    weight = np.zeros(render_frames, dtype=np.float32)
    ramp = np.ones(WINDOW, dtype=np.float32)
    ramp[:OVERLAP] = np.linspace(0, 1, OVERLAP + 2, dtype=np.float32)[1:-1]
    model_s = 0.0
    for i, start in enumerate(starts):
        t = time.perf_counter()
        frames = pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=negative,
            height=NATIVE_H,
            width=NATIVE_W,
            num_frames=WINDOW,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            latents=noise[:, :, start // 4 : start // 4 + (WINDOW - 1) // 4 + 1].clone(),
            output_type="np",
        ).frames[0]
        model_s += time.perf_counter() - t
        w = ramp if i else np.ones(WINDOW, dtype=np.float32)
        video[start : start + WINDOW] += frames * w[:, None, None, None]
        weight[start : start + WINDOW] += w
    video = video[:num_frames] / weight[:num_frames, None, None, None]
    encode_started = time.perf_counter()
    with av.open(str(out_path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = OUT_W, OUT_H, "yuv420p"
        stream.options = {"crf": crf, "preset": "fast"}
        for first in range(0, num_frames, 16):
            batch = torch.from_numpy(video[first : first + 16]).permute(0, 3, 1, 2)
            big = torch.nn.functional.interpolate(batch, size=(OUT_H, OUT_W), mode="bicubic", align_corners=False)
            pixels = (big.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            for frame in pixels:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return {
        "wall_s": time.perf_counter() - started,
        "model_s": model_s,
        "encode_s": time.perf_counter() - encode_started,
        "windows": len(starts),
    }


def plain_main(args: argparse.Namespace) -> None:
    """``peer.py plain``: render once (cold), or serve renders on stdin lines (warm)."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    pipe = plain_build()
    built = time.perf_counter() - started
    out = Path(args.out)
    if not args.repeat:
        timings = plain_render(pipe, args.seconds, out / "plain.mp4", args.crf)
        print(json.dumps({"build_s": built, **timings}), flush=True)
        return
    plain_render(pipe, args.seconds, out / "warmup.mp4", args.crf)  # first call: lazy inits
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        print(json.dumps(plain_render(pipe, args.seconds, out / "plain.mp4", args.crf)), flush=True)


# ==================================================================== measuring process trees


class TreeSampler:
    """Peak summed RSS and PSS of a process and all its descendants, and their CPU seconds."""

    def __init__(self, pid: int, interval: float = 0.05, pss_every: int = 5):
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.peak_rss = 0
        self.peak_pss = 0
        self.cpu: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self._interval, self._pss_every = interval, pss_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        psutil = self._psutil
        tick = 0
        while not self._stop.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            rss = pss = 0
            for process in processes:
                try:
                    rss += process.memory_info().rss
                    if tick % self._pss_every == 0:
                        pss += process.memory_full_info().pss
                    times = process.cpu_times()
                    self.cpu[process.pid] = times.user + times.system
                    self.names.setdefault(process.pid, " ".join(process.cmdline())[:60])
                except psutil.Error:
                    continue
            self.peak_rss = max(self.peak_rss, rss)
            if tick % self._pss_every == 0:
                self.peak_pss = max(self.peak_pss, pss)
            tick += 1
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu.values())


def run_measured(command: list[str], watch_file: Path | None = None, cwd: Path = ROOT, env: dict | None = None) -> dict:
    """Run ``command`` to completion: wall, peak tree RSS/PSS, CPU, and when ``watch_file`` appeared."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    sampler = TreeSampler(process.pid)
    final = None
    while process.poll() is None:
        if watch_file is not None and final is None and watch_file.exists():
            final = time.perf_counter() - started
        time.sleep(0.01)
    wall = time.perf_counter() - started
    sampler.stop()
    stdout, stderr = process.communicate()
    if process.returncode:
        raise SystemExit(f"{command[:4]} failed:\n{stderr[-3000:]}")
    return {
        "wall_s": wall,
        "final_s": final,
        "rss_mib": sampler.peak_rss / 2**20,
        "pss_mib": sampler.peak_pss / 2**20,
        "cpu_s": sampler.cpu_s,
        "stdout": stdout,
        "stderr": stderr,
    }


def crf_of(task: dict) -> str:
    from farm.io.encode import quality_settings

    settings = quality_settings("MP4", task.get("outputQuality", 95))
    return dict(settings.video_options)["crf"]


# ==================================================================== the comparisons


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cold(rounds: int, plain_threads: int, baseline: Path | None) -> dict:
    """``farm render`` (fresh process) against the plain script (fresh process), interleaved; with
    ``baseline`` (a checkout of the code before) its ``farm render`` too."""
    runs: dict[str, list[dict]] = {"farm": [], "plain": [], "ray": []}
    if baseline is not None:
        runs["before"] = []
    with tempfile.TemporaryDirectory() as tmp:
        task = benchmark_task()
        path = Path(tmp) / "task.json"
        path.write_text(json.dumps(task))
        crf = crf_of(task)
        render = [sys.executable, "-m", "farm.cli", "render", str(path), "--no-progress", "--seed", "0", "--out"]
        plain = [sys.executable, str(Path(__file__)), "plain", "--crf", crf, "--threads", str(plain_threads), "--out"]
        sides = list(runs)
        for i in range(rounds):
            for side in sides[i % len(sides) :] + sides[: i % len(sides)]:
                out = Path(tmp) / f"{side}-{i}"
                out.mkdir()
                if side == "plain":
                    # PyAV writes its file in place: when it appears says nothing about the end.
                    run = run_measured([*plain, str(out)])
                    run.update(json.loads(run["stdout"].strip().splitlines()[-1]))
                else:
                    cwd = baseline if side == "before" and baseline is not None else ROOT
                    env = {**os.environ, "PYTHONPATH": str(cwd)}
                    command = [*render, str(out)] + (["--executor", "ray"] if side == "ray" else [])
                    run = run_measured(command, out / f"{task['taskUUID']}-0.mp4", cwd=cwd, env=env)
                runs[side].append(run)
                print(
                    f"  cold {side:6s} round {i}: wall {run['wall_s']:5.1f} s, RSS {run['rss_mib']:5.0f} MiB, "
                    f"PSS {run['pss_mib']:5.0f} MiB, CPU {run['cpu_s']:5.1f} s",
                    flush=True,
                )
    summary: dict = {"sides": {}}
    for side, side_runs in runs.items():
        figures = {key: median([r[key] for r in side_runs]) for key in ("wall_s", "rss_mib", "pss_mib", "cpu_s")}
        finals = [r["wall_s"] - r["final_s"] for r in side_runs if r["final_s"]]
        if finals:
            figures["exit_after_final_s"] = median(finals)
        ray_up = [float(m.group(1)) for r in side_runs if (m := re.search(r"Ray up in ([\d.]+)s", r["stderr"]))]
        if ray_up:
            figures["ray_up_s"] = median(ray_up)
        summary["sides"][side] = figures
    plain_figures = summary["sides"]["plain"]
    for figures in summary["sides"].values():
        figures["ratio"] = {key: figures[key] / plain_figures[key] for key in ("wall_s", "rss_mib", "pss_mib", "cpu_s")}
    summary["plain_threads"] = plain_threads
    return summary


def warm(rounds: int, plain_threads: int, workers: int = 2) -> dict:
    """A warm pool's ``render_task`` against a warm plain process, interleaved."""
    import torch

    from farm.domain.validation import parse_task
    from farm.scheduler.local import render_task
    from farm.workers.cluster import connect_ray, stop_ray
    from farm.workers.pool import WorkerConfig, WorkerPool
    from models.profiles import get_profile

    torch.set_num_threads(1)  # as farm render's driver (--driver-threads 1)
    farm, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        task = benchmark_task()
        plain_process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), "plain", "--repeat", "--out", tmp, "--crf", crf_of(task)]
            + ["--threads", str(plain_threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        connect_ray(min_cpus=workers + 1)
        pool = WorkerPool(get_profile(MODEL), WorkerConfig(video_workers=workers, audio_worker=False))
        try:
            pool.wait_ready()
            render_task(parse_task(benchmark_task()), pool, tmp, base_seed=0)  # warms the workers
            json.loads(plain_process.stdout.readline())  # the plain side is warm too
            for i in range(rounds):
                for side in ("farm", "plain") if i % 2 == 0 else ("plain", "farm"):
                    started = time.perf_counter()
                    if side == "farm":
                        render_task(parse_task(benchmark_task()), pool, tmp, base_seed=0)
                        farm.append(time.perf_counter() - started)
                    else:
                        plain_process.stdin.write("go\n")
                        plain_process.stdin.flush()
                        json.loads(plain_process.stdout.readline())
                        plain.append(time.perf_counter() - started)
                    print(f"  warm {side:5s} round {i}: {(farm if side == 'farm' else plain)[-1]:5.2f} s", flush=True)
        finally:
            plain_process.stdin.close()
            plain_process.wait(60)
            pool.shutdown()
            stop_ray()
    f, p = median(farm), median(plain)
    return {"wall_s": {"farm": f, "plain": p, "ratio": f / p}}


def _http(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def _first_chunk_seconds(stub, task: dict) -> tuple[float, float]:
    """Submit ``task``; seconds to its first chunk done and to its end (from Watch)."""
    from google.protobuf import json_format

    from farm.v1 import farm_pb2

    started = time.perf_counter()
    stub.Submit(farm_pb2.SubmitRequest(tasks=[json_format.ParseDict(task, farm_pb2.VideoInferenceTask())]))
    first = None
    for event in stub.Watch(farm_pb2.WatchRequest(task_uuid=task["taskUUID"]), timeout=600):
        if first is None and event.chunks_done >= 1:
            first = time.perf_counter() - started
        if event.kind in ("done", "error", "cancelled"):
            break
    return first if first is not None else float("nan"), time.perf_counter() - started


def serve_once(min_workers: int, workers: int = 2) -> dict:
    """A fresh ``farm serve``: seconds to ready, first task's and second task's time to first chunk."""
    import grpc

    from farm.v1 import farm_pb2_grpc
    from tests.serving import serve_command

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "farm.yaml"
        config.write_text(f"pools:\n  '{MODEL}':\n    min_workers: {min_workers}\n    max_workers: {workers}\n")
        started = time.perf_counter()
        process = subprocess.Popen(
            serve_command(Path(tmp) / "data", "--config", str(config), "--workers", str(workers)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        try:
            line = ""
            while not re.search(r"gRPC on [\d.]+:(\d+), HTTP on [\d.]+:(\d+)", line):
                line = process.stdout.readline()
                if not line:
                    raise SystemExit("farm serve did not start")
            grpc_port, http_port = re.search(r"gRPC on [\d.]+:(\d+), HTTP on [\d.]+:(\d+)", line).groups()
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
            up = time.perf_counter() - started
            while _http(f"http://127.0.0.1:{http_port}/readyz") != 200:
                time.sleep(0.1)
            ready = time.perf_counter() - started
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub = farm_pb2_grpc.VideoInferenceStub(channel)
                first, first_total = _first_chunk_seconds(stub, benchmark_task())
                second, second_total = _first_chunk_seconds(stub, benchmark_task())
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(120)
    return {
        "up_s": up,
        "ready_s": ready,
        "first_chunk_s": first,
        "warm_first_chunk_s": second,
        "first_task_s": first_total,
        "warm_task_s": second_total,
    }


def serve(rounds: int, baseline: bool) -> dict:
    runs = []
    for i in range(rounds):
        run = serve_once(min_workers=2)
        runs.append(run)
        print(
            f"  serve round {i}: ready in {run['ready_s']:.1f} s; first chunk: first task {run['first_chunk_s']:.2f} s, "
            f"warm task {run['warm_first_chunk_s']:.2f} s",
            flush=True,
        )
    summary = {key: median([r[key] for r in runs]) for key in runs[0]}
    summary["ratio"] = summary["first_chunk_s"] / summary["warm_first_chunk_s"]
    if baseline:
        run = serve_once(min_workers=0)
        print(f"  serve without a minimum pool: first chunk {run['first_chunk_s']:.2f} s", flush=True)
        summary["no_minimum_first_chunk_s"] = run["first_chunk_s"]
    return summary


def split(rounds: int) -> dict:
    """Per text-only chunk: text encode (per task / chunks), conditioning encode, denoise, decode."""
    import torch

    from farm.domain.planner import plan_clip
    from farm.workers.noise import latent_noise
    from models.base import ChunkRequest
    from models.tiny import tiny_vace_pipeline
    from models.wan import WanVideoBackend

    torch.set_num_threads(1)  # as a worker (WorkerConfig.torch_threads)
    plan = plan_clip(round(5 * FPS), window_frames=WINDOW, overlap_frames=OVERLAP)
    sides = {"before": WanVideoBackend(tiny_vace_pipeline(), conditioning_cache_size=0)}
    sides["after"] = WanVideoBackend(tiny_vace_pipeline())
    clocks: dict[str, dict[str, float]] = {}
    for name, backend in sides.items():
        clock = clocks[name] = {"text": 0.0, "conditioning": 0.0, "denoise": 0.0, "decode": 0.0, "chunk": 0.0}
        pipe = backend.pipeline

        def timed(part: str, fn, clock=clock):
            def call(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    clock[part] += time.perf_counter() - started

            return call

        pipe.vae.encode = timed("conditioning", pipe.vae.encode)
        pipe.vae.decode = timed("decode", pipe.vae.decode)
        pipe.transformer.forward = timed("denoise", pipe.transformer.forward)
    chunks = 0
    for i in range(rounds):
        for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
            backend, clock = sides[name], clocks[name]
            started = time.perf_counter()
            embeds = backend.encode_prompt(PROMPT)  # once per task, as the scheduler does
            clock["text"] += time.perf_counter() - started
            shape = backend.latent_frame_shape(NATIVE_H, NATIVE_W)
            for chunk in plan.chunks:
                request = ChunkRequest(
                    chunk_index=chunk.index,
                    prompt=embeds,
                    latents=latent_noise(0, chunk.latent_start, chunk.latent_frames, shape),
                    num_frames=chunk.num_frames,
                    height=NATIVE_H,
                    width=NATIVE_W,
                    num_inference_steps=STEPS,
                    guidance_scale=GUIDANCE,
                    seed=0,
                )
                started = time.perf_counter()
                with torch.inference_mode():
                    backend.render_chunk(request)
                clock["chunk"] += time.perf_counter() - started
        chunks += len(plan.chunks)
    result = {}
    for name, clock in clocks.items():
        per_chunk = {part: 1000 * seconds / chunks for part, seconds in clock.items()}
        per_chunk["other"] = per_chunk["chunk"] - sum(per_chunk[p] for p in ("conditioning", "denoise", "decode"))
        result[name] = {"ms_per_chunk": per_chunk, "cache": sides[name].conditioning_cache_info()._asdict()}
    return result


# ==================================================================== report


def report(results: dict, rounds: int) -> None:
    from benchmarks._common import machine

    print(f"\nmachine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end; medians of {rounds} rounds")
    if "cold" in results:
        c = results["cold"]
        print(
            "cold: farm render (fresh process) vs the plain diffusers script "
            f"(torch threads: {c['plain_threads'] or 'default'}), 5 s 480p, no audio; ratios to plain"
        )
        for side, f in c["sides"].items():
            r = f["ratio"]
            print(
                f"  {side:6s} wall {f['wall_s']:5.1f} s ({r['wall_s']:.2f}x)  RSS {f['rss_mib']:5.0f} MiB "
                f"({r['rss_mib']:.2f}x)  PSS {f['pss_mib']:5.0f} MiB ({r['pss_mib']:.2f}x)  CPU {f['cpu_s']:5.1f} s "
                f"({r['cpu_s']:.2f}x)"
                + (
                    f"  exits {f['exit_after_final_s']:.2f} s after its file is final"
                    if "exit_after_final_s" in f
                    else ""
                )
                + (f", Ray up in {f['ray_up_s']:.1f} s" if "ray_up_s" in f else "")
            )
    if "warm" in results:
        v = results["warm"]["wall_s"]
        print(
            f"warm: pool of 2 vs warm plain loop: farm {v['farm']:.2f} s, plain {v['plain']:.2f} s, {v['ratio']:.2f}x"
        )
    if "serve" in results:
        s = results["serve"]
        print(
            f"serve (min_workers 2): ready {s['ready_s']:.1f} s after start (gateway up at {s['up_s']:.1f} s); "
            f"first chunk of the first task {s['first_chunk_s']:.2f} s vs a warm task's "
            f"{s['warm_first_chunk_s']:.2f} s: {s['ratio']:.2f}x"
        )
        if "no_minimum_first_chunk_s" in s:
            print(f"  without a minimum pool the first task's first chunk took {s['no_minimum_first_chunk_s']:.2f} s")
    if "split" in results:
        print("split of a text-only chunk (ms per chunk; text encode is once per task, shown per chunk):")
        for name, side in results["split"].items():
            ms = side["ms_per_chunk"]
            print(
                f"  {name:6s} chunk {ms['chunk']:6.1f}: text {ms['text']:5.1f}, conditioning {ms['conditioning']:6.1f} "
                f"({100 * ms['conditioning'] / ms['chunk']:4.1f}%), denoise {ms['denoise']:6.1f}, decode "
                f"{ms['decode']:6.1f}, other {ms['other']:5.1f}; cache {side['cache']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    commands = parser.add_subparsers(dest="command")
    plain = commands.add_parser("plain", help="the plain diffusers script (run by the benchmark)")
    plain.add_argument("--out", required=True)
    plain.add_argument("--crf", default="16.2")
    plain.add_argument("--seconds", type=float, default=5.0)
    plain.add_argument("--repeat", action="store_true", help="render once per stdin line (the warm side)")
    plain.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", default="cold,warm,serve,split")
    parser.add_argument("--serve-rounds", type=int, default=1)
    parser.add_argument("--serve-baseline", action="store_true")
    parser.add_argument(
        "--plain-threads",
        type=int,
        default=1,
        help="torch threads of the plain script (0: torch's default; on a shared 2-core machine its two "
        "OpenMP threads spin against other processes: 2-4 s a window instead of 0.5 s)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a checkout of the code before (git archive REV farm models kernels | tar -x -C DIR): its farm "
        "render joins the cold runs",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.command == "plain":
        plain_main(args)
        return
    parts = args.parts.split(",")
    results: dict = {}
    for part in ("split", "cold", "warm", "serve"):
        if part not in parts:
            continue
        print(f"{part} ...", flush=True)
        if part == "cold":
            results[part] = cold(args.rounds, args.plain_threads, args.baseline)
        elif part == "warm":
            results[part] = warm(args.rounds, args.plain_threads)
        elif part == "serve":
            results[part] = serve(args.serve_rounds, args.serve_baseline)
        else:
            results[part] = split(args.rounds)
    report(results, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
