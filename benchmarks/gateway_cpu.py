"""Gateway CPU share: CPU seconds of the gateway process per rendered 5 s 720p task, against the CPU
seconds of the whole render (every process of the farm: gateway, scheduler, workers, finishers).

    .venv/bin/python benchmarks/gateway_cpu.py [--tasks 3]

Starts ``farm serve`` (embedded Ray) on loopback, submits ``--tasks`` 5 s 720p tasks (tiny default
model, no audio) over gRPC, waits for all to finish, then reads the CPU time of the gateway process
itself and of its whole process tree (the embedded Ray's processes are its descendants). Target
(issue 10): the gateway's share < 2%. Before the scheduler, the gateway process also stitched,
resized and encoded every frame.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine  # noqa: E402 - after the sys.path line that makes the repo importable
from tests.serving import serve_command  # noqa: E402 - after the sys.path line that makes the repo importable

TASK = {
    "taskType": "videoInference",
    "model": "skywork:skyreels@v4",
    "positivePrompt": "A lighthouse on a cliff at dusk, waves crashing, gulls crying",
    "duration": 5,
    "resolution": "720p",
    "outputFormat": "MP4",
    "settings": {"audio": False, "promptExtend": False},
}


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def tree_cpu(root: psutil.Process, seen: dict[int, float]) -> None:
    """Record the latest CPU seconds of every live process of ``root``'s tree (dead ones keep
    their last reading)."""
    for process in [root, *root.children(recursive=True)]:
        try:
            seen[process.pid] = cpu_seconds(process)
        except psutil.Error:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import grpc
    from google.protobuf import json_format

    from farm.v1 import farm_pb2, farm_pb2_grpc

    data = tempfile.mkdtemp(prefix="farm-cpu-")
    serve = subprocess.Popen(
        [
            *serve_command(data),
            "--workers",
            str(args.workers),
        ],
        stdout=subprocess.PIPE,
        stderr=open(Path(data) / "gateway.log", "w"),
        text=True,
    )
    line = serve.stdout.readline()
    port = int(re.search(r"gRPC on [\d.]+:(\d+)", line).group(1))
    gateway = psutil.Process(serve.pid)
    seen: dict[int, float] = {}
    stub = farm_pb2_grpc.VideoInferenceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    tree_cpu(gateway, seen)
    gateway_before, tree_before = cpu_seconds(gateway), sum(seen.values())
    started = time.perf_counter()
    uuids = []
    for _ in range(args.tasks):
        task = {**TASK, "taskUUID": str(uuid.uuid4())}
        uuids.append(task["taskUUID"])
        stub.Submit(json_format.ParseDict({"tasks": [task]}, farm_pb2.SubmitRequest()), timeout=30)
    pending = set(uuids)
    while pending:
        tree_cpu(gateway, seen)
        for task_uuid in list(pending):
            answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task_uuid), timeout=30)
            if answer.data and answer.data[0].status in ("success", "error"):
                assert answer.data[0].status == "success", answer
                pending.discard(task_uuid)
        time.sleep(0.5)
    wall = time.perf_counter() - started
    tree_cpu(gateway, seen)
    gateway_cpu = cpu_seconds(gateway) - gateway_before
    total_cpu = sum(seen.values()) - tree_before
    serve.terminate()
    serve.wait(60)
    print(f"# {machine()}")
    print(f"{args.tasks} tasks of 5 s 720p (tiny default, no audio), {args.workers} workers, wall {wall:.1f} s")
    print("| process | CPU seconds | per task |")
    print("|---|---|---|")
    print(f"| gateway process | {gateway_cpu:.2f} | {gateway_cpu / args.tasks:.2f} |")
    print(f"| whole farm (gateway + Ray tree) | {total_cpu:.2f} | {total_cpu / args.tasks:.2f} |")
    print(f"\ngateway share: {100 * gateway_cpu / total_cpu:.2f}% (target < 2%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
