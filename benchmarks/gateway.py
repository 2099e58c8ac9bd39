"""Gateway admission and lookup: Submit + GetResponse at 32 concurrent clients on loopback.

    .venv/bin/python benchmarks/gateway.py [--clients 32] [--seconds 15] [--warmup 3] [--modes rendering,paused]
        [--loops asyncio,uvloop]

Contenders, each in its own process, driven by the same load generator in another process, once
per event loop in ``--loops`` (the gateway's ``event_loop`` config key; its default is uvloop):

- ``bare``: a ``grpc.aio`` server implementing ``farm.v1.VideoInference`` Submit and GetResponse
  with constant answers (the ceiling of grpc.aio in Python on this machine, on that loop);
- ``farm serve`` (the real gateway: SQLite under a temporary --data-dir, embedded Ray, one worker,
  ``max_queue`` 1,000,000 from a YAML config so nothing is refused). ``farm serve`` has no switch
  that stops it rendering, so its runner renders the submitted tasks (256x144, 3 s, no audio) in
  the background, competing for the cores with the RPCs. Mode ``rendering`` measures it like
  that. Mode ``paused`` first lets the render start (the worker pool is up and a task is running),
  then SIGSTOPs the ``ray::VideoWorker`` actor processes for the measurement (SIGCONT after), so
  the gateway only admits and looks up: the runner thread sits blocked on Ray.

Each of the ``--clients`` clients has its own channel (connection) and loops: Submit one fresh
task (new UUID v4), then GetResponse for it. Latencies are per RPC; throughput is RPCs per second
(Submit and GetResponse both count) over the measured window, after ``--warmup`` seconds. Target
(issue 3): gateway >= 0.5x the bare servicer's throughput, p99 < 25 ms.

Internal subcommands: ``bare`` (serve the constant servicer, print its port) and ``load`` (the load
generator, prints JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine  # noqa: E402 - after the sys.path line that makes the repo importable
from farm.cli.main import run_loop  # noqa: E402 - after the sys.path line that makes the repo importable
from tests.serving import serve_command  # noqa: E402 - after the sys.path line that makes the repo importable

SMALL_TASK = {
    "taskType": "videoInference",
    "model": "skywork:skyreels@v4",
    "positivePrompt": "A lighthouse on a cliff at dusk, waves crashing, gulls crying",
    "duration": 3,
    "width": 256,
    "height": 144,
    "outputFormat": "MP4",
    "settings": {"audio": False, "promptExtend": False},
}


# ---------------------------------------------------------------------------------------- bare


async def _serve_bare() -> None:
    import grpc

    from farm.v1 import farm_pb2, farm_pb2_grpc

    ack = farm_pb2.SubmitResponse(
        data=[farm_pb2.TaskAck(task_type="videoInference", task_uuid="00000000-0000-4000-8000-000000000000")]
    )
    answer = farm_pb2.TaskResponse(
        data=[
            farm_pb2.VideoResult(
                task_type="videoInference",
                task_uuid="00000000-0000-4000-8000-000000000000",
                status="processing",
                state="queued",
            )
        ]
    )

    class Constant(farm_pb2_grpc.VideoInferenceServicer):
        async def Submit(self, request, context):
            return ack

        async def GetResponse(self, request, context):
            return answer

    server = grpc.aio.server()
    farm_pb2_grpc.add_VideoInferenceServicer_to_server(Constant(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"bare servicer: gRPC on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


# ---------------------------------------------------------------------------------------- load


async def _load(target: str, clients: int, warmup: float, seconds: float, own_connections: bool = False) -> dict:
    import grpc
    from google.protobuf import json_format

    from farm.v1 import farm_pb2, farm_pb2_grpc

    template = json_format.ParseDict(dict(SMALL_TASK, taskUUID=str(uuid.uuid4())), farm_pb2.VideoInferenceTask())
    # gRPC shares one connection among channels to the same target unless each has its own
    # subchannel pool; several servers on one port (SO_REUSEPORT) each get connections only then.
    options = [("grpc.use_local_subchannel_pool", 1)] if own_connections else []
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(clients)]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), 30)
    start = time.perf_counter() + warmup
    end = start + seconds
    submit_lat: list[float] = []
    get_lat: list[float] = []
    ends: list[float] = []
    errors: dict[str, int] = {}
    last_end = [start]

    async def client(channel) -> None:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        while True:
            task = farm_pb2.VideoInferenceTask()
            task.CopyFrom(template)
            task.task_uuid = str(uuid.uuid4())
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                await stub.Submit(farm_pb2.SubmitRequest(tasks=[task]), timeout=30)
                t1 = time.perf_counter()
                await stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task.task_uuid), timeout=30)
                t2 = time.perf_counter()
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                continue
            if t0 >= start:
                submit_lat.append(t1 - t0)
                get_lat.append(t2 - t1)
                ends.append(t2 - start)
                last_end[0] = max(last_end[0], t2)

    await asyncio.gather(*(client(c) for c in channels))
    for channel in channels:
        await channel.close()
    return {"submit": submit_lat, "get": get_lat, "window_s": last_end[0] - start, "errors": errors, "ends": ends}


# ---------------------------------------------------------------------------------------- driver


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _wait_for_port(process: subprocess.Popen, pattern: str, timeout: float) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = re.search(pattern, line)
        if match:
            return int(match.group(1))
    raise SystemExit(f"server did not start (exit {process.poll()})")


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _stop(process: subprocess.Popen, timeout: float = 90) -> None:
    """SIGTERM (graceful), then SIGKILL the process group and every descendant left."""
    family = _descendants(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in family:
        try:
            child.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass
    process.wait(30)


def _run_load(target: str, args) -> dict:
    """The load generator in its own process; returns its JSON answer."""
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "load",
            "--target",
            target,
            "--clients",
            str(args.clients),
            "--warmup",
            str(args.warmup),
            "--seconds",
            str(args.seconds),
            *(["--own-connections"] if getattr(args, "own_connections", False) else []),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=args.warmup + args.seconds + 120,
    )
    if done.returncode:
        raise SystemExit(f"load generator failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def _summary(name: str, raw: dict) -> dict:
    both = raw["submit"] + raw["get"]
    window = raw["window_s"]
    # RPC/s in the first and the last 3 s of the window: does admission slow down as the queue grows?
    first = 2 * sum(1 for t in raw["ends"] if t < 3) / 3
    last = 2 * sum(1 for t in raw["ends"] if t >= window - 3) / 3
    return {
        "name": name,
        "rpcs": len(both),
        "rps": len(both) / raw["window_s"] if raw["window_s"] > 0 else 0.0,
        "p50_ms": 1e3 * _percentile(both, 0.50),
        "p99_ms": 1e3 * _percentile(both, 0.99),
        "submit_p50_ms": 1e3 * _percentile(raw["submit"], 0.50),
        "submit_p99_ms": 1e3 * _percentile(raw["submit"], 0.99),
        "get_p50_ms": 1e3 * _percentile(raw["get"], 0.50),
        "get_p99_ms": 1e3 * _percentile(raw["get"], 0.99),
        "rps_first_3s": first,
        "rps_last_3s": last,
        "errors": raw["errors"],
    }


def _bench_bare(args, event_loop: str) -> dict:
    process = subprocess.Popen(
        [sys.executable, __file__, "bare", "--event-loop", event_loop],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        port = _wait_for_port(process, r"gRPC on [\d.]+:(\d+)", 60)
        name = f"bare grpc.aio servicer (constant answers), {event_loop}"
        return dict(_summary(name, _run_load(f"127.0.0.1:{port}", args)), loop=event_loop, bare=True)
    finally:
        _stop(process)


def _pause_workers(gateway_pid: int, sig: int) -> int:
    """Send ``sig`` to the gateway's ``ray::VideoWorker`` actor processes; how many got it."""
    sent = 0
    for child in _descendants(gateway_pid):
        try:
            title = " ".join(child.cmdline())
        except Exception:  # noqa: BLE001 - gone meanwhile
            continue
        if title.startswith("ray::VideoWorker"):
            child.send_signal(sig)
            sent += 1
    return sent


