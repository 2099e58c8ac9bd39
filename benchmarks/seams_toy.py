"""Seams of the toy GP model: independent windows vs one full-clip window vs co-denoising.

    .venv/bin/python benchmarks/seams_toy.py [--seconds 15] [--resolution 480p] [--seed 7] [--out DIR]

No Ray: the toy backend (``models.toy_gp``), the planner, the farm's global seeded noise and the
farm's stitcher are called directly, at the toy profile's native size for the resolution (224x128
for 480p 16:9), and each clip goes through the farm's MP4 encoder (quality 95, the default) so the
seam metric (``farm.io.seams``) reads real files. Three renders of the same clip from the same seed:

1. **parallel**: every window of the plan denoised on its own (``render_chunk``), blended with the
   planner's crossfade weights by the farm's ``Stitcher``: what ``chunkMode: parallel`` delivers.
2. **reference**: one window over the whole clip: no seams by construction.
3. **codenoise**: the single-process co-denoising loop. All windows begin; at every step every
   window predicts; each latent frame covered by several windows gets the weighted sum of their
   predictions (float32, ascending window order, weights: cosine ramps over the latent overlaps,
   normalised to 1 per latent frame), written back into each of those windows' predictions; then
   every window steps. Each window is decoded and the planner's crossfade blends them, with the
   first pixel frame of every non-first window (its first latent frame) left out.

It prints SJR max and median, the placebo's max and median and the contrast dip (min and mean over
the seams) for each, side by side, and how far the windows sharing a latent frame ever disagreed
during co-denoising (0: bit-identical after every step). Issue 11's targets: codenoise SJR max
<= 1.20 and dip >= 0.93; parallel about 1.3; the reference about 1.0. The "render s" column is
wall time on whatever else the machine is running (a 15 s clip takes well under a second idle).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks._common import machine
from farm.domain.planner import ClipPlan, plan_clip
from farm.io.encode import ResultEncoder
from farm.io.seams import SeamReport, measure_file, planned_seams
from farm.render.stitch import Stitcher
from farm.workers.noise import latent_noise
from models.base import ChunkRequest, PromptEmbeds
from models.toy_gp import ToyGPBackend, ToyGPConfig, toy_gp_profile

FPS = 32
RESOLUTIONS = {"480p": (848, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
PROMPT = "A lighthouse on a cliff at dusk, waves crashing, gulls crying"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Clip:
    """What every mode renders: the plan, the native size, the prompt and the seed."""

    plan: ClipPlan
    width: int
    height: int
    steps: int
    seed: int
    embeds: PromptEmbeds


def request(backend: ToyGPBackend, clip: Clip, index: int, latent_start: int, num_frames: int) -> ChunkRequest:
    """A window's request with its slice of the result's global seeded noise."""
    latent_frames = (num_frames - 1) // backend.temporal_stride + 1
    shape = backend.latent_frame_shape(clip.height, clip.width)
    return ChunkRequest(
        chunk_index=index,
        prompt=clip.embeds,
        latents=latent_noise(clip.seed, latent_start, latent_frames, shape),
        num_frames=num_frames,
        height=clip.height,
        width=clip.width,
        num_inference_steps=clip.steps,
        guidance_scale=1.0,
        seed=clip.seed,
    )


def stitch(plan: ClipPlan, windows: list[np.ndarray]) -> np.ndarray:
    """The farm's streaming stitch of the windows' frames, in order."""
    stitcher = Stitcher(plan)
    out = [stitcher.add(i, frames) for i, frames in enumerate(windows)]
    return torch.cat([block for block in out if block is not None]).numpy()


def render_parallel(backend: ToyGPBackend, clip: Clip) -> np.ndarray:
    windows = [
        backend.render_chunk(request(backend, clip, c.index, c.latent_start, c.num_frames)) for c in clip.plan.chunks
    ]
    return stitch(clip.plan, windows)


def render_reference(backend: ToyGPBackend, clip: Clip) -> np.ndarray:
    frames = backend.render_chunk(request(backend, clip, 0, 0, clip.plan.render_frames))
    return frames[: clip.plan.num_frames]


def latent_weights(plan: ClipPlan) -> list[torch.Tensor]:
    """Per window, float32 fusion weights over its latent frames: cosine ramps over the latent
    overlaps with its neighbours, normalised so the windows covering a latent frame sum to 1."""
    chunks = plan.chunks
    raw = []
    for i, c in enumerate(chunks):
        w = np.ones(c.latent_frames, dtype=np.float64)
        neighbours = [(chunks[i - 1], True)] if i else []
        neighbours += [(chunks[i + 1], False)] if i + 1 < len(chunks) else []
        for other, rising in neighbours:
            lo, hi = (
                max(c.latent_start, other.latent_start),
                min(c.latent_start + c.latent_frames, other.latent_start + other.latent_frames),
            )
            x = np.arange(1, hi - lo + 1, dtype=np.float64) / (hi - lo + 1)
            ramp = 0.5 - 0.5 * np.cos(np.pi * x)
            w[lo - c.latent_start : hi - c.latent_start] *= ramp if rising else ramp[::-1]
        raw.append(w)
    total = np.zeros(plan.latent_frames, dtype=np.float64)
    for c, w in zip(chunks, raw):
        total[c.latent_start : c.latent_start + c.latent_frames] += w
    return [
        torch.from_numpy((w / total[c.latent_start : c.latent_start + c.latent_frames]).astype(np.float32))
        for c, w in zip(chunks, raw)
    ]


def render_codenoise(backend: ToyGPBackend, clip: Clip) -> tuple[np.ndarray, float]:
    """The single-process co-denoising reference; also returns the largest latent disagreement
    between windows over their shared frames after any step (0.0 when they stay bit-identical)."""
    chunks = clip.plan.chunks
    states = [backend.begin_window(request(backend, clip, c.index, c.latent_start, c.num_frames)) for c in chunks]
    weights = latent_weights(clip.plan)
    covering: dict[int, list[int]] = {}
    for c in chunks:
        for g in range(c.latent_start, c.latent_start + c.latent_frames):
            covering.setdefault(g, []).append(c.index)
    shared = {g: ws for g, ws in covering.items() if len(ws) > 1}
    disagreement = 0.0
    for step in range(backend.num_steps(states[0])):
        predictions = [backend.predict(state, step) for state in states]
        for g, ws in shared.items():
            fused = None
            for w in ws:  # ascending window order
                local = g - chunks[w].latent_start
                term = weights[w][local] * predictions[w][:, :, local]
                fused = term if fused is None else fused + term
            for w in ws:
                predictions[w][:, :, g - chunks[w].latent_start] = fused
        for state, prediction in zip(states, predictions):
            backend.step(state, step, prediction)
        for g, ws in shared.items():
            slices = [backend.latents(states[w])[:, :, g - chunks[w].latent_start] for w in ws]
            disagreement = max(disagreement, max(float((s - slices[0]).abs().max()) for s in slices))
    windows = [backend.decode(state) for state in states]
    # Leave out the first latent frame's pixels of non-first windows (a causal VAE's warm-up).
    weights_px = [w.copy() for w in clip.plan.weights]
    for w in weights_px[1:]:
        w[0] = 0.0
    total = np.zeros(clip.plan.render_frames, dtype=np.float64)
    for c, w in zip(chunks, weights_px):
        total[c.start : c.end] += w
    plan = dataclasses.replace(clip.plan, weights=tuple(w / total[c.start : c.end] for c, w in zip(chunks, weights_px)))
    return stitch(plan, windows), disagreement


def encode(path: Path, frames: np.ndarray) -> Path:
    with ResultEncoder(
        path,
        output_format="MP4",
        quality=95,
        width=frames.shape[2],
        height=frames.shape[1],
        expected_frames=frames.shape[0],
        audio=False,
    ) as encoder:
        encoder.write_frames(frames)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--resolution", choices=sorted(RESOLUTIONS), default="480p")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="where the MP4s go (default: a temporary folder)")
    args = parser.parse_args(argv)

    profile = toy_gp_profile()
    backend = ToyGPBackend(ToyGPConfig())
    width, height = profile.native_size(*RESOLUTIONS[args.resolution])
    num_frames = round(args.seconds * FPS)
    plan = plan_clip(
        num_frames,
        window_frames=profile.window_frames,
        overlap_frames=profile.overlap_frames,
        temporal_stride=profile.temporal_stride,
    )
    clip = Clip(
        plan=plan,
        width=width,
        height=height,
        steps=profile.num_inference_steps,
        seed=args.seed,
        embeds=backend.encode_prompt(PROMPT),
    )
    seams = planned_seams(num_frames, profile.window_frames, profile.overlap_frames, profile.temporal_stride)
    print(f"machine: {machine()}")
    print(f"toy GP {backend.config}")
    print(
        f"{args.seconds:g} s {args.resolution} -> {num_frames} frames at {width}x{height} native, "
        f"{len(plan.chunks)} windows of {plan.window_frames} overlapping by {plan.overlap_frames}, "
        f"{clip.steps} steps, seed {args.seed}"
    )

    render_parallel(
        backend,
        dataclasses.replace(
            clip, plan=plan_clip(33, window_frames=plan.window_frames, overlap_frames=plan.overlap_frames)
        ),
    )  # warm-up: caches, torch
    out = args.out or Path(tempfile.mkdtemp(prefix="seams-toy-"))
    out.mkdir(parents=True, exist_ok=True)
    reports: dict[str, tuple[SeamReport, float]] = {}
    notes = {}
    for mode in ("parallel", "reference", "codenoise"):
        start = time.perf_counter()
        if mode == "parallel":
            frames = render_parallel(backend, clip)
        elif mode == "reference":
            frames = render_reference(backend, clip)
        else:
            frames, disagreement = render_codenoise(backend, clip)
            notes[mode] = f"overlap latents max |diff| {disagreement:g}"
        seconds = time.perf_counter() - start
        path = encode(out / f"{mode}.mp4", frames)
        reports[mode] = (measure_file(path, seams=seams), seconds)

    print(
        f"\n{'mode':<10} {'SJR max':>8} {'placebo max':>12} {'SJR med':>8} {'placebo med':>12} {'dip min':>8} "
        f"{'dip mean':>9} {'cuts':>5} {'render s':>9}  file"
    )
    for mode, (report, seconds) in reports.items():
        print(
            f"{mode:<10} {report.sjr_max:>8.3f} {report.placebo_max:>12.3f} {report.sjr_median:>8.3f} "
            f"{report.placebo_median:>12.3f} {report.dip_min:>8.3f} {report.dip_mean:>9.3f} {report.cuts:>5} "
            f"{seconds:>9.2f}  {out / (mode + '.mp4')}"
        )
    for mode, note in notes.items():
        print(f"{mode}: {note}")


if __name__ == "__main__":
    main()
