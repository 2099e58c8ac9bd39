"""Benchmark: frames on the wire as RGB24 (before) or yuv420p planes (after), side by side.

    .venv/bin/python benchmarks/yuv_wire.py                                   # 5 s, 832x480 -> 1280x720, MP4
    .venv/bin/python benchmarks/yuv_wire.py --native 1280x720 --output 1920x1080
    .venv/bin/python benchmarks/yuv_wire.py --seconds 2 --repeat 1           # quick look

One result is cut into chunks by the farm's planner with the Wan profiles' window (81 frames,
overlap 17). Every chunk is a synthetic picture made once, up front, at the native size (moving
gradients, a moving coloured disc for sharp chroma edges, mild noise so the codec has real
work). Then, for each wire format, in the same process (the ``wire_format`` switch, which a
deployment sets with ``FARM_WIRE_FORMAT=rgb|yuv420p``):

* **worker**: ``farm.workers.actors.frames_to_wire``, what a video worker does to a chunk before
  it leaves (RGB: nothing; yuv420p on a CPU worker: swscale; on a GPU worker: the Triton kernel,
  not timed here), and the chunk's **bytes through the object store**: pickle protocol 5 with the
  numpy buffers out of band, which is how Ray stores them;
* **finisher**: the real ``FinisherCore`` (one torch thread, as a ``FinisherActor``): stitch,
  resize to the output size, colour conversion (RGB path: swscale inside the encoder; yuv420p
  path: none) and encode into a file (no audio). CPU time is the figure of merit (user + sys of
  the whole process, encoder threads included: less disturbed than wall time on a shared
  machine); wall time is printed too. It is split into the part the wire format changes (stitch
  + resize + conversion, run on its own without encoding) and the rest (encode).

Each path runs ``--repeat`` times, alternating, best kept. Targets (issue 12): bytes per chunk
<= 0.52x; finishing CPU time lower than today's.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks._common import machine
from farm.domain.constants import OUTPUT_FPS
from farm.domain.planner import ClipPlan, plan_clip
from farm.io.encode import rgb_to_yuv420p_planes
from farm.render.executor import FinishSpec
from farm.render.finisher import FinisherCore
from farm.render.stitch import Stitcher, Yuv420Planes
from farm.workers.actors import frames_to_wire
from kernels.resize import resize_frames, resize_yuv420p

WIRE_FORMATS = ("rgb", "yuv420p")


def size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def wire_bytes(obj) -> int:
    """Bytes ``obj`` takes in Ray's object store (pickle 5, numpy buffers out of band)."""
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return len(header) + sum(b.raw().nbytes for b in buffers)


def synthetic_chunks(plan: ClipPlan, width: int, height: int) -> list[np.ndarray]:
    """uint8 RGB ``[F, H, W, 3]`` per chunk: gradients and a disc moving with the frame index."""
    rng = np.random.default_rng(0)
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    chunks = []
    for chunk in plan.chunks:
        out = np.empty((chunk.num_frames, height, width, 3), np.uint8)
        for i, t in enumerate(range(chunk.start, chunk.end)):
            r = (x * 255 / width + 2 * t) % 256 + 0 * y
            g = (y * 255 / height + 3 * t) % 256 + 0 * x
            b = ((x + y) * 128 / (width + height) + 64 + t) % 256
            cx, cy = (0.2 + 0.6 * (t % 97) / 96) * width, 0.5 * height
            disc = (x - cx) ** 2 + (y - cy) ** 2 < (0.15 * height) ** 2
            frame = np.stack([np.where(disc, 230, r), np.where(disc, 40, g), np.where(disc, 90, b)], axis=-1)
            frame += rng.normal(0, 3, frame.shape).astype(np.float32)
            out[i] = np.clip(frame, 0, 255)
        chunks.append(out)
    return chunks


def cpu_seconds() -> float:
    return time.process_time()


def finish(plan, wired, output, fmt, quality, directory) -> tuple[float, float, int]:
    """The whole finishing of one result: (CPU s, wall s, frames written)."""
    core = FinisherCore(torch_threads=1)
    spec = FinishSpec(
        path=os.path.join(directory, f"out.{fmt.lower()}"),
        output_format=fmt,
        quality=quality,
        width=output[0],
        height=output[1],
        fps=OUTPUT_FPS,
        audio=False,
        plan=plan,
    )
    cpu, wall = cpu_seconds(), time.perf_counter()
    core.open(("bench", 0), spec)
    for index, frames in enumerate(wired):
        core.add_chunk(("bench", 0), index, frames)
    done = core.finish(("bench", 0))
    return cpu_seconds() - cpu, time.perf_counter() - wall, done.frames


