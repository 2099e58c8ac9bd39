"""Where the gateway's admission time goes: the same load against servers that add one layer at a time.

    .venv/bin/python benchmarks/gateway_layers.py [--layers bare,interceptors,parse,manager] [--loop uvloop]
        [--rounds 2] [--clients 32] [--seconds 8] [--warmup 2]

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

Prints RPC/s and p50/p99 per layer and round, and each layer's median ratio to ``bare``. The gap
between ``manager`` and ``farm`` is what handing tasks to the scheduler actor costs (the hand-over
calls, the event pump, the actor on the same cores); the gap between ``bare`` and ``manager`` is the
gateway's own Python.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def _serve(layer: str) -> None:
    import grpc

    from farm.gateway.grpc_service import add_services
    from farm.v1 import farm_pb2_grpc

    servicer, interceptors = await _servicer(layer)
    server = grpc.aio.server(interceptors=interceptors)
    if layer == "manager":
        await add_services(server, servicer)
    else:
        farm_pb2_grpc.add_VideoInferenceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"{layer}: gRPC on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


def _measure(layer: str, args) -> dict:
    if layer == "farm":
        return bench._bench_gateway(args, "paused", args.loop)
    process = subprocess.Popen(
        [sys.executable, __file__, "serve", "--layer", layer, "--loop", args.loop],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        port = bench._wait_for_port(process, r"gRPC on [\d.]+:(\d+)", 60)
        return bench._summary(layer, bench._run_load(f"127.0.0.1:{port}", args))
    finally:
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
    args = parser.parse_args(argv)
    args.profile = None  # benchmarks/gateway.py's farm contender reads it
    if args.role == "serve":
        bench.run_loop(_serve(args.layer), args.loop)
        return 0
    layers = [layer for layer in args.layers.split(",") if layer]
    unknown = sorted(set(layers) - set(LAYERS))
    if unknown or "bare" not in layers:
        parser.error(f"--layers: needs bare, and only {', '.join(LAYERS)}; got {args.layers!r}")
    print(f"machine: {machine()}; loop {args.loop}; {args.clients} clients, {args.seconds:g} s measured")
    ratios: dict[str, list[float]] = {layer: [] for layer in layers}
    for round_ in range(1, args.rounds + 1):
        rows = {layer: _measure(layer, args) for layer in layers}
        for layer, row in rows.items():
            ratio = row["rps"] / rows["bare"]["rps"]
            ratios[layer].append(ratio)
            print(
                f"round {round_} {layer:13} {row['rps']:7.0f} RPC/s  p50 {row['p50_ms']:6.2f}  "
                f"p99 {row['p99_ms']:6.2f} ms  x bare {ratio:5.2f}  {row['errors'] or ''}",
                flush=True,
            )
    for layer in layers:
        print(f"median x bare: {layer:13} {statistics.median(ratios[layer]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
