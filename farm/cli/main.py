"""The ``farm`` command line.

    farm render TASK.json [--out DIR] [--executor auto|in-process|ray] [--workers N] [--ray-address ADDR] ...
    farm serve [--grpc-port 50051] [--http-port 8080] [--data-dir DIR] [--config FILE] [--ray-address ADDR]
    farm models [--profiles PATH]
    farm submit TASK.json [--server HOST:PORT] [--wait]
    farm status UUID [--server HOST:PORT]
    farm cancel UUID [--server HOST:PORT]
    farm seams FILE (--chunks WINDOW,OVERLAP | --seams A-B,...) [--json]

``render`` renders a seed-shaped ``videoInference`` task (or a JSON array of them) in this
process (``--executor in-process``, the default on one machine), or on an embedded local Ray or an
existing cluster (``--executor ray``), and prints each result's file, seed and timing. ``serve`` runs
the gateway (gRPC + JSON/REST); ``submit``/``status``/``cancel`` are its gRPC client. ``models``
lists the configured model profiles; ``render``, ``serve`` and ``models`` take ``--profiles PATH``
(a YAML file or a directory of them, docs/profiles.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from farm.domain.constants import OUTPUT_FPS
from farm.domain.errors import FarmError, TaskValidationError
from farm.domain.task import VideoInferenceTask

EXIT_INVALID = 2
EXIT_FAILED = 1
#: 128 + SIGINT, as a shell reports a command stopped by Ctrl-C.
EXIT_INTERRUPTED = 130

#: ``farm render --workers`` defaults: threads of one process share its cores (and the GIL for
#: the model code's Python), worker actors are processes of their own.
IN_PROCESS_WORKERS = 1
RAY_WORKERS = 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="farm", description="Open render farm for SkyReels-V4-style video tasks.")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser(
        "render",
        help="render a task file end to end on Ray",
        description=(
            "Render a videoInference task (a JSON object, or an array of them, in the seed API's "
            "shape) into video files. Chunks of every result run on video workers (threads of this "
            "process, or Ray actors: --executor); audio renders concurrently on a dedicated audio "
            "worker. Invalid tasks exit "
            f"with status {EXIT_INVALID} and list every violation with its field path."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    render.add_argument("task", help="task JSON file ('-' reads standard input)")
    render.add_argument("--out", default="out", help="directory the result files are written to")
    render.add_argument(
        "--executor",
        choices=["auto", "in-process", "ray"],
        default="auto",
        help="where chunks render: 'in-process' (threads of this command, no Ray: the fastest start "
        "on one machine), 'ray' (worker actors on an embedded local Ray or --ray-address); 'auto' "
        "takes Ray for --ray-address / RAY_ADDRESS or --gpus-per-worker, else in-process",
    )
    render.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"video workers, one chunk at a time each [in-process: {IN_PROCESS_WORKERS}, ray: {RAY_WORKERS}]",
    )
    render.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster (e.g. ray://head:10001 or auto); default: embedded local Ray",
    )
    render.add_argument(
        "--gpus-per-worker", type=float, default=0.0, help="GPUs each video worker asks Ray for (1 on GPU nodes)"
    )
    render.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch threads of each worker [ray: 1 per actor; in-process: the cores but one (the "
        "encoder's), shared by the workers]",
    )
    render.add_argument(
        "--driver-threads",
        type=int,
        default=1,
        help="torch threads of this process (stitch and resize); the encoder has its own",
    )
    render.add_argument(
        "--seed",
        type=int,
        default=None,
        help="base seed (result i uses seed+i); overrides the task's seed; default random",
    )
    render.add_argument(
        "--weights",
        default=None,
        help="render with real Wan 2.1 weights (a diffusers folder or hub id) instead of the "
        "embedded tiny models, e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    )
    render.add_argument(
        "--audio-weights",
        default=None,
        help="Stable Audio weights (folder or hub id) used with --weights; "
        "without it, --weights renders no audio model",
    )
    render.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "float16", "bfloat16"],
        help="dtype for --weights (default: bfloat16 on GPU, float32 on CPU)",
    )
    render.add_argument("--profiles", default=None, help=PROFILES_HELP)
    render.add_argument("--no-progress", action="store_true", help="do not draw progress bars")
    _add_gateway_commands(commands)
    models = commands.add_parser(
        "models",
        help="list the configured model profiles",
        description="List the model profiles the farm answers to: the embedded default and those of "
        "--profiles (docs/profiles.md), with pipeline, weights, window/overlap, native size and audio.",
    )
    models.add_argument("--profiles", default=None, help=PROFILES_HELP)
    # Every word after "seams" goes to farm.io.seams, which parses them (its --help lists the
    # options) and is imported only when run: no prefix character, so no word reads as an option.
    seams = commands.add_parser(
        "seams",
        add_help=False,
        prefix_chars="\0",
        help="measure how visible a clip's chunk seams are (seam jump ratio, contrast dip, cuts)",
    )
    seams.add_argument("argv", nargs="*")
    return parser


DEFAULT_SERVER = "127.0.0.1:50051"

PROFILES_HELP = (
    "YAML model profiles, a file or a directory of *.yaml (docs/profiles.md; e.g. profiles/); "
    "registered over the embedded default before use"
)


def _add_gateway_commands(commands) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    serve = commands.add_parser(
        "serve",
        help="run the gateway (gRPC + JSON/REST) over a task manager on Ray",
        description="Serve farm.v1.VideoInference over gRPC and the seed platform's JSON API over HTTP "
        "(POST /v1, GET /v1/videos/{uuid}, /metrics, /healthz). Task records persist in "
        "SQLite under --data-dir. SIGTERM/SIGINT shut down gracefully.",
    )
    serve.add_argument("--grpc-port", type=int, default=None, help="gRPC port (0: any free port) [50051]")
    serve.add_argument("--http-port", type=int, default=None, help="HTTP port (0: any free port) [8080]")
    serve.add_argument("--host", default=None, help="address to bind [0.0.0.0]")
    serve.add_argument("--data-dir", default=None, help="task database, artifacts and assets [farm-data]")
    serve.add_argument(
        "--config",
        default=None,
        help="YAML file: api_keys, allow_urls, max_queue, price_per_gpu_second, public_base_url, ...",
    )
    serve.add_argument("--ray-address", default=None, help="join this Ray cluster; default: embedded local Ray")
    serve.add_argument("--workers", type=int, default=None, help="video worker actors per model [2]")
    serve.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve gRPC and HTTP over TLS")
    serve.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert")
    serve.add_argument("--profiles", default=None, help=PROFILES_HELP + " [config key 'profiles']")
    serve.add_argument(
        "--fresh-store",
        action="store_true",
        help="begin an empty task store when DATA_DIR/tasks.db is missing, empty or corrupt (the old file is "
        "moved aside to tasks.db.corrupt-<time>); without it such a store stops the gateway at start",
    )
    for name, helptext in (
        ("submit", "submit a task file to a gateway"),
        ("status", "print a task's results"),
        ("cancel", "cancel a task"),
    ):
        command = commands.add_parser(name, help=helptext, formatter_class=fmt)
        if name == "submit":
            command.add_argument("task", help="task JSON file (an object or an array; '-' reads standard input)")
            command.add_argument(
                "--wait",
                action="store_true",
                help="stream progress (Watch) until every task ends, then print the results",
            )
            command.add_argument("--no-progress", action="store_true", help="with --wait, print no progress bar")
        else:
            command.add_argument("uuid", help="the taskUUID")
        command.add_argument("--server", default=DEFAULT_SERVER, help="gateway gRPC address HOST:PORT")
        command.add_argument(
            "--tls-ca",
            default=None,
            help="connect with TLS, trusting this PEM CA bundle ('system' for the system roots)",
        )
        command.add_argument(
            "--api-key", default=None, help="API key sent as 'authorization: Bearer <key>' (default: $FARM_API_KEY)"
        )


def _load_tasks(source: str) -> list[VideoInferenceTask]:
    from farm.domain.validation import parse_task
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
    """Two tqdm bars: chunks rendered (with the denoising steps of the chunks in flight as a
    percentage) and frames encoded, over every result of a task."""

    def __init__(self, task: VideoInferenceTask, chunks_per_result: int, enabled: bool):
        from tqdm import tqdm

        self._enabled = enabled
        if not enabled:
            return
        n = task.number_results
        self._chunks = tqdm(total=chunks_per_result * n, desc="render chunks", unit="chunk", position=0)
        self._frames = tqdm(total=task.num_frames * n, desc="encode frames", unit="frame", position=1)
        self._encoded = [0] * n
        #: Denoising steps done per result (the chunk bar's fraction within chunks in flight).
        self._steps: dict[int, tuple[int, int]] = {}

    def __call__(self, event) -> None:
        if not self._enabled:
            return
        if event.stage == "denoise":
            self._steps[event.result_index] = (event.done, event.total)
            done = sum(d for d, _ in self._steps.values())
            total = sum(t for _, t in self._steps.values())
            self._chunks.set_postfix_str(f"denoising {100 * done / max(total, 1):.0f}%", refresh=True)
        elif event.stage == "chunk":
            self._chunks.update(1)
        elif event.stage == "encode":
            self._frames.update(event.done - self._encoded[event.result_index])
            self._encoded[event.result_index] = event.done

    def close(self) -> None:
        if self._enabled:
            self._chunks.close()
            self._frames.close()


def _register_profiles(path: str | None) -> bool:
    """Register the profiles of ``path`` (if given); False (after printing why) when they are invalid."""
    if not path:
        return True
    from models.profile_config import ProfileConfigError, register_profiles

    try:
        register_profiles(path)
    except ProfileConfigError as exc:
        print(f"error: invalid profiles: {exc}", file=sys.stderr)
        return False
    return True


def _render(args: argparse.Namespace) -> int:
    # Before the tasks are read: their model ids are validated against the registered profiles.
    if not _register_profiles(args.profiles):
        return EXIT_INVALID
    tasks = _load_tasks(args.task)
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return EXIT_INVALID
    executor = _choose_executor(args)
    if executor is None:
        return EXIT_INVALID
    args.executor = executor
    if args.workers is None:
        args.workers = IN_PROCESS_WORKERS if executor == "in-process" else RAY_WORKERS
    if args.torch_threads is None:
        args.torch_threads = max(1, (os.cpu_count() or 1) - 1) if executor == "in-process" else 1
    if args.torch_threads < 1:
        print(f"error: --torch-threads must be >= 1, got {args.torch_threads}", file=sys.stderr)
        return EXIT_INVALID
    started = time.perf_counter()
    if executor == "in-process":
        return _interruptible(_render_tasks, args, tasks, started)

    import ray

    from farm.workers.cluster import connect_ray, stop_ray

    # Ray that was up before (a caller of main() in-process) is the caller's to stop.
    own_ray = not ray.is_initialized()
    connect_ray(args.ray_address, min_cpus=args.workers + 1)
    try:
        return _interruptible(_render_tasks, args, tasks, started)
    finally:
        # Every file is final here: leave at once (farm.workers.cluster.stop_ray), so the command
        # returns with the files and no Ray process outlives it.
        sys.stdout.flush()
        if own_ray:
            stop_ray()


def _interruptible(render, *args) -> int:
    """``render(*args)``; Ctrl-C stops it at the next denoising step: exit status 130, no partial file."""
    try:
        return render(*args)
    except KeyboardInterrupt:
        print("\ninterrupted: the render was stopped and its unfinished files removed", file=sys.stderr)
        return EXIT_INTERRUPTED


def _choose_executor(args: argparse.Namespace) -> str | None:
    """``args.executor`` with ``auto`` decided; None (after printing why) for options that clash."""
    if args.executor == "in-process":
        if args.ray_address:
            print("error: --ray-address needs --executor ray (or auto)", file=sys.stderr)
            return None
        return "in-process"
    if args.executor == "ray":
        return "ray"
    cluster = args.ray_address or os.environ.get("RAY_ADDRESS")
    return "ray" if cluster or args.gpus_per_worker > 0 else "in-process"


def _render_tasks(args: argparse.Namespace, tasks: list[VideoInferenceTask], started: float) -> int:
    """Render ``tasks`` on pools of workers started for them (Ray is up, or in-process); the exit status."""
    import torch

    from farm.render.conditioning import extend_lead_frames
    from farm.scheduler.local import plan_task, render_task
    from farm.workers.pool import InProcessPool, WorkerConfig, WorkerPool
    from models.profiles import get_profile

    if args.weights:
        from models.profiles import register_profile, wan_profile

        for model_id in {task.model for task in tasks}:
            register_profile(
                wan_profile(model_id, weights=args.weights, audio_weights=args.audio_weights, dtype=args.dtype),
                replace=True,
            )

    in_process = args.executor == "in-process"
    # The driver only blends and resizes (uint8, vectorised); more torch threads here spin in
    # OpenMP and take cores from the workers and the encoder (measured: -25% chunk throughput).
    # In-process the workers share this process: they set the torch threads (--torch-threads).
    if not in_process:
        torch.set_num_threads(args.driver_threads)
    pools: dict[str, WorkerPool | InProcessPool] = {}
    status = 0
    try:
        for task in tasks:
            profile = get_profile(task.model)
            if task.model not in pools:
                config = WorkerConfig(
                    video_workers=args.workers,
                    gpus_per_worker=args.gpus_per_worker,
                    torch_threads=args.torch_threads,
                    # Start only what the work needs: no audio model for audio-less tasks.
                    audio_worker=profile.audio_factory is not None
                    and any(t.settings.audio and t.model == task.model for t in tasks),
                )
                audio = " + 1 audio" if config.audio_worker else ""
                if in_process:
                    # Workers are built on threads of this process as the first chunks wait.
                    pools[task.model] = InProcessPool(profile, config)
                    where = "in this process, no Ray"
                else:
                    # No wait for the models to load: chunks queue on the actors and start as soon
                    # as each one is up, and the audio model loads while the first chunks render.
                    pools[task.model] = WorkerPool(profile, config)
                    where = f"Ray up in {time.perf_counter() - started:.1f}s"
                print(
                    f"starting {args.workers} video{audio} worker(s) for {profile.model_id} ({where})",
                    file=sys.stderr,
                )
            # An extended video's tail leads the grid (farm.render.conditioning): count its chunks too.
            extends = any(v.type == "extend" for v in task.inputs.reference_videos)
            plan = plan_task(task, profile, lead_frames=extend_lead_frames(profile) if extends else 0)
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
                if r.error is not None:
                    print(
                        f"error: result {r.index} of task {task.task_uuid} (seed {r.seed}): {r.error}", file=sys.stderr
                    )
                    status = EXIT_FAILED
                    continue
                if r.extended_prompt:
                    print(f"extended prompt: {r.extended_prompt}", file=sys.stderr)
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


def run_loop(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run the coroutine ``main`` to its end on ``event_loop`` ("uvloop" or "asyncio")."""
    import asyncio
    import logging

    if event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # not installed (a platform without a wheel): the standard loop serves too
            logging.getLogger(__name__).warning("event_loop uvloop: uvloop is not installed; using asyncio")
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def _serve(args: argparse.Namespace) -> int:
    import logging

    from farm.gateway.server import GatewayConfig, serve

    flags = {
        "grpc_port": args.grpc_port,
        "http_port": args.http_port,
        "host": args.host,
        "data_dir": args.data_dir,
        "ray_address": args.ray_address,
        "workers": args.workers,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "profiles": args.profiles,
    }
    try:
        if args.config:
            config = GatewayConfig.from_file(args.config, **flags)
        else:
            config = GatewayConfig(**{k: v for k, v in flags.items() if v is not None})
    except (ValueError, TypeError) as exc:
        print(f"error: bad configuration: {exc}", file=sys.stderr)
        return EXIT_INVALID
    # Checked here so a bad file exits with status 2 and its message; the gateway registers them.
    if config.profiles:
        from models.profile_config import ProfileConfigError, load_profiles

        try:
            load_profiles(config.profiles)
        except ProfileConfigError as exc:
            print(f"error: invalid profiles: {exc}", file=sys.stderr)
            return EXIT_INVALID
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from farm.scheduler.store import StoreError

    try:
        run_loop(serve(config, fresh_store=args.fresh_store), config.event_loop)
    except StoreError as exc:
        # Checked before Ray starts: the real cause, at once, instead of a timeout later.
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _profile_rows(profile) -> list[tuple[str, str]]:
    """What ``farm models`` prints about one profile, as (label, value) pairs."""
    extra = profile.extra
    if extra.get("tiny"):
        pipeline, weights = "WanVACEPipeline", f"embedded tiny random weights (seed {extra.get('seed')})"
        audio = "StableAudioPipeline, embedded tiny random weights"
    else:
        pipeline, weights = extra.get("pipeline", "WanPipeline"), extra.get("weights", "?")
        if extra.get("dtype"):
            weights += f" ({extra['dtype']})"
        summary = extra.get("audio")
        if summary:
            audio = f"{summary['pipeline']} {summary['weights']} ({summary['steps']} steps)"
        elif extra.get("audio_weights"):
            audio = f"StableAudioPipeline {extra['audio_weights']}"
        else:
            audio = "none"
    if extra.get("native_width"):
        native = f"{extra['native_width']}x{extra['native_height']}"
    else:
        native = f"area {profile.native_area} px"
    w16, h16 = profile.native_size(16, 9)
    native += f" (16:9 renders at {w16}x{h16})"
    if extra.get("fps"):
        native += f", {extra['fps']:g} fps"
    rows = [
        ("description", profile.description),
        ("pipeline", pipeline),
        ("weights", weights),
        ("window", f"{profile.window_frames} frames, overlap {profile.overlap_frames}"),
        ("native", native),
        ("steps", f"{profile.num_inference_steps}, guidance {profile.guidance_scale:g}"),
        ("audio", audio),
        (
            "inputs",
            "frame images, reference images/video, masks"
            if pipeline == "WanVACEPipeline"
            else "none (text-to-video only)",
        ),
        ("chunks", extra.get("chunk_mode", "parallel")),
        ("extender", _extender_row(profile)),
        ("safety", _safety_row(profile)),
    ]
    if extra.get("source"):
        rows.append(("source", extra["source"]))
    return rows


