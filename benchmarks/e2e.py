"""End to end: ``farm render`` of a 5 s 720p task on this machine, with where the time went.

    .venv/bin/python benchmarks/e2e.py [--task examples/text-to-video-720p.json] [--workers 2]

Two contenders, one run: the cold command-line render (a fresh process: Ray start, worker start,
model load, render, encode) and the same task on an already-warm pool (what the gateway pays per
task). For the warm render the wall time is split into model time, stitch/encode time and
overhead, where overhead is the wall time during which neither a model nor the encoder was
working (the union of their activity intervals, subtracted from the wall time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, union_seconds  # noqa: E402 - after the sys.path line that makes the repo importable


def cold_cli(task_path: Path, workers: int) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "farm.cli",
                "render",
                str(task_path),
                "--out",
                out,
                "--workers",
                str(workers),
                "--no-progress",
                "--seed",
                "0",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stderr)
    return wall, done.stdout.strip() + "\n" + done.stderr.strip().splitlines()[-1]


def warm(task_path: Path, workers: int) -> dict:
    import torch

    from farm.domain.validation import parse_task
    from farm.scheduler.local import render_task
    from farm.workers.cluster import connect_ray
    from farm.workers.pool import WorkerConfig, WorkerPool
    from models.profiles import get_profile

    torch.set_num_threads(1)  # as `farm render` does (--driver-threads)
    spec = json.loads(task_path.read_text())
    t0 = time.perf_counter()
    connect_ray(min_cpus=workers + 1)
    t1 = time.perf_counter()
    profile = get_profile(spec["model"])
    pool = WorkerPool(profile, WorkerConfig(video_workers=workers))
    pool.wait_ready()
    t2 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as out:
            spec["taskUUID"] = str(uuid.uuid4())
            render_task(parse_task(spec), pool, out, base_seed=0)  # first task warms the workers
            spec["taskUUID"] = str(uuid.uuid4())
            started = time.time()
            [result] = render_task(parse_task(spec), pool, out, base_seed=0)
            ended = time.time()
    finally:
        pool.shutdown()
    wall = ended - started
    busy = union_seconds(result.timings.activity)
    return {
        "ray_start_s": t1 - t0,
        "workers_ready_s": t2 - t1,
        "wall_s": wall,
        "model_s": result.timings.model_s,
        "model_per_worker_s": result.timings.model_s / workers,
        "audio_s": result.timings.audio_s,
        "encode_s": result.timings.encode_s,
        "overhead_s": wall - busy,
        "chunks": result.chunks,
        "frames": result.num_frames,
        "size": f"{result.width}x{result.height}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", type=Path, default=ROOT / "examples" / "text-to-video-720p.json")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    cold_wall, cold_out = cold_cli(args.task, args.workers)
    w = warm(args.task, args.workers)
    print(f"machine: {machine()}")
    print(f"task: {args.task.name}: {w['frames']} frames {w['size']}, {w['chunks']} chunks, {args.workers} workers")
    print(f"cold CLI render (new process, Ray start, model load): {cold_wall:6.2f} s  (target < 60 s)")
    print(f"  {cold_out.splitlines()[0]}")
    print(f"  of which Ray start ~{w['ray_start_s']:.1f} s, workers ready ~{w['workers_ready_s']:.1f} s")
    print(f"warm render on a running pool:                         {w['wall_s']:6.2f} s")
    print(
        f"  model time     {w['model_s']:6.2f} s over {args.workers} workers "
        f"({w['model_per_worker_s']:.2f} s each), audio {w['audio_s']:.2f} s"
    )
    print(f"  stitch+encode  {w['encode_s']:6.2f} s (concurrent with the models)")
    print(
        f"  overhead       {w['overhead_s']:6.2f} s = {100 * w['overhead_s'] / w['wall_s']:.1f}% of the warm wall "
        f"time (neither a model nor the encoder working; target < 10%)"
    )
    print(
        f"  cold start cost: {cold_wall - w['wall_s']:.2f} s "
        f"({100 * (cold_wall - w['wall_s']) / cold_wall:.0f}% of the cold CLI wall time)"
    )


if __name__ == "__main__":
    main()
