"""Peak memory of stitch + resize + encode for 15 s of 1080p, fed chunk by chunk.

    .venv/bin/python benchmarks/stitch_memory.py [--seconds 15] [--format MP4]

Chunks of the tiny profile's native size (112x64) arrive in a shuffled-but-roughly-in-order
sequence (each chunk at most 3 places early), go through the real Stitcher, the resize kernel and
the streaming ResultEncoder with audio, exactly as in a render. It prints the process's peak RSS
growth over the baseline taken after imports, next to what the whole clip would occupy if it were
held in memory as uint8 RGB (the naive contender). Target: <= 1 GiB.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks._common import machine, peak_rss_mib
from farm.domain.planner import plan_clip
from farm.io.encode import ResultEncoder
from farm.render.stitch import Stitcher
from kernels.resize import resize_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--format", default="MP4")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    args = parser.parse_args()

    frames = round(args.seconds * 32)
    plan = plan_clip(frames, window_frames=17, overlap_frames=5)
    rng = np.random.default_rng(0)
    # a smooth moving gradient so the codec does real work, plus noise like the tiny models make
    base = np.linspace(0, 255, 112, dtype=np.float32)[None, None, :, None]

    def chunk_frames(chunk):
        t = np.arange(chunk.start, chunk.end, dtype=np.float32)[:, None, None, None]
        img = (base + 3 * t) % 256 + rng.normal(0, 8, (chunk.num_frames, 64, 112, 3))
        return np.clip(img, 0, 255).astype(np.uint8)

    order = list(range(len(plan.chunks)))
    keyed = sorted(order, key=lambda i: i + random.Random(i).uniform(0, 3))
    audio = (0.1 * np.sin(np.linspace(0, 2000, frames * 1500))).astype(np.float32)[None].repeat(2, 0)

    torch.set_num_threads(1)  # as `farm render` does (--driver-threads)
    baseline = peak_rss_mib()
    started = time.perf_counter()
    held = 0
    with tempfile.TemporaryDirectory() as tmp:
        stitcher = Stitcher(plan)
        with ResultEncoder(
            Path(tmp) / f"out.{args.format.lower()}",
            output_format=args.format,
            quality=95,
            width=args.width,
            height=args.height,
            audio=True,
            expected_frames=frames,
        ) as encoder:
            encoder.set_audio(audio, 48000)
            for index in keyed:
                final = stitcher.add(index, chunk_frames(plan.chunks[index]))
                held = max(held, stitcher.chunks_held)
                if final is not None:
                    encoder.write_frames(resize_frames(final, args.width, args.height))
        elapsed = time.perf_counter() - started
    growth = peak_rss_mib() - baseline
    naive = frames * args.width * args.height * 3 / 2**20
    print(f"machine: {machine()}")
    print(
        f"{frames} frames {args.width}x{args.height} {args.format}, {len(plan.chunks)} chunks, "
        f"at most {held} chunks held by the stitcher, {elapsed:.1f} s"
    )
    print(f"{'contender':<36}{'peak MiB':>10}")
    print(f"{'streaming stitch+resize+encode':<36}{growth:>10.0f}")
    print(f"{'whole clip held as uint8 RGB':<36}{naive:>10.0f}")
    print(f"ratio {naive / growth:.1f}x less memory; target <= 1024 MiB: {'met' if growth <= 1024 else 'MISSED'}")


if __name__ == "__main__":
    main()
