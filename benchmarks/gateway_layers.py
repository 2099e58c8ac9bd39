"""Where the gateway's admission time goes: the same load against servers that add one layer at a time.

    .venv/bin/python benchmarks/gateway_layers.py [--layers bare,interceptors,parse,manager] [--loop uvloop]
        [--rounds 2] [--clients 32] [--seconds 8] [--warmup 2] [--processes 1,2]

The load is ``benchmarks/gateway.py``'s (32 clients, each on its own channel, Submit of a fresh
task then GetResponse, in a loop). Each layer is a ``grpc.aio`` server in its own process, on
``--loop``; the rounds interleave the layers so a machine that speeds up or slows down mid-run
shows in every layer alike:

- ``bare``: constant answers (the ceiling, as in ``benchmarks/gateway.py``);
- ``interceptors``: the same, behind the gateway's interceptors (metrics, auth, decoding);
- ``parse``: plus what Submit does before the store: proto to the seed's JSON and ``parse_task``;
- ``manager``: the gateway's real servicer and ``TaskManager`` over a SQLite store in a temporary
  directory, with a scheduler client that keeps the hand-overs in a list (no Ray);
- ``farm``: ``farm serve`` itself (embedded Ray, the scheduler actor, the render paused as in
  ``benchmarks/gateway.py --modes paused``).

With ``--processes 1,2,3`` every layer but ``bare`` and ``farm`` also runs as 2 and 3 processes
listening on one port (gRPC sets SO_REUSEPORT on Linux), each with its own store, and every client
of every layer gets its own TCP connection so the kernel spreads them (gRPC otherwise shares one
connection among channels to one target): what several admission processes per pod would give, at
best.

Prints RPC/s and p50/p99 per layer and round, and each layer's median ratio to ``bare``. The gap
between ``manager`` and ``farm`` is what handing tasks to the scheduler actor costs (the hand-over
calls, the event pump, the actor on the same cores); the gap between ``bare`` and ``manager`` is the
gateway's own Python.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import gateway as bench  # noqa: E402 - after the sys.path line that makes the repo importable
from benchmarks._common import machine  # noqa: E402 - after the sys.path line that makes the repo importable

LAYERS = ("bare", "interceptors", "parse", "manager", "farm")
MODEL = "skywork:skyreels@v4"


class _ListScheduler:
    """A ``SchedulerClient`` that keeps hand-overs and never reports an event (no Ray)."""

    def __init__(self) -> None:
        self.specs: list = []

    def hand_over(self, spec) -> None:
        self.specs.append(spec)

    def cancel(self, task_uuid: str) -> bool:
        return True

    def events(self, after: int, timeout: float):
        from farm.scheduler.events import EventBatch

        time.sleep(timeout)
        return EventBatch(epoch="bench")

    def snapshot(self):
        from farm.scheduler.events import Snapshot

        return Snapshot(epoch="bench", seq=0)

    def forget(self, task_uuid: str) -> None:
        pass

    def close(self, *, shutdown: bool = False) -> None:
        pass


async def _servicer(layer: str):
    """The servicer object and the interceptors of ``layer``."""
    from farm.gateway.auth import ApiKeys
    from farm.gateway.interceptors import server_interceptors
    from farm.v1 import farm_pb2, farm_pb2_grpc

    if layer == "manager":
        from farm.gateway.grpc_service import VideoInferenceServicer
        from farm.gateway.server import GuardedService
        from farm.io.urlguard import UrlGuard
        from farm.scheduler.manager import TaskManager
        from farm.scheduler.store import TaskStore

        data = Path(tempfile.mkdtemp(prefix="farm-layers-"))
        manager = TaskManager(
            TaskStore(data / "tasks.db"),
            scheduler=_ListScheduler(),
            out_dir=data / "out",
            max_queue=10**9,
            known_models=(MODEL,),
        )
        manager.start()
        servicer = VideoInferenceServicer(GuardedService(manager, UrlGuard(())))
        return servicer, server_interceptors(servicer.api_keys, None)

    from farm.domain.validation import parse_task
    from farm.gateway.wire import task_message_to_dict

    uuid0 = "00000000-0000-4000-8000-000000000000"
    ack = farm_pb2.SubmitResponse(data=[farm_pb2.TaskAck(task_type="videoInference", task_uuid=uuid0)])
    answer = farm_pb2.TaskResponse(
        data=[farm_pb2.VideoResult(task_type="videoInference", task_uuid=uuid0, status="processing", state="queued")]
    )
    parse = layer == "parse"

    class Constant(farm_pb2_grpc.VideoInferenceServicer):
        async def Submit(self, request, context):
            if parse:
                for message in request.tasks:
                    raw = task_message_to_dict(message)
                    raw.setdefault("taskType", "videoInference")
                    parse_task(raw)
            return ack

        async def GetResponse(self, request, context):
            return answer

    interceptors = server_interceptors(ApiKeys(), None) if layer != "bare" else None
    return Constant(), interceptors


async def _serve(layer: str, port: int = 0) -> None:
    import grpc

    from farm.gateway.grpc_service import add_services
    from farm.v1 import farm_pb2_grpc

    servicer, interceptors = await _servicer(layer)
    server = grpc.aio.server(interceptors=interceptors)
    if layer == "manager":
        await add_services(server, servicer)
    else:
        farm_pb2_grpc.add_VideoInferenceServicer_to_server(servicer, server)
    # gRPC sets SO_REUSEPORT on Linux: several of these processes can listen on one ``port``.
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"{layer}: gRPC on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _name(layer: str, count: int) -> str:
    return layer if count == 1 else f"{layer} x{count}"


def _measure(layer: str, count: int, args) -> dict:
    """One layer served by ``count`` processes on one port under the load."""
    if layer == "farm":
        return bench._bench_gateway(args, "paused", args.loop)
    port = _free_port() if count > 1 else 0
    processes = []
    try:
        for _ in range(count):
            command = [sys.executable, __file__, "serve", "--layer", layer, "--loop", args.loop, "--port", str(port)]
            processes.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
            )
            port = bench._wait_for_port(processes[-1], r"gRPC on [\d.]+:(\d+)", 60)
        return bench._summary(layer, bench._run_load(f"127.0.0.1:{port}", args))
    finally:
        for process in processes:
            bench._stop(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "serve"])
    parser.add_argument("--layers", default="bare,interceptors,parse,manager")
    parser.add_argument("--layer", default="bare", choices=LAYERS, help="(serve) the layer to serve")
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--processes",
        default="1",
        help="comma-separated counts of server processes to run each layer but bare and farm as, on "
        "one port (SO_REUSEPORT); with any count above 1 every client gets its own connection",
    )
    parser.add_argument("--port", type=int, default=0, help="(serve) the port to listen on")
    args = parser.parse_args(argv)
    args.profile = None  # benchmarks/gateway.py's farm contender reads it
    if args.role == "serve":
        bench.run_loop(_serve(args.layer, args.port), args.loop)
        return 0
    layers = [layer for layer in args.layers.split(",") if layer]
    unknown = sorted(set(layers) - set(LAYERS))
    if unknown or "bare" not in layers:
        parser.error(f"--layers: needs bare, and only {', '.join(LAYERS)}; got {args.layers!r}")
    try:
        counts = sorted({int(count) for count in args.processes.split(",") if count})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        parser.error(f"--processes: comma-separated counts of at least 1; got {args.processes!r}")
    args.own_connections = counts[-1] > 1
    print(
        f"machine: {machine()}; loop {args.loop}; {args.clients} clients, {args.seconds:g} s measured"
        + ("; one connection per client" if args.own_connections else "")
    )
    # ``bare`` (the yardstick) and ``farm`` (farm serve itself) always run as one process.
    contenders = [(layer, count) for layer in layers for count in ([1] if layer in ("bare", "farm") else counts)]
    ratios: dict[str, list[float]] = {}
    for round_ in range(1, args.rounds + 1):
        rows = {_name(layer, count): _measure(layer, count, args) for layer, count in contenders}
        for name, row in rows.items():
            ratio = row["rps"] / rows["bare"]["rps"]
            ratios.setdefault(name, []).append(ratio)
            print(
                f"round {round_} {name:17} {row['rps']:7.0f} RPC/s  p50 {row['p50_ms']:6.2f}  "
                f"p99 {row['p99_ms']:6.2f} ms  x bare {ratio:5.2f}  {row['errors'] or ''}",
                flush=True,
            )
    for name, values in ratios.items():
        print(f"median x bare: {name:17} {statistics.median(values):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
