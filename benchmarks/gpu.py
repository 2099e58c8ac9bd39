"""Benchmark: one chunk of Wan 2.1 at real size on one CUDA GPU, stage by stage.

    .venv/bin/python benchmarks/gpu.py [--out gpu.md] [--steps 2] [--budget-s 420]
    .venv/bin/python benchmarks/gpu.py --dry-run      # no GPU: build the configs on "meta", count
    .venv/bin/python benchmarks/gpu.py --smoke        # no GPU: tiny models on the CPU, every stage
    .venv/bin/python benchmarks/gpu.py --speed profiles/fast.yaml [--speed-model ID]  # + each speed option

Nothing is downloaded. The Wan 2.1 T2V transformers (1.3B and 14B, the exact ``transformer``
configs of ``Wan-AI/Wan2.1-T2V-{1.3B,14B}-Diffusers``) are built in bfloat16 straight on the GPU
with random weights, the Wan VAE (``AutoencoderKLWan()``, the default config, which is the
published one) in float32 as the farm loads it. The text encoder is replaced by random prompt
embeddings of its output shape (512 tokens x 4096). One chunk is the farm's window: 81 frames,
at 480p (model 832x480, output 848x480) and 720p (model 1280x720, output 1920x1080, the default
output resolution). Measured, per resolution:

* **denoising step** -- one step with classifier-free guidance, i.e. two transformer forwards
  (cond + uncond, as diffusers' ``WanPipeline`` runs them), mean of ``--steps`` steps after one
  untimed warm-up forward; peak GPU memory with the weights;
* **VAE decode** of the chunk's 21 latent frames, after a 1-frame warm-up;
* **device-to-host copy** of the decoded chunk as float32 RGB (what ``output_type="np"`` copies
  today), as uint8 RGB, and as yuv420p planes;
* **kernels**: blend (a 17-frame overlap of two chunks), resize (to the output size) and
  RGB -> yuv420p (at the output size), the torch reference against the Triton twin (median of
  5 after a warm-up that includes Triton's compile), with the largest difference between them;
* **encode**: PyAV libx264 (preset fast, CRF 18) of the chunk at the output size, fed RGB (swscale
  converts, as the farm does today) or the yuv420p planes from the GPU.
* **speed options** (with ``--speed profiles.yaml``): the ``speed:`` section of a YAML profile
  (docs/profiles.md), read as the farm reads it and applied by the same functions
  (``models.wan``), one option at a time, on the first transformer and the VAE: ``half_precision``
  (a step and the VAE decode in that dtype; float32 kept off CUDA, as the farm does),
  ``compile`` (the compiling forward, then a step), ``first_block_cache`` (a step that computes
  every block and a step the cache skips: the bounds of a cached step; how many steps a trained
  model skips is not measured with random weights) and ``vae_tiling`` (decode time and peak
  memory in tiles). These run last, within the same ``--budget-s``: raise it (``--budget-s 900``)
  when the default 8 minutes are spent before them.

The kernel and encode stages run on a synthetic chunk (moving gradients + noise), not on the
random VAE's output, whose noise would make x264 look slower than on real video.

It must finish within 8 minutes on one H200: every stage is estimated before it runs (the
transformers from their FLOPs and the throughput measured so far) and skipped, or run with fewer
steps, when it would not fit in ``--budget-s`` (default 420 s, leaving a minute for start-up);
what was skipped, and why, is printed and written with the table. Without a CUDA GPU it prints
"no CUDA GPU: skipped" and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks._common import peak_rss_mib

#: Shared by both models: the ``transformer/config.json`` of the Wan-AI/Wan2.1-T2V-*-Diffusers
#: repos (written by diffusers' scripts/convert_wan_to_diffusers.py).
_WAN21_COMMON = {
    "patch_size": [1, 2, 2],
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-06,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}
WAN21_T2V_CONFIGS: dict[str, dict[str, Any]] = {
    "Wan2.1-T2V-1.3B": {**_WAN21_COMMON, "num_attention_heads": 12, "num_layers": 30, "ffn_dim": 8960},
    "Wan2.1-T2V-14B": {**_WAN21_COMMON, "num_attention_heads": 40, "num_layers": 40, "ffn_dim": 13824},
}
#: Parameter counts of the configs above (checked by --dry-run and its test).
EXPECTED_PARAMETERS = {"Wan2.1-T2V-1.3B": 1_418_996_800, "Wan2.1-T2V-14B": 14_288_491_584}

TEXT_TOKENS = 512  # umT5 sequence length the Wan pipelines pad prompts to
VAE_STRIDE = (4, 8, 8)  # frames, height, width
LATENT_CHANNELS = 16

#: Before anything was measured: a deliberately low bf16 throughput for the first estimate
#: (an H200 reaches well above this on these shapes; the estimate is recalibrated after each run).
PRIOR_FLOPS_PER_S = 2.0e14
#: Estimates are multiplied by this before being compared with the time left.
ESTIMATE_MARGIN = 1.3
#: Before anything was measured: seconds ``torch.compile`` takes for a Wan transformer's first
#: forward (a guess: ~30 s for the tiny one on 2 CPU cores; never measured on a GPU).
PRIOR_COMPILE_S = 120.0
FARM_OVERHEAD_ROW = "farm overhead (a chunk through the farm vs the bare pipeline)"


@dataclass(frozen=True)
class Resolution:
    """One column of the table: the model's native frame size and the output size."""

    name: str
    native: tuple[int, int]  # width, height
    output: tuple[int, int]


