"""Chunk scaling: one 15 s task on 1 video worker vs 2 (one torch thread each), side by side.

    .venv/bin/python benchmarks/scaling.py [--seconds 15] [--workers 2] [--repeats 2]

Two measurements per contender:
- **chunk phase**: the real scheduler, workers and stitcher, with the encoder replaced by a sink
  that only counts frames. On this 2-core machine the encoder would otherwise compete with the
  two workers for the same cores; on a GPU node the workers run on GPUs and it does not.
- **full render**: the same with the real encoder (224x128 MP4, no audio), for reference.

Ideal speed-up for K equal chunks on W workers is K / ceil(K / W); parallel efficiency is the
measured speed-up over that ideal. The overlap's own cost (frames rendered twice) is printed too:
it is the same for both contenders.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import farm.io.encode
from benchmarks._common import machine, task
from farm.domain.validation import parse_task
from farm.scheduler.local import render_task
from farm.workers.cluster import connect_ray
from farm.workers.pool import WorkerConfig, WorkerPool
from models.profiles import get_profile


class CountingSink:
    """Takes the place of ResultEncoder: counts frames, writes nothing."""

    def __init__(self, path, *, expected_frames, **_):
        self.path, self.expected, self.frames = path, expected_frames, 0

    def write_frames(self, frames):
        self.frames += len(frames)

    def set_audio(self, samples, sample_rate=None):
        pass

    def close(self):
        assert self.frames == self.expected, (self.frames, self.expected)
        return self.path

    def abort(self):
        pass


def timed(pool: WorkerPool, spec: dict, out: Path, repeats: int, encode: bool) -> tuple[float, float, int]:
    """Best wall time over ``repeats`` renders, with the model seconds and chunk count of that run."""
    real = farm.io.encode.ResultEncoder
    farm.io.encode.ResultEncoder = real if encode else CountingSink
    try:
        render_task(parse_task(spec), pool, out, base_seed=0)  # warm-up: first calls allocate
        best, model_s, chunks = math.inf, 0.0, 0
        for _ in range(repeats):
            started = time.perf_counter()
            [result] = render_task(parse_task(spec), pool, out, base_seed=0)
            wall = time.perf_counter() - started
            if wall < best:
                best, model_s, chunks = wall, result.timings.model_s, result.chunks
        return best, model_s, chunks
    finally:
        farm.io.encode.ResultEncoder = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    spec = task(duration=args.seconds, width=224, height=128, settings={"audio": False})
    del spec["resolution"]
    torch.set_num_threads(1)  # the driver's stitch/resize: leave the cores to the workers
    connect_ray(min_cpus=args.workers + 1)
    profile = get_profile(spec["model"])
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, args.workers):
            pool = WorkerPool(profile, WorkerConfig(video_workers=workers, audio_worker=False, torch_threads=1))
            pool.wait_ready()
            try:
                for encode in (False, True):
                    rows[(workers, encode)] = timed(pool, spec, Path(tmp), args.repeats, encode)
            finally:
                pool.shutdown()

    frames = round(args.seconds * 32)
    chunks = rows[(1, False)][2]
    ideal = chunks / math.ceil(chunks / args.workers)
    print(f"machine: {machine()}")
    print(
        f"task: {args.seconds:g} s = {frames} frames, {chunks} chunks of {profile.window_frames} "
        f"(overlap {profile.overlap_frames}: {chunks * profile.window_frames / frames:.2f}x frames rendered)"
    )
    print(f"{'contender':<34}{'wall s':>8}{'chunks/s':>10}{'s/chunk':>9}{'busy':>7}")
    for encode in (False, True):
        phase = "full render" if encode else "chunk phase"
        for workers in (1, args.workers):
            wall, model_s, _ = rows[(workers, encode)]
            label = f"{phase}, {workers} worker{'s' if workers > 1 else ''}"
            print(
                f"{label:<34}{wall:>8.2f}{chunks / wall:>10.2f}{model_s / chunks:>9.3f}"
                f"{model_s / (workers * wall):>7.0%}"
            )
        speedup = rows[(1, encode)][0] / rows[(args.workers, encode)][0]
        print(
            f"  {phase}: speed-up {speedup:.2f}x, ideal {ideal:.2f}x, "
            f"parallel efficiency {speedup / ideal:.2f} (target >= 0.85)"
        )
    print(
        "s/chunk: model time of one chunk inside a worker; busy: share of the wall time the workers spent in the model."
    )


if __name__ == "__main__":
    main()