def _extender_row(profile) -> str:
    summary = profile.extra.get("prompt_extender")
    if profile.prompt_extender_factory is None:
        return "none"
    if isinstance(summary, dict) and summary.get("model"):
        return f"{summary['model']} (chat model)"
    return "template"


def _safety_row(profile) -> str:
    summary = profile.extra.get("safety_checker")
    if profile.safety_factory is None:
        return "none"
    if isinstance(summary, dict) and summary.get("model"):
        return (
            f"{summary['model']} (CLIP), threshold {summary.get('threshold')}: {', '.join(summary.get('concepts', []))}"
        )
    return "embedded tiny CLIP (random weights: never flags)"


def _models(args: argparse.Namespace) -> int:
    from models.profiles import get_profile, known_models

    if not _register_profiles(args.profiles):
        return EXIT_INVALID
    from farm.domain.constants import DEFAULT_MODEL

    # The seed's model first (what a task without profiles renders with), then the others.
    for model_id in sorted(known_models(), key=lambda m: (m != DEFAULT_MODEL, m)):
        print(model_id)
        for label, value in _profile_rows(get_profile(model_id)):
            print(f"  {label + ':':<12} {value}")
    return 0


def _client(args: argparse.Namespace):
    """A gRPC stub for ``--server`` and the call metadata carrying the API key."""
    import os

    import grpc

    from farm.v1 import farm_pb2_grpc

    if args.tls_ca:
        roots = None if args.tls_ca == "system" else Path(args.tls_ca).read_bytes()
        channel = grpc.secure_channel(args.server, grpc.ssl_channel_credentials(root_certificates=roots))
    else:
        channel = grpc.insecure_channel(args.server)
    key = args.api_key or os.environ.get("FARM_API_KEY")
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    return channel, farm_pb2_grpc.VideoInferenceStub(channel), metadata