def prepare(plan, wired, output) -> float:
    """CPU seconds of what the wire format changes, without encoding: stitch, resize to the output
    size and, for RGB, swscale's conversion to yuv420p (what ``write_frames`` does first)."""
    torch.set_num_threads(1)
    stitcher = Stitcher(plan)
    cpu = cpu_seconds()
    for index, frames in enumerate(wired):
        final = stitcher.add(index, frames)
        if final is None:
            continue
        if isinstance(final, Yuv420Planes):
            resize_yuv420p(final.y, final.u, final.v, *output)
        else:
            rgb_to_yuv420p_planes(resize_frames(final, *output).numpy())
    return cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="result length (default 5)")
    parser.add_argument("--native", type=size, default=(832, 480), help="model size WxH (default 832x480)")
    parser.add_argument("--output", type=size, default=(1280, 720), help="output size WxH (default 1280x720)")
    parser.add_argument("--format", default="MP4", choices=["MP4", "WEBM", "MOV"])
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument("--window", type=int, default=81, help="chunk frames (default 81, the Wan profiles')")
    parser.add_argument("--overlap", type=int, default=17, help="overlap frames (default 17)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per path, alternating, best kept")
    args = parser.parse_args()

    frames = round(args.seconds * OUTPUT_FPS)
    plan = plan_clip(frames, window_frames=args.window, overlap_frames=args.overlap, temporal_stride=4)
    (nw, nh), (ow, oh) = args.native, args.output
    print(f"machine: {machine()}")
    print(
        f"result: {frames} frames ({args.seconds:g} s at {OUTPUT_FPS} fps) in {len(plan.chunks)} chunks of "
        f"{args.window} (overlap {args.overlap}), native {nw}x{nh} -> output {ow}x{oh}, {args.format} q{args.quality}"
    )
    chunks = synthetic_chunks(plan, nw, nh)

    torch.set_num_threads(1)
    wired, worker_cpu, chunk_bytes = {}, {}, {}
    for wire in WIRE_FORMATS:
        cpu = cpu_seconds()
        wired[wire] = [frames_to_wire(c, wire) for c in chunks]
        worker_cpu[wire] = cpu_seconds() - cpu
        chunk_bytes[wire] = [wire_bytes(w) for w in wired[wire]]

    best: dict[str, dict[str, float]] = {w: {} for w in WIRE_FORMATS}
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(args.repeat):
            for wire in WIRE_FORMATS:
                cpu, wall, written = finish(plan, wired[wire], args.output, args.format, args.quality, directory)
                assert written == frames, (written, frames)
                pre = prepare(plan, wired[wire], args.output)
                for name, value in (("finish_cpu", cpu), ("finish_wall", wall), ("prepare_cpu", pre)):
                    best[wire][name] = min(best[wire].get(name, float("inf")), value)

    rows = [
        ("bytes per chunk through the object store (MB, first chunk)", lambda w: chunk_bytes[w][0] / 1e6, "{:.1f}"),
        ("bytes per result through the object store (MB)", lambda w: sum(chunk_bytes[w]) / 1e6, "{:.1f}"),
        ("worker: RGB -> wire format, CPU s (a GPU worker uses the Triton kernel)", lambda w: worker_cpu[w], "{:.2f}"),
        ("finisher: stitch + resize + colour conversion, CPU s", lambda w: best[w]["prepare_cpu"], "{:.2f}"),
        ("finisher: the whole result (stitch ... encode), CPU s", lambda w: best[w]["finish_cpu"], "{:.2f}"),
        ("finisher: the whole result, wall s", lambda w: best[w]["finish_wall"], "{:.2f}"),
    ]
    print()
    print(f"| {'':72} | {'rgb (before)':>12} | {'yuv420p':>12} | {'yuv / rgb':>9} |")
    print(f"|{'-' * 74}|{'-' * 14}|{'-' * 14}|{'-' * 11}|")
    for label, value, fmt in rows:
        before, after = value("rgb"), value("yuv420p")
        ratio = f"{after / before:.3f}x" if before >= 0.01 else "-"
        print(f"| {label:72} | {fmt.format(before):>12} | {fmt.format(after):>12} | {ratio:>9} |")
    ratio = chunk_bytes["yuv420p"][0] / chunk_bytes["rgb"][0]
    print()
    print(f"bytes per chunk: {ratio:.3f}x of RGB24 (target <= 0.52x): {'met' if ratio <= 0.52 else 'MISSED'}")
    cpu_ratio = best["yuv420p"]["finish_cpu"] / best["rgb"]["finish_cpu"]
    print(
        f"finishing CPU per result: {cpu_ratio:.3f}x of the RGB path (target < 1): {'met' if cpu_ratio < 1 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
