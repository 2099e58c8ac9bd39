"""The ``farm`` command line.

    farm render TASK.json [--out DIR] [--workers N] [--ray-address ADDR] ...

renders a seed-shaped ``videoInference`` task (or a JSON array of them) on an embedded local Ray
(or an existing cluster) and prints each result's file, seed and timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from farm.constants import OUTPUT_FPS
from farm.errors import FarmError, TaskValidationError
from farm.task import VideoInferenceTask

EXIT_INVALID = 2
EXIT_FAILED = 1


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="farm", description="Open render farm for SkyReels-V4-style video tasks.")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser(
        "render",
        help="render a task file end to end on Ray",
        description=(
            "Render a videoInference task (a JSON object, or an array of them, in the seed API's "
            "shape) into video files. Chunks of every result run in parallel on video worker "
            "actors; audio renders concurrently on a dedicated audio worker. Invalid tasks exit "
            f"with status {EXIT_INVALID} and list every violation with its field path."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    render.add_argument("task", help="task JSON file ('-' reads standard input)")
    render.add_argument("--out", default="out", help="directory the result files are written to")
    render.add_argument("--workers", type=int, default=2, help="video worker actors (one chunk at a time each)")
    render.add_argument("--ray-address", default=None,
                        help="join this Ray cluster (e.g. ray://head:10001 or auto); default: embedded local Ray")
    render.add_argument("--gpus-per-worker", type=float, default=0.0,
                        help="GPUs each video worker asks Ray for (1 on GPU nodes)")
    render.add_argument("--torch-threads", type=int, default=1, help="torch threads inside each worker")
    render.add_argument("--driver-threads", type=int, default=1,
                        help="torch threads of this process (stitch and resize); the encoder has its own")
    render.add_argument("--seed", type=int, default=None,
                        help="base seed (result i uses seed+i); overrides the task's seed; default random")
    render.add_argument("--weights", default=None,
                        help="render with real Wan 2.1 weights (a diffusers folder or hub id) instead of the "
                             "embedded tiny models, e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    render.add_argument("--audio-weights", default=None,
                        help="Stable Audio weights (folder or hub id) used with --weights; "
                             "without it, --weights renders no audio model")
    render.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                        help="dtype for --weights (default: bfloat16 on GPU, float32 on CPU)")
    render.add_argument("--no-progress", action="store_true", help="do not draw progress bars")
    return parser


def _load_tasks(source: str) -> list[VideoInferenceTask]:
    from farm.validation import parse_task
    from models.profiles import known_models

    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    raw = json.loads(text)
    items = raw if isinstance(raw, list) else [raw]
    tasks, errors = [], []
    for position, item in enumerate(items):
        try:
            tasks.append(parse_task(item, known_models=known_models()))
        except TaskValidationError as exc:
            errors.append((position, exc))
    if errors:
        for position, exc in errors:
            label = f"task {exc.task_uuid}" if exc.task_uuid else f"task #{position}"
            print(f"error: {label} is invalid:", file=sys.stderr)
            for violation in exc.violations:
                print(f"  {violation}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID)
    return tasks


class _Progress:
    """Two tqdm bars: chunks rendered and frames encoded, over every result of a task."""

    def __init__(self, task: VideoInferenceTask, chunks_per_result: int, enabled: bool):
        from tqdm import tqdm

        self._enabled = enabled
        if not enabled:
            return
        n = task.number_results
        self._chunks = tqdm(total=chunks_per_result * n, desc="render chunks", unit="chunk", position=0)
        self._frames = tqdm(total=task.num_frames * n, desc="encode frames", unit="frame", position=1)
        self._encoded = [0] * n

    def __call__(self, event) -> None:
        if not self._enabled:
            return
        if event.stage == "chunk":
            self._chunks.update(1)
        elif event.stage == "encode":
            self._frames.update(event.done - self._encoded[event.result_index])
            self._encoded[event.result_index] = event.done

    def close(self) -> None:
        if self._enabled:
            self._chunks.close()
            self._frames.close()


def _render(args: argparse.Namespace) -> int:
    tasks = _load_tasks(args.task)
    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return EXIT_INVALID

    from farm.cluster import connect_ray
    from farm.planner import plan_clip
    from farm.pool import WorkerConfig, WorkerPool
    from farm.render import render_task
    from models.profiles import get_profile

    if args.weights:
        from models.profiles import register_profile, wan_profile

        for model_id in {task.model for task in tasks}:
            register_profile(
                wan_profile(model_id, weights=args.weights, audio_weights=args.audio_weights, dtype=args.dtype),
                replace=True,
            )

    import torch

    # The driver only blends and resizes (uint8, vectorised); more torch threads here spin in
    # OpenMP and take cores from the workers and the encoder (measured: -25% chunk throughput).
    torch.set_num_threads(args.driver_threads)
    started = time.perf_counter()
    connect_ray(args.ray_address, min_cpus=args.workers + 1)
    pools: dict[str, WorkerPool] = {}
    status = 0
    try:
        for task in tasks:
            profile = get_profile(task.model)
            if task.model not in pools:
                pools[task.model] = WorkerPool(profile, WorkerConfig(
                    video_workers=args.workers,
                    gpus_per_worker=args.gpus_per_worker,
                    torch_threads=args.torch_threads,
                    audio_worker=profile.audio_factory is not None,
                ))
                # No wait for the models to load: chunks queue on the actors and start as soon as
                # each one is up, and the audio model loads while the first chunks render.
                audio = " + 1 audio" if pools[task.model].audio_worker is not None else ""
                print(f"starting {args.workers} video{audio} worker(s) for {profile.model_id} "
                      f"(Ray up in {time.perf_counter() - started:.1f}s)", file=sys.stderr)
            plan = plan_clip(task.num_frames, window_frames=profile.window_frames,
                             overlap_frames=profile.overlap_frames, temporal_stride=profile.temporal_stride)
            progress = _Progress(task, len(plan.chunks), enabled=not args.no_progress)
            try:
                results = render_task(task, pools[task.model], args.out, base_seed=args.seed, on_event=progress)
            except FarmError as exc:
                progress.close()
                print(f"error: task {task.task_uuid} failed: {exc}", file=sys.stderr)
                status = EXIT_FAILED
                continue
            progress.close()
            for r in results:
                t = r.timings
                print(
                    f"{r.path}  seed={r.seed}  {r.num_frames} frames {r.width}x{r.height} @{OUTPUT_FPS}fps "
                    f"{r.output_format}{' +audio' if r.has_audio else ''}  "
                    f"wall {t.wall_s:.1f}s (model {t.model_s:.1f}s over {r.chunks} chunks, "
                    f"audio {t.audio_s:.1f}s, stitch+encode {t.encode_s:.1f}s)"
                )
    finally:
        for pool in pools.values():
            pool.shutdown()
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``farm`` console script."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "render":
            return _render(args)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except json.JSONDecodeError as exc:
        print(f"error: {args.task} is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