def _print_rpc_error(error) -> int:
    """Print a failed call with its field violations; exit status 2 for invalid input, else 1."""
    import grpc
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                print(f"  {violation.description}", file=sys.stderr)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            print(f"  retry after {retry.retry_delay.ToTimedelta().total_seconds():g}s", file=sys.stderr)
    return (
        EXIT_INVALID if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND) else EXIT_FAILED
    )


def _print_results(response) -> int:
    """One line per result; returns 1 when any result failed."""
    failed = 0
    for r in response.data:
        parts = [r.task_uuid, f"#{r.result_index}", r.state or r.status]
        if r.state in ("queued", "running"):
            parts.append(f"{r.progress:.0%}")
        if r.video_url:
            parts.append(r.video_url)
        if r.HasField("seed"):
            parts.append(f"seed={r.seed}")
        if r.HasField("cost"):
            parts.append(f"cost=${r.cost:.6f}")
        print("  ".join(parts))
    for e in response.errors:
        failed = 1
        print(f"error: {e.task_uuid} {e.code}: {e.message}", file=sys.stderr)
    return failed


def _watch(stub, metadata, task_uuid: str, show: bool) -> None:
    """Follow Watch until the task ends, with one tqdm bar over chunks (the denoising steps of
    the chunks in flight as a percentage, then the stage)."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=task_uuid[:8], unit="chunk", disable=not show)
    from farm.v1 import farm_pb2

    chunks: dict[int, tuple[int, int]] = {}
    steps: dict[int, tuple[float, float]] = {}
    try:
        for event in stub.Watch(farm_pb2.WatchRequest(task_uuid=task_uuid), metadata=metadata):
            if event.kind == "queued" and event.HasField("queue_position"):
                bar.set_postfix_str(f"queued #{event.queue_position}")
            elif event.kind == "steps":
                extra = dict(event.extra.items())
                steps[event.result_index] = (extra.get("stepsDone", 0.0), extra.get("stepsTotal", 0.0))
                done, total = sum(d for d, _ in steps.values()), sum(t for _, t in steps.values())
                bar.set_postfix_str(f"denoising {100 * done / max(total, 1):.0f}%", refresh=True)
            elif event.kind in ("chunks", "running") and event.chunks_total:
                chunks[event.result_index] = (event.chunks_done, event.chunks_total)
                done, total = sum(d for d, _ in chunks.values()), sum(t for _, t in chunks.values())
                bar.total = total
                bar.n = done
                bar.set_postfix_str("rendering")
                bar.refresh()
            elif event.kind in ("encoding", "result", "delivered", "error", "cancelled"):
                bar.set_postfix_str(event.kind)
    finally:
        bar.close()


def _submit(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from farm.v1 import farm_pb2

    text = sys.stdin.read() if args.task == "-" else Path(args.task).read_text()
    raw = json.loads(text)
    items = raw if isinstance(raw, list) else [raw]
    try:
        tasks = [json_format.ParseDict(item, farm_pb2.VideoInferenceTask()) for item in items]
    except json_format.ParseError as exc:
        print(f"error: {args.task}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    channel, stub, metadata = _client(args)
    status = 0
    with channel:
        try:
            ack = stub.Submit(farm_pb2.SubmitRequest(tasks=tasks), metadata=metadata)
        except grpc.RpcError as error:
            return _print_rpc_error(error)
        for a in ack.data:
            print(f"accepted {a.task_uuid}")
        for e in ack.errors:
            print(f"error: {e.task_uuid} {e.parameter or '-'}: {e.code}: {e.message}", file=sys.stderr)
            status = EXIT_INVALID
        if not args.wait:
            return status
        for a in ack.data:
            try:
                _watch(stub, metadata, a.task_uuid, show=not args.no_progress)
                response = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=a.task_uuid), metadata=metadata)
            except grpc.RpcError as error:
                status = max(status, _print_rpc_error(error))
                continue
            status = max(status, _print_results(response))
    return status


def _task_command(args: argparse.Namespace) -> int:
    import grpc

    from farm.v1 import farm_pb2

    channel, stub, metadata = _client(args)
    with channel:
        try:
            if args.command == "status":
                response = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=args.uuid), metadata=metadata)
            else:
                response = stub.Cancel(farm_pb2.CancelRequest(task_uuid=args.uuid), metadata=metadata)
        except grpc.RpcError as error:
            return _print_rpc_error(error)
    result = _print_results(response)
    # A cancelled task answers its results with taskCancelled errors: that is what was asked.
    return 0 if args.command == "cancel" else result


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``farm`` console script."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "render":
            return _render(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "models":
            return _models(args)
        if args.command == "submit":
            return _submit(args)
        if args.command in ("status", "cancel"):
            return _task_command(args)
        if args.command == "seams":
            from farm.io.seams import main as seams_main

            return seams_main(args.argv)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except json.JSONDecodeError as exc:
        print(f"error: {args.task} is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