@dataclass(frozen=True)
class Plan:
    """What to build and run: the real sizes, or the tiny CPU ones of ``--smoke``."""

    models: dict[str, dict[str, Any]]
    vae_config: dict[str, Any]
    resolutions: tuple[Resolution, ...]
    frames: int  # frames in a chunk
    overlap: int  # frames two chunks share
    device: torch.device
    dtype: torch.dtype  # transformers
    vae_dtype: torch.dtype
    repeats: int = 5  # timed runs of each kernel (the median is kept)


def real_plan(vae_dtype: torch.dtype = torch.float32) -> Plan:
    return Plan(
        models=WAN21_T2V_CONFIGS,
        vae_config={},  # AutoencoderKLWan() defaults are the published Wan 2.1 VAE
        resolutions=(
            Resolution("480p", native=(832, 480), output=(848, 480)),
            Resolution("720p", native=(1280, 720), output=(1920, 1080)),
        ),
        frames=81,
        overlap=17,
        device=torch.device("cuda"),
        dtype=torch.bfloat16,
        vae_dtype=vae_dtype,
    )


def smoke_plan() -> Plan:
    """Tiny models and frames on the CPU: every stage of the benchmark in seconds, no GPU."""
    tiny = {
        **_WAN21_COMMON,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "num_layers": 2,
        "ffn_dim": 64,
        "rope_max_seq_len": 32,
    }
    return Plan(
        models={"tiny-a": tiny, "tiny-b": {**tiny, "num_layers": 3}},
        vae_config={
            "base_dim": 8,
            "z_dim": 16,
            "dim_mult": [1, 1, 1, 1],
            "num_res_blocks": 1,
            "temperal_downsample": [False, True, True],
        },
        resolutions=(
            Resolution("tiny", native=(32, 32), output=(48, 32)),
            Resolution("tiny-up", native=(32, 32), output=(40, 40)),
        ),
        frames=5,
        overlap=2,
        device=torch.device("cpu"),
        dtype=torch.float32,
        vae_dtype=torch.float32,
        repeats=1,
    )


