"""Chunk scaling: one 15 s task on 1 video worker vs 2 (one torch thread each), side by side.

    .venv/bin/python benchmarks/scaling.py [--seconds 15] [--workers 2]

The output is kept tiny (224x128, no audio) so the measurement is the chunk phase, not the
encoder competing for the same two cores. Ideal speed-up for K equal chunks on W workers is
K / ceil(K / W); parallel efficiency is the measured speed-up over that ideal. The overlap's own
cost (frames rendered twice) is printed too: it is the same for both contenders.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, task  # noqa: E402
from farm.cluster import connect_ray  # noqa: E402
from farm.pool import WorkerConfig, WorkerPool  # noqa: E402
from farm.render import render_task  # noqa: E402
from farm.validation import parse_task  # noqa: E402
from models.profiles import get_profile  # noqa: E402


def timed_render(workers: int, spec: dict, out: Path, repeats: int) -> tuple[float, int]:
    profile = get_profile(spec["model"])
    pool = WorkerPool(profile, WorkerConfig(video_workers=workers, audio_worker=False, torch_threads=1))
    pool.wait_ready()
    try:
        render_task(parse_task(spec), pool, out, base_seed=0)  # warm-up: first calls allocate
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            [result] = render_task(parse_task(spec), pool, out, base_seed=0)
            best = min(best, time.perf_counter() - started)
        return best, result.chunks
    finally:
        pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    spec = task(duration=args.seconds, resolution=None, width=224, height=128, settings={"audio": False})
    del spec["resolution"]
    connect_ray(min_cpus=args.workers + 1)
    profile = get_profile(spec["model"])
    with tempfile.TemporaryDirectory() as tmp:
        one, chunks = timed_render(1, spec, Path(tmp), args.repeats)
        many, _ = timed_render(args.workers, spec, Path(tmp), args.repeats)
    frames = round(args.seconds * 32)
    ideal = chunks / math.ceil(chunks / args.workers)
    speedup = one / many
    print(f"machine: {machine()}")
    print(f"task: {args.seconds:g} s = {frames} frames, {chunks} chunks of {profile.window_frames} "
          f"(overlap {profile.overlap_frames}: {chunks * profile.window_frames / frames:.2f}x frames rendered)")
    print(f"{'contender':<22}{'wall s':>10}{'chunks/s':>10}")
    print(f"{'1 worker':<22}{one:>10.2f}{chunks / one:>10.2f}")
    print(f"{f'{args.workers} workers':<22}{many:>10.2f}{chunks / many:>10.2f}")
    print(f"speed-up {speedup:.2f}x, ideal {ideal:.2f}x, parallel efficiency {speedup / ideal:.2f} (target >= 0.85)")


if __name__ == "__main__":
    main()