def _start_render(port: int, timeout: float = 180) -> None:
    """Submit one task and wait until its first chunk is rendered (pool up, runner busy)."""
    import grpc
    from google.protobuf import json_format

    from farm.v1 import farm_pb2, farm_pb2_grpc

    task = json_format.ParseDict(dict(SMALL_TASK, taskUUID=str(uuid.uuid4())), farm_pb2.VideoInferenceTask())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        stub.Submit(farm_pb2.SubmitRequest(tasks=[task]), timeout=30)
        for event in stub.Watch(farm_pb2.WatchRequest(task_uuid=task.task_uuid), timeout=timeout):
            if event.kind == "chunks":
                return
    raise SystemExit("the render never started")


def _bench_gateway(args, mode: str, event_loop: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="farm-bench-") as tmp:
        config = Path(tmp) / "farm.yaml"
        config.write_text(f"max_queue: 1000000\nevent_loop: {event_loop}\n")
        command = [
            *serve_command(Path(tmp) / "data"),
            "--config",
            str(config),
            "--workers",
            "1",
        ]
        log = open(Path(tmp) / "serve.log", "w")
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT, start_new_session=True
        )
        profiler = None
        paused = 0
        try:
            port = _wait_for_port(process, r"gRPC on [\d.]+:(\d+)", 180)
            _start_render(port)
            if mode == "paused":
                paused = _pause_workers(process.pid, signal.SIGSTOP)
                if not paused:
                    raise SystemExit("no ray::VideoWorker process found to pause")
            if args.profile:
                out = Path(args.profile).with_suffix(f".{mode}.{event_loop}.txt")
                # Sampling starts with the measured window (after channel set-up and the warm-up).
                spy = [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "-p",
                    str(process.pid),
                    "--format",
                    "raw",
                    "-o",
                    str(out),
                    "-d",
                    str(int(args.seconds)),
                    "-r",
                    "50",
                    "--nonblocking",
                ]
                profiler = subprocess.Popen(
                    ["bash", "-c", f'sleep {args.warmup + 1:g}; exec "$@"', "spy", *spy],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            name = {
                "rendering": "farm serve (rendering in the background)",
                "paused": f"farm serve (render paused: {paused} worker(s) SIGSTOPped)",
            }[mode] + f", {event_loop}"
            summary = dict(_summary(name, _run_load(f"127.0.0.1:{port}", args)), loop=event_loop, bare=False)
            if profiler is not None:
                profiler.wait(60)
            return summary
        finally:
            if paused:
                _pause_workers(process.pid, signal.SIGCONT)
            if profiler is not None and profiler.poll() is None:
                profiler.kill()
            _stop(process)
            log.close()


def _print_table(rows: list[dict], args) -> None:
    """Each contender against the bare servicer on asyncio (the issue's yardstick) and against the
    bare servicer on its own loop (the fair one for a gateway on uvloop)."""
    print(f"machine: {machine()}; {args.clients} clients, {args.warmup:g} s warm-up, {args.seconds:g} s measured")
    print(
        f"{'contender':66} {'RPC/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'Submit p50/p99':>15} "
        f"{'Get p50/p99':>13} {'x bare':>7} {'x same':>7} {'first/last 3 s':>15}  errors"
    )
    bares = {row["loop"]: row["rps"] for row in rows if row["bare"]}
    yardstick = bares.get("asyncio", next(iter(bares.values())))
    for row in rows:
        print(
            f"{row['name']:66} {row['rps']:8.0f} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} "
            f"{row['submit_p50_ms']:7.2f}/{row['submit_p99_ms']:<7.2f} {row['get_p50_ms']:6.2f}/{row['get_p99_ms']:<6.2f} "
            f"{row['rps'] / yardstick:7.2f} {row['rps'] / bares[row['loop']]:7.2f} "
            f"{row['rps_first_3s']:7.0f}/{row['rps_last_3s']:<7.0f}  {row['errors'] or ''}"
        )
    for row in rows:
        if row["bare"]:
            continue
        ok = row["rps"] >= 0.5 * yardstick and row["p99_ms"] < 25
        fair = row["rps"] >= 0.5 * bares[row["loop"]] and row["p99_ms"] < 25
        print(
            f"target (>= 0.5x bare, p99 < 25 ms) for {row['name']}: {'met' if ok else 'MISSED'}"
            f" (against the bare servicer on {row['loop']}: {'met' if fair else 'MISSED'})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "bare", "load"])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--modes", default="rendering,paused", help="gateway modes: rendering, paused")
    parser.add_argument(
        "--profile",
        default=None,
        help="py-spy the gateway during each measurement; collapsed stacks to PREFIX.<mode>.txt",
    )
    parser.add_argument("--loops", default="asyncio,uvloop", help="event loops to run every contender on")
    parser.add_argument("--event-loop", default="asyncio", help="(bare) the servicer's event loop")
    parser.add_argument("--target", default=None, help="(load) HOST:PORT")
    parser.add_argument(
        "--own-connections",
        action="store_true",
        help="(load) one TCP connection per client (by default gRPC shares one among the channels)",
    )
    args = parser.parse_args(argv)
    if args.role == "bare":
        run_loop(_serve_bare(), args.event_loop)
        return 0
    if args.role == "load":
        print(
            json.dumps(asyncio.run(_load(args.target, args.clients, args.warmup, args.seconds, args.own_connections)))
        )
        return 0
    loops = [loop for loop in args.loops.split(",") if loop]
    rows = [_bench_bare(args, loop) for loop in loops]
    for mode in [m for m in args.modes.split(",") if m]:
        rows.extend(_bench_gateway(args, mode, loop) for loop in loops)
    _print_table(rows, args)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