def latent_shape(plan: Plan, res: Resolution) -> tuple[int, ...]:
    width, height = res.native
    frames = (plan.frames - 1) // VAE_STRIDE[0] + 1
    return (1, LATENT_CHANNELS, frames, height // VAE_STRIDE[1], width // VAE_STRIDE[2])


def transformer_tokens(plan: Plan, config: dict[str, Any], res: Resolution) -> int:
    _, _, frames, height, width = latent_shape(plan, res)
    pt, ph, pw = config["patch_size"]
    return (frames // pt) * (height // ph) * (width // pw)


def forward_flops(config: dict[str, Any], tokens: int, text_tokens: int = TEXT_TOKENS) -> float:
    """Multiply-add FLOPs of one transformer forward (matmuls and attention; the rest is noise)."""
    d = config["num_attention_heads"] * config["attention_head_dim"]
    per_layer = (
        2 * tokens * 4 * d * d  # self-attention q, k, v, o
        + 4 * tokens * tokens * d  # q k^T and p v
        + 2 * tokens * 2 * d * d
        + 2 * text_tokens * 2 * d * d  # cross-attention q, o / k, v
        + 4 * tokens * text_tokens * d
        + 2 * tokens * 2 * d * config["ffn_dim"]  # feed-forward
    )
    return config["num_layers"] * per_layer


# ----------------------------------------------------------------------------------- results


class Table:
    """The results: one row per measurement, one column per resolution, plus skip notes."""

    def __init__(self, columns: list[str]):
        self.columns = columns
        self.rows: dict[str, dict[str, str]] = {}
        self.skipped: list[str] = []
        self.errors: list[str] = []

    def set(self, row: str, column: str, text: str) -> None:
        self.rows.setdefault(row, {})[column] = text

    def skip(self, what: str, why: str, rows: list[str], column: str) -> None:
        print(f"SKIPPED {what}: {why}", flush=True)
        self.skipped.append(f"{what}: {why}")
        for row in rows:
            self.set(row, column, "skipped")

    def fail(self, what: str, exc: BaseException) -> str:
        """Record a stage that raised (the run goes on with the next one); returns a short text."""
        traceback.print_exception(exc)
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        self.errors.append(f"{what}: {text}")
        return text

    def markdown(self) -> str:
        lines = [
            "| stage | " + " | ".join(self.columns) + " |",
            "| --- | " + " | ".join("---:" for _ in self.columns) + " |",
        ]
        for row, cells in self.rows.items():
            lines.append(f"| {row} | " + " | ".join(cells.get(c, "") for c in self.columns) + " |")
        return "\n".join(lines)


def seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"


class Budget:
    """Seconds left until the deadline; ``fits`` compares an estimate (with margin) with them."""

    def __init__(self, seconds_total: float):
        self.deadline = time.monotonic() + seconds_total

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, estimate_s: float) -> bool:
        return estimate_s * ESTIMATE_MARGIN <= self.left()


# ------------------------------------------------------------------------------------ timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Wall seconds of ``fn()`` with the device drained before and after, and its result."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def median_time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    fn()  # warm-up: Triton compiles here, cuBLAS/cuDNN pick their algorithms
    return statistics.median(timed(fn, device)[0] for _ in range(repeats))


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return gib(torch.cuda.max_memory_allocated(device))
    return f"{gib(peak_rss_mib() * 2**20)} (CPU RSS)"


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------ models


def build_random(cls: type, config: dict[str, Any], device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """``cls(**config)`` with random weights, created directly on ``device`` in ``dtype``.

    Building on the GPU with the default dtype set avoids a float32 copy (57 GB for the 14B
    transformer) and a CPU initialisation of billions of weights.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(**config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval().requires_grad_(False)


def build_transformer(config: dict[str, Any], device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A random-weight ``WanTransformer3DModel`` of ``config`` on ``device`` in ``dtype``."""
    from diffusers import WanTransformer3DModel

    return build_random(WanTransformer3DModel, config, device, dtype)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def dry_run() -> int:
    """Build the real-size configs on the meta device and print what they would be."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    plan = real_plan()
    print("Real-size configs built on the meta device (no weights allocated):\n")
    header = ["model", "parameters", "bf16 weights"]
    for res in plan.resolutions:
        header += [f"tokens {res.name}", f"TFLOP/forward {res.name}"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    ok = True
    for name, config in plan.models.items():
        with torch.device("meta"):
            model = WanTransformer3DModel(**config)
        devices = {p.device.type for p in model.parameters()}
        count = count_parameters(model)
        cells = [name, f"{count:,}", gib(2 * count)]
        for res in plan.resolutions:
            tokens = transformer_tokens(plan, config, res)
            cells += [f"{tokens:,}", f"{forward_flops(config, tokens) / 1e12:,.0f}"]
        print("| " + " | ".join(cells) + " |")
        if devices != {"meta"} or count != EXPECTED_PARAMETERS[name]:
            print(
                f"UNEXPECTED {name}: {count:,} parameters on {devices}, expected {EXPECTED_PARAMETERS[name]:,} on meta"
            )
            ok = False
    with torch.device("meta"):
        vae = AutoencoderKLWan(**plan.vae_config)
    print(f"\nAutoencoderKLWan (default config): {count_parameters(vae):,} parameters")
    for res in plan.resolutions:
        print(
            f"{res.name}: {plan.frames} frames at {res.native[0]}x{res.native[1]} -> latents "
            f"{list(latent_shape(plan, res))}, output {res.output[0]}x{res.output[1]}"
        )
    print(f"peak RSS {peak_rss_mib():.0f} MiB")
    return 0 if ok else 1


# --------------------------------------------------------------------------------- the stages


def pattern_frames(n: int, width: int, height: int, device: torch.device) -> torch.Tensor:
    """uint8 ``[n, height, width, 3]``: moving gradients plus a little noise (codec-realistic)."""
    generator = torch.Generator(device=device).manual_seed(0)
    y = torch.arange(height, device=device, dtype=torch.int32).view(1, -1, 1)
    x = torch.arange(width, device=device, dtype=torch.int32).view(1, 1, -1)
    t = torch.arange(n, device=device, dtype=torch.int32).view(-1, 1, 1)
    channels = torch.broadcast_tensors(
        (x + 3 * t) * 255 // width, (y + 2 * t) * 255 // height, ((x + y) // 4 + 5 * t) % 256
    )
    rgb = torch.stack(channels, -1)
    noise = torch.randint(0, 4, rgb.shape, device=device, generator=generator, dtype=torch.int32)
    return (rgb + noise).clamp_(0, 255).to(torch.uint8)


def encode_seconds(frames: Any, width: int, height: int) -> tuple[float, int]:
    """Encode a chunk with PyAV libx264 into memory; ``frames`` is uint8 RGB ``[n, H, W, 3]``
    (swscale converts, BT.709 limited range, bicubic, like the farm's encoder) or a ``(y, u, v)``
    tuple of yuv420p planes. Returns (seconds, compressed bytes)."""
    import av
    from av.video.reformatter import Colorspace, Interpolation

    start = time.perf_counter()
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=32)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "fast"}
        stream.codec_context.thread_type = "FRAME"
        stream.codec_context.colorspace = 1  # BT.709
        stream.codec_context.color_range = 1  # limited
        n = len(frames[0]) if isinstance(frames, tuple) else len(frames)
        for i in range(n):
            if isinstance(frames, tuple):
                y, u, v = (plane[i] for plane in frames)
                stacked = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(height * 3 // 2, width)
                frame = av.VideoFrame.from_ndarray(stacked, format="yuv420p")
            else:
                frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24").reformat(
                    format="yuv420p",
                    dst_colorspace=Colorspace.ITU709,
                    dst_color_range=1,
                    interpolation=Interpolation.BICUBIC,
                )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return time.perf_counter() - start, buffer.getbuffer().nbytes


def swscale_diff(rgb: np.ndarray, planes: tuple[np.ndarray, ...]) -> int:
    """Largest difference between our yuv420p planes of one frame and swscale's (bicubic)."""
    import av
    from av.video.reformatter import Colorspace, Interpolation

    theirs = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=1, interpolation=Interpolation.BICUBIC
    )
    worst = 0
    for ours, plane in zip(planes, theirs.planes):
        ref = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        worst = max(worst, int(np.abs(ours.astype(np.int16) - ref.astype(np.int16)).max()))
    return worst


def bench_kernels(plan: Plan, res: Resolution, table: Table, triton_ok: bool) -> None:
    """Blend, resize and RGB -> yuv420p, torch vs Triton, then encode from RGB and from yuv."""
    from kernels import blend_frames, resize_frames, rgb_to_yuv420p

    device, column = plan.device, res.name
    width, height = res.native
    out_w, out_h = res.output
    chunk = pattern_frames(plan.frames, width, height, device)
    ramp = torch.arange(1, plan.overlap + 1, device=device, dtype=torch.float32) / (plan.overlap + 1)
    head, tail = chunk[-plan.overlap :], pattern_frames(plan.overlap, width, height, device).flip(2)
    resized = resize_frames(chunk, out_w, out_h, backend="torch")
    cases = {
        f"blend: {plan.overlap}-frame overlap of 2 chunks, model size": lambda backend: blend_frames(
            [head, tail], [1 - ramp, ramp], backend=backend
        ),
        "resize: the chunk, model size -> output size": lambda backend: resize_frames(
            chunk, out_w, out_h, backend=backend
        ),
        "RGB -> yuv420p: the chunk at output size": lambda backend: rgb_to_yuv420p(resized, backend=backend),
    }
    planes = None
    for row, run in cases.items():
        torch_s = median_time(lambda: run("torch"), device, plan.repeats)  # noqa: B023 -- called right here
        cell = f"torch {seconds(torch_s)}"
        if not triton_ok:
            cell += " / triton n/a"
        else:
            try:  # never run on a GPU before: a failing compile must not end the run
                triton_s = median_time(lambda: run("triton"), device, plan.repeats)  # noqa: B023 - called at once, inside the loop
                a, b = run("torch"), run("triton")
                pairs = zip(a, b) if isinstance(a, tuple) else [(a, b)]
                diff = max(int((x.int() - y.int()).abs().max()) for x, y in pairs)
                cell += f" / triton {seconds(triton_s)} (x{torch_s / triton_s:.1f}, max diff {diff})"
                if isinstance(b, tuple):
                    planes = b
            except Exception as exc:  # noqa: BLE001 - a failing stage is reported in the table
                cell += f" / triton failed ({table.fail(f'Triton {row} at {column}', exc)})"
        table.set(row, column, cell)
    if planes is None:
        planes = rgb_to_yuv420p(resized, backend="torch")

    d2h_s, host_planes = timed(lambda: tuple(p.cpu() for p in planes), device)
    table.set(
        "device -> host: yuv420p planes (output size)",
        column,
        f"{seconds(d2h_s)} ({gib(sum(p.numel() for p in host_planes))})",
    )
    rgb_host = resized.cpu().numpy()
    host_planes = tuple(p.numpy() for p in host_planes)
    table.set(
        "yuv420p from the GPU vs swscale bicubic (frame 0, max diff)",
        column,
        str(swscale_diff(rgb_host[0], tuple(p[0] for p in host_planes))),
    )
    rgb_s, rgb_bytes = encode_seconds(rgb_host, out_w, out_h)
    yuv_s, yuv_bytes = encode_seconds(host_planes, out_w, out_h)
    table.set("encode libx264, RGB in (swscale converts; today)", column, f"{seconds(rgb_s)} ({gib(rgb_bytes)})")
    table.set("encode libx264, yuv420p planes in", column, f"{seconds(yuv_s)} ({gib(yuv_bytes)})")


def bench_vae(plan: Plan, vae: torch.nn.Module, res: Resolution, table: Table) -> float:
    """VAE decode of one chunk, the uint8 conversion, and the device-to-host copies."""
    device, column = plan.device, res.name
    generator = torch.Generator(device=device).manual_seed(0)
    latents = torch.randn(latent_shape(plan, res), generator=generator, device=device, dtype=plan.vae_dtype)
    mean = torch.tensor(vae.config.latents_mean, device=device, dtype=plan.vae_dtype).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device, dtype=plan.vae_dtype).view(1, -1, 1, 1, 1)
    latents = latents * std + mean  # what WanPipeline hands the VAE
    with torch.inference_mode():
        vae.decode(latents[:, :, :1], return_dict=False)  # warm-up: cuDNN picks its algorithms
        reset_peak(device)
        decode_s, video = timed(lambda: vae.decode(latents, return_dict=False)[0], device)
        table.set(
            f"VAE decode ({plan.frames} frames, {str(plan.vae_dtype).removeprefix('torch.')})",
            column,
            seconds(decode_s),
        )
        table.set("VAE decode peak GPU memory", column, peak_memory(device))
        as_float = video[0].permute(1, 2, 3, 0).float().add_(1).mul_(0.5).clamp_(0, 1).contiguous()
        to_uint8_s, frames = timed(lambda: as_float.mul(255).round_().to(torch.uint8), device)
        table.set("VAE output -> uint8 RGB frames on the device", column, seconds(to_uint8_s))
        f32_s, host = timed(lambda: as_float.cpu(), device)
        table.set(
            "device -> host: float32 RGB (output_type='np', today)",
            column,
            f"{seconds(f32_s)} ({gib(host.numel() * 4)})",
        )
        u8_s, host = timed(lambda: frames.cpu(), device)
        table.set("device -> host: uint8 RGB (native size)", column, f"{seconds(u8_s)} ({gib(host.numel())})")
    return decode_s  # the chunk's tensors go with this frame; the caller frees the cache


def bench_transformer(plan: Plan, name: str, table: Table, budget: Budget, state: dict, max_steps: int) -> None:
    """Denoising steps of one model at every resolution, each only when its estimate fits."""
    config = plan.models[name]
    rows = (
        f"{name}: s / denoising step (CFG: 2 forwards)",
        f"{name}: first forward (warm-up)",
        f"{name}: peak GPU memory",
    )
    model = None
    for res in plan.resolutions:
        flops = forward_flops(config, transformer_tokens(plan, config, res))
        forward_s = flops / state["flops_per_s"]
        # Building: Python set-up of the modules plus random init on the device (~10 GB/s, a guess).
        build_s = 0.0 if model is not None else 2.0 + count_parameters_estimate(config) * 2 / 10e9
        steps = max_steps
        while steps >= 1 and not budget.fits(build_s + forward_s * (1 + 2 * steps)):
            steps -= 1
        if steps < 1:
            table.skip(
                f"{name} at {res.name}",
                f"estimated {ESTIMATE_MARGIN * (build_s + 3 * forward_s):.0f} s for a warm-up and one step "
                f"({flops / 1e12:.3g} TFLOP a forward at {state['flops_per_s'] / 1e12:.3g} TFLOP/s) "
                f"> {budget.left():.0f} s left",
                list(rows),
                res.name,
            )
            continue
        if steps < max_steps:
            table.skipped.append(f"{name} at {res.name}: {steps} step(s) timed instead of {max_steps} (time budget)")
            print(f"CAPPED {name} at {res.name}: {steps} step(s) instead of {max_steps}", flush=True)
        try:
            reset_peak(plan.device)
            if model is None:
                build_s, model = timed(lambda: build_transformer(config, plan.device, plan.dtype), plan.device)
                print(f"built {name}: {count_parameters(model):,} parameters in {build_s:.1f} s", flush=True)
            first_s, step_s = denoising_steps(plan, model, config, res, steps)
        except Exception as exc:  # noqa: BLE001 -- e.g. out of memory: record it, go on
            text = table.fail(f"{name} at {res.name}", exc)
            for row in rows:
                table.set(row, res.name, f"failed ({text})")
            free(plan.device)
            continue
        state["flops_per_s"] = 2 * flops / step_s
        table.set(rows[0], res.name, f"{seconds(step_s)} (x{steps}, {state['flops_per_s'] / 1e12:.3g} TFLOP/s)")
        table.set(rows[1], res.name, seconds(first_s))
        table.set(rows[2], res.name, peak_memory(plan.device))
        print(f"{name} at {res.name}: {step_s:.2f} s a step", flush=True)
    del model
    free(plan.device)


def denoising_steps(
    plan: Plan,
    model: torch.nn.Module,
    config: dict[str, Any],
    res: Resolution,
    steps: int,
    dtype: torch.dtype | None = None,
) -> tuple[float, float]:
    """Seconds of a warm-up forward, and the mean seconds of ``steps`` CFG steps (2 forwards each);
    inputs in ``dtype`` (default: the plan's)."""
    dtype = dtype or plan.dtype
    generator = torch.Generator(device=plan.device).manual_seed(0)
    latents = torch.randn(latent_shape(plan, res), generator=generator, device=plan.device, dtype=dtype)
    cond, uncond = (
        torch.randn((1, TEXT_TOKENS, config["text_dim"]), generator=generator, device=plan.device, dtype=dtype)
        for _ in range(2)
    )
    timestep = torch.tensor([999.0], device=plan.device)

    def forward(embeds: torch.Tensor) -> torch.Tensor:
        return model(hidden_states=latents, timestep=timestep, encoder_hidden_states=embeds, return_dict=False)[0]

    with torch.inference_mode():
        first_s, _ = timed(lambda: forward(cond), plan.device)
        step_times = [timed(lambda: (forward(cond), forward(uncond)), plan.device)[0] for _ in range(steps)]
    return first_s, statistics.mean(step_times)


def count_parameters_estimate(config: dict[str, Any]) -> float:
    """Parameters of a Wan transformer config, closely enough for a time estimate."""
    d = config["num_attention_heads"] * config["attention_head_dim"]
    return config["num_layers"] * (8 * d * d + 2 * d * config["ffn_dim"]) + config["text_dim"] * d


# ------------------------------------------------------------------------------- speed options


def read_speed_options(path: Path, model_id: str | None) -> tuple[str, Any]:
    """``(model id, models.wan.SpeedOptions)`` of a profiles YAML: the profile ``model_id``, or the
    first one that sets ``speed:``. Read through the farm's own loader and factory keywords, so
    the options are exactly what a worker would apply."""
    from models.profile_config import load_profiles
    from models.wan import SpeedOptions

    profiles = load_profiles(path)
    for profile in profiles:
        if (model_id is None and profile.extra.get("speed")) or profile.model_id == model_id:
            keywords = profile.video_factory.keywords
            fields = ("half_precision", "compile_mode", "first_block_cache", "vae_tiling")
            return profile.model_id, SpeedOptions(**{key: keywords[key] for key in fields if key in keywords})
    wanted = f"profile {model_id!r}" if model_id else "a profile with a speed: section"
    raise SystemExit(f"{path}: no {wanted} (profiles: {', '.join(p.model_id for p in profiles) or 'none'})")


def cached_steps(
    plan: Plan, model: torch.nn.Module, config: dict[str, Any], res: Resolution
) -> tuple[float, float, str]:
    """First Block Cache on ``model``: seconds of a step that computes every block, of one the
    cache skips (the same inputs again), and how many block forwards the two steps computed."""
    from models.wan import reset_step_cache

    generator = torch.Generator(device=plan.device).manual_seed(0)
    dtype = next(model.parameters()).dtype
    latents = torch.randn(latent_shape(plan, res), generator=generator, device=plan.device, dtype=dtype)
    embeds = {
        name: torch.randn((1, TEXT_TOKENS, config["text_dim"]), generator=generator, device=plan.device, dtype=dtype)
        for name in ("cond", "uncond")
    }
    timestep = torch.tensor([999.0], device=plan.device)
    computed = [0]
    hooks = [
        block.ffn.register_forward_pre_hook(lambda module, args: computed.__setitem__(0, computed[0] + 1))
        for block in model.blocks
    ]

    def step() -> None:
        for name, embed in embeds.items():
            with model.cache_context(name):
                model(hidden_states=latents, timestep=timestep, encoder_hidden_states=embed, return_dict=False)

    try:
        with torch.inference_mode():
            reset_step_cache(model)
            step()  # warm-up
            reset_step_cache(model)
            computed[0] = 0
            full_s, _ = timed(step, plan.device)
            cached_s, _ = timed(step, plan.device)
    finally:
        for hook in hooks:
            hook.remove()
    blocks = 2 * 2 * len(model.blocks)
    return full_s, cached_s, f"{computed[0]} of {blocks} block forwards computed in the two steps"


def bench_speed(plan: Plan, options: Any, table: Table, budget: Budget, state: dict, max_steps: int) -> None:
    """Each speed option alone, on a fresh copy of the first model and of the VAE, at every
    resolution whose estimate fits the time left."""
    from models.wan import compile_transformer, enable_first_block_cache, half_precision_dtype

    name = next(iter(plan.models))
    config = plan.models[name]
    half = half_precision_dtype(options, plan.device)
    fallback = f"{options.half_precision} applies on CUDA only: float32 kept, as the farm does"
    build_s = 2.0 + count_parameters_estimate(config) * 2 / 10e9  # as bench_transformer guesses it

    def half_precision_step(model: torch.nn.Module, res: Resolution) -> str:
        model.to(dtype=half)
        _, step_s = denoising_steps(plan, model, config, res, max_steps, dtype=half)
        return f"{seconds(step_s)} / step in {options.half_precision}"

    def cached_step(model: torch.nn.Module, res: Resolution) -> str:
        enable_first_block_cache(model, options.first_block_cache)
        full_s, cached_s, computed = cached_steps(plan, model, config, res)
        return (
            f"threshold {options.first_block_cache:g}: computing step {seconds(full_s)}, "
            f"cached step {seconds(cached_s)} ({computed})"
        )

    def compiled_step(model: torch.nn.Module, res: Resolution) -> str:
        compile_transformer(model, options.compile_mode)
        first_s, step_s = denoising_steps(plan, model, config, res, max_steps)
        return f"{options.compile_mode}: {seconds(step_s)} / step; compiling forward {seconds(first_s)}"

    for res in plan.resolutions:
        forward_s = forward_flops(config, transformer_tokens(plan, config, res)) / state["flops_per_s"]
        runs: list[tuple[str, float, Callable[[torch.nn.Module, Resolution], str]]] = []
        if options.half_precision is not None:
            if half is None:
                table.set(f"speed: {name} half_precision", res.name, fallback)
            else:
                runs.append(("half_precision", forward_s * (1 + 2 * max_steps), half_precision_step))
        if options.first_block_cache is not None:
            runs.append(("first_block_cache", forward_s * 8, cached_step))
        if options.compile_mode is not None:
            runs.append(("compile", PRIOR_COMPILE_S + forward_s * (1 + 2 * max_steps), compiled_step))
        for option, estimate_s, measure in runs:
            row = f"speed: {name} {option}"
            if not budget.fits(build_s + estimate_s):
                why = f"estimated {ESTIMATE_MARGIN * (build_s + estimate_s):.0f} s > {budget.left():.0f} s left"
                table.skip(f"{row} at {res.name}", why, [row], res.name)
                continue
            try:
                model = build_transformer(config, plan.device, plan.dtype)
                cell = measure(model, res)
            except Exception as exc:  # noqa: BLE001 -- a failing option is recorded, the run goes on
                cell = f"failed ({table.fail(f'{row} at {res.name}', exc)})"
            table.set(row, res.name, cell)
            model = None
            free(plan.device)
        bench_speed_vae(plan, options, half, res, table, budget, state.get("vae_s", {}).get(res.name, 0.0))


def bench_speed_vae(
    plan: Plan, options: Any, half: torch.dtype | None, res: Resolution, table: Table, budget: Budget, decode_s: float
) -> None:
    """The VAE decode of one chunk in ``half`` precision, and in tiles (``decode_s``: untiled, in
    float32, from the first stage: the estimate)."""
    from diffusers import AutoencoderKLWan

    from models.wan import enable_vae_tiling

    runs: list[tuple[str, torch.dtype, tuple[int, int] | None]] = []
    if options.half_precision is not None:
        row = f"speed: VAE decode in {options.half_precision}"
        if half is None:
            table.set(row, res.name, f"{options.half_precision} applies on CUDA only: float32 kept, as the farm does")
        else:
            runs.append((row, half, None))
    if options.vae_tiling is not None:
        runs.append(
            (
                "speed: VAE decode, tiles {} px, stride {}".format(*options.vae_tiling),
                plan.vae_dtype,
                options.vae_tiling,
            )
        )
    for row, dtype, tiling in runs:
        # Tiles decode their overlaps twice: up to (tile / stride)^2 of the work, 1.8x at the defaults.
        estimate_s = decode_s * (1.0 if tiling is None else (tiling[0] / tiling[1]) ** 2)
        if not budget.fits(estimate_s + 5):
            table.skip(
                f"{row} at {res.name}", f"estimated {estimate_s:.0f} s > {budget.left():.0f} s left", [row], res.name
            )
            continue
        try:
            vae = build_random(AutoencoderKLWan, plan.vae_config, plan.device, dtype)
            if tiling is not None:
                enable_vae_tiling(vae, *tiling)
            seconds_taken = decode_seconds(dataclasses.replace(plan, vae_dtype=dtype), vae, res)
            table.set(row, res.name, f"{seconds(seconds_taken)}, peak {peak_memory(plan.device)}")
        except Exception as exc:  # noqa: BLE001 -- e.g. out of memory
            table.set(row, res.name, f"failed ({table.fail(f'{row} at {res.name}', exc)})")
        vae = None
        free(plan.device)


def decode_seconds(plan: Plan, vae: torch.nn.Module, res: Resolution) -> float:
    """Seconds of one chunk's VAE decode after a 1-frame warm-up (the peak memory is reset before
    it), on the latents ``bench_vae`` decodes."""
    generator = torch.Generator(device=plan.device).manual_seed(0)
    latents = torch.randn(latent_shape(plan, res), generator=generator, device=plan.device, dtype=plan.vae_dtype)
    mean = torch.tensor(vae.config.latents_mean, device=plan.device, dtype=plan.vae_dtype).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=plan.device, dtype=plan.vae_dtype).view(1, -1, 1, 1, 1)
    latents = latents * std + mean
    with torch.inference_mode():
        vae.decode(latents[:, :, :1], return_dict=False)
        reset_peak(plan.device)
        decode_s, _ = timed(lambda: vae.decode(latents, return_dict=False)[0], plan.device)
    return decode_s


# ------------------------------------------------------------------------------------------ main


def header(plan: Plan, args: argparse.Namespace) -> str:
    import diffusers

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    gpu = torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else "CPU (smoke run)"
    return "\n".join(
        [
            f"# GPU benchmark: one {plan.frames}-frame chunk of Wan 2.1 T2V, random weights",
            "",
            f"- **Device:** {gpu}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
            f"- **Software:** torch {torch.__version__}, diffusers {diffusers.__version__}, triton {triton_version}",
            f"- **Date:** {date.today().isoformat()}; command: `{' '.join(sys.argv)}`",
            f"- **Settings:** transformers in {str(plan.dtype).removeprefix('torch.')}, VAE in "
            f"{str(plan.vae_dtype).removeprefix('torch.')}, up to {args.steps} timed step(s), budget {args.budget_s:.0f} s",
            "- Columns: "
            + "; ".join(
                f"{r.name} = model {r.native[0]}x{r.native[1]}, output {r.output[0]}x{r.output[1]}"
                for r in plan.resolutions
            ),
        ]
    )


def run(plan: Plan, args: argparse.Namespace, budget: Budget) -> tuple[str, bool]:
    """Every stage that fits the budget; returns the markdown report and whether none failed."""
    from diffusers import AutoencoderKLWan

    from kernels.backend import triton_installed

    table = Table([r.name for r in plan.resolutions])
    triton_ok = triton_installed() and (plan.device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1")
    # 1. Model-independent stages: VAE decode, copies, kernels, encode (cheap, so first).
    vae = build_random(AutoencoderKLWan, plan.vae_config, plan.device, plan.vae_dtype)
    vae_seconds: dict[str, float] = {}
    previous_s = None
    for index, res in enumerate(plan.resolutions):
        if previous_s is not None:
            prev = plan.resolutions[index - 1]
            estimate = previous_s * (res.output[0] * res.output[1]) / (prev.output[0] * prev.output[1])
            if not budget.fits(estimate):
                table.skip(
                    f"VAE, copies, kernels and encode at {res.name}",
                    f"estimated {estimate:.0f} s > {budget.left():.0f} s left",
                    list(table.rows),
                    res.name,
                )
                continue
        start = time.monotonic()
        try:
            vae_seconds[res.name] = bench_vae(plan, vae, res, table)
            free(plan.device)
            bench_kernels(plan, res, table, triton_ok)
        except Exception as exc:  # noqa: BLE001 -- record it, go on with the next stage
            table.fail(f"VAE, copies, kernels and encode at {res.name}", exc)
        free(plan.device)
        previous_s = time.monotonic() - start
        print(f"VAE, copies, kernels and encode at {res.name}: {previous_s:.1f} s", flush=True)
    del vae
    free(plan.device)
    # 2. The transformers, smallest first; the throughput measured recalibrates the estimates.
    state: dict[str, Any] = {"flops_per_s": PRIOR_FLOPS_PER_S, "vae_s": vae_seconds}
    for name in plan.models:
        bench_transformer(plan, name, table, budget, state, args.steps)
    # 3. The speed options of a profile, one at a time (--speed).
    if args.speed is not None:
        model_id, options = read_speed_options(args.speed, args.speed_model)
        print(f"speed options of {model_id}: {options}", flush=True)
        bench_speed(plan, options, table, budget, state, args.steps)
    # TODO(farm): wire this row: render the same chunk through the farm (Ray worker, stitcher,
    # encoder) and subtract the bare pipeline's time. Left to the farm's owner.
    for res in plan.resolutions:
        table.set(FARM_OVERHEAD_ROW, res.name, "TODO (to be wired by the farm's owner)")
    notes = ["", "**Skipped or capped:** " + ("; ".join(table.skipped) if table.skipped else "nothing")]
    if table.errors:
        notes += ["", "**Errors:** " + "; ".join(table.errors)]
    return "\n".join([header(plan, args), "", table.markdown(), *notes, ""]), not table.errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument("--steps", type=int, default=2, help="timed denoising steps per model and resolution (max)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="time budget for the measurements")
    parser.add_argument("--vae-dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument(
        "--speed", type=Path, help="a profiles YAML: time each option of its speed: section (docs/profiles.md)"
    )
    parser.add_argument("--speed-model", help="the profile of --speed to read (default: the first with speed:)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="build the real configs on the meta device, print counts")
    mode.add_argument("--smoke", action="store_true", help="tiny models on the CPU (checks the script, not a GPU)")
    args = parser.parse_args(argv)
    budget = Budget(args.budget_s)  # from here: diffusers' import and CUDA's start count too
    if args.steps < 1:
        parser.error(f"--steps must be at least 1 (received: {args.steps})")

    if args.dry_run:
        return dry_run()
    if args.smoke:
        # The Triton twins then run in Triton's CPU interpreter (set before kernels load them).
        os.environ.setdefault("TRITON_INTERPRET", "1")
        plan = smoke_plan()
    elif not torch.cuda.is_available():
        message = "no CUDA GPU: skipped (benchmarks/gpu.py needs one; --dry-run and --smoke run on the CPU)"
        print(message)
        if args.out:
            args.out.write_text(message + "\n")
        return 0
    else:
        plan = real_plan(getattr(torch, args.vae_dtype))
    report, ok = run(plan, args, budget)
    print("\n" + report)
    if args.out:
        args.out.write_text(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
