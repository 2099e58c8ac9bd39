"""Cluster simulation: the farm's scheduler against the old one-task-at-a-time runner, 32+ GPUs.

A local Ray advertises ``--gpus`` custom ``sim_gpu`` resources; each simulated video worker takes
one and *sleeps* a modelled time per chunk (``--step-ms`` per denoising step at 480p, scaled by
the output area), so the machine's two cores are not what is measured: the scheduler is. A
seeded Poisson stream of ``--tasks`` mixed tasks (3-15 s, 480p/720p/1080p, 1-4 results, 4 API
keys with unequal load and weights 3:2:1:1) arrives faster than the cluster can render, and is
run twice in the same process on the same worker actors:

* **farm**: ``SchedulerCore`` (the control plane's core, in this process) with a ``RayExecutor``
  whose finishing is a no-op (stitch and encode are not simulated);
* **one-at-a-time**: today's ``TaskManager`` policy before this change: tasks round-robin over
  keys, one task at a time, all its chunks on every free worker, then a finishing tail
  (``--tail-ms``) during which the other workers idle.

Reported: GPU utilisation over the saturated window (first dispatch to last arrival), p50/p95
task latency, each key's GPU share against its weight and Jain's fairness index over
``share / weight``, and the scheduler's own CPU time per chunk (everything but waiting).

    .venv/bin/python benchmarks/cluster_sim.py                 # 200 tasks, 32 GPUs (~4 min)
    .venv/bin/python benchmarks/cluster_sim.py --tasks 60 --gpus 16 --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray

from benchmarks._common import machine
from farm.render.dispatch import RayExecutor
from farm.render.executor import ChunkDone, Finished, FinishedFile
from farm.scheduler.core import SchedulerConfig, SchedulerCore
from farm.scheduler.events import TaskSpec
from farm.scheduler.pools import PoolPolicy
from farm.scheduler.queue import TenantPolicy
from farm.workers.messages import ChunkMeta
from models.base import ModelProfile

MODEL = "sim:wan@output-size"
KEYS = ("studio-a", "studio-b", "indie-c", "indie-d")
WEIGHTS = {"studio-a": 3.0, "studio-b": 2.0, "indie-c": 1.0, "indie-d": 1.0}
#: Share of the tasks each key sends (each exceeds its weighted share of the cluster).
LOAD = {"studio-a": 0.35, "studio-b": 0.30, "indie-c": 0.20, "indie-d": 0.15}
STEPS = 30
BASE_AREA = 848 * 480


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimProfile(ModelProfile):
    """A model that renders at the output size (so 1080p chunks cost ~5x 480p ones)."""

    def native_size(self, width: int, height: int) -> tuple[int, int]:
        return width, height


def sim_profile(step_ms: float) -> SimProfile:
    return SimProfile(
        model_id=MODEL,
        description="simulated Wan-size model",
        window_frames=81,
        overlap_frames=17,
        temporal_stride=4,
        native_area=BASE_AREA,
        native_multiple=16,
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        audio_steps=0,
        video_factory=lambda: None,
        extra={"step_ms": step_ms},
    )


class SimVideoWorker:
    """A video worker that sleeps the modelled chunk time (one ``sim_gpu`` each)."""

    def __init__(self, profile, torch_threads=None):
        self.step_s = profile.extra["step_ms"] / 1000

    def ready(self) -> float:
        return 0.0

    def prompt(self, work):
        time.sleep(0.002)
        return None, b"embeds"

    def chunk_seconds(self, work) -> float:
        return self.step_s * work.num_inference_steps * (work.width * work.height / BASE_AREA)

    def chunk(self, work, prompt, conditioning=None, tail=None):
        started_at, started = time.time(), time.perf_counter()
        time.sleep(self.chunk_seconds(work))
        meta = ChunkMeta(
            task_uuid=work.task_uuid,
            result_index=work.result_index,
            chunk_index=work.chunk.index,
            seconds=time.perf_counter() - started,
            started_at=started_at,
            worker_pid=os.getpid(),
            num_frames=work.chunk.num_frames,
        )
        return meta, None


class NullFinishing:
    """Finishing that writes nothing: the file is 'final' as soon as the last chunk is in."""

    def __init__(self, report, track):
        self._report = report

    def open(self, key, spec):
        pass

    def add_chunk(self, key, chunk_index, frames):
        pass

    def add_audio(self, key, audio, carried):
        pass

    def finish(self, key):
        self._report(
            Finished(
                task_uuid=key[0],
                result_index=key[1],
                file=FinishedFile(path=f"/dev/null/{key[0]}-{key[1]}", encode_seconds=0.0, frames=0),
            )
        )

    def abort(self, key):
        pass

    def forget(self, key):
        pass

    def shutdown(self):
        pass


@dataclasses.dataclass
class SimTask:
    task_uuid: str
    key: str
    arrival: float
    body: dict
    done: float | None = None


def make_stream(n: int, rate: float, seed: int) -> list[SimTask]:
    rng = random.Random(seed)
    t, tasks = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        key = rng.choices(KEYS, weights=[LOAD[k] for k in KEYS])[0]
        task_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        body = {
            "taskType": "videoInference",
            "taskUUID": task_uuid,
            "model": MODEL,
            "positivePrompt": "sim",
            "duration": rng.randint(3, 15),
            "resolution": rng.choice(["480p", "720p", "1080p"]),
            "numberResults": rng.randint(1, 4),
            "settings": {"audio": False, "promptExtend": False},
        }
        tasks.append(SimTask(task_uuid=task_uuid, key=key, arrival=t, body=body))
    return tasks


class RecordingExecutor(RayExecutor):
    """Records every chunk's (worker pid, start, seconds, task) for utilisation and shares."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.chunks: list[tuple[int, float, float, str]] = []

    def poll(self, timeout, tokens=()):
        outcomes = super().poll(timeout, tokens)
        for o in outcomes:
            if isinstance(o, ChunkDone):
                self.chunks.append((o.meta.worker_pid, o.meta.started_at, o.meta.seconds, o.meta.task_uuid))
        return outcomes


def run_farm(stream: list[SimTask], gpus: int, profile: SimProfile) -> dict:
    from farm.domain.validation import parse_task

    executor = RecordingExecutor(finishing=NullFinishing, worker_classes={"video": SimVideoWorker})
    config = SchedulerConfig(
        tenants={k: TenantPolicy(weight=w) for k, w in WEIGHTS.items()},
        default_pool=PoolPolicy(min_workers=gpus, max_workers=gpus, idle_timeout_s=600),
        cpus_per_worker=0,
        worker_resources={"sim_gpu": 1},
        stats_interval_s=1e9,
        keep_ended=100_000,
    )
    core = SchedulerCore(executor, {MODEL: profile}, config)
    core.warm_up([MODEL])
    while len(core.workers(f"video:{MODEL}")) < gpus or core.stats()["pools"][f"video:{MODEL}"]["idle"] < gpus:
        core.step(0.05)
    parsed = {t.task_uuid: parse_task(t.body, known_models=(MODEL,)) for t in stream}
    by_uuid = {t.task_uuid: t for t in stream}
    pending = list(stream)
    t0 = time.time()
    cursor, remaining = 0, len(stream)
    while remaining:
        now = time.time() - t0
        while pending and pending[0].arrival <= now:
            t = pending.pop(0)
            task = parsed[t.task_uuid]
            core.hand_over(
                TaskSpec(
                    task_uuid=t.task_uuid,
                    body=t.body,
                    api_key=t.key,
                    seeds=tuple(range(task.number_results)),
                    results=tuple(range(task.number_results)),
                    out_dir="/dev/null",
                    parsed=task,
                )
            )
        core.step(0.005 if pending else 0.05)
        batch = core.events(cursor)
        for event in batch.events:
            cursor = event.seq
            if event.kind == "done" and event.task_uuid in by_uuid:
                by_uuid[event.task_uuid].done = time.time() - t0
                remaining -= 1
    chunks = [(pid, start - t0, seconds, task) for pid, start, seconds, task in executor.chunks]
    overhead = core.loop_seconds / max(1, len(chunks))
    executor.shutdown()
    return {"chunks": chunks, "overhead_s": overhead}


def run_one_at_a_time(stream: list[SimTask], gpus: int, profile: SimProfile, tail_s: float) -> dict:
    """The old runner's policy: one task at a time (round-robin over keys), then its tail."""
    from farm.domain.planner import plan_clip
    from farm.domain.validation import parse_task
    from farm.workers.messages import ChunkWork

    cls = ray.remote(SimVideoWorker).options(num_cpus=0, resources={"sim_gpu": 1})
    workers = [cls.remote(profile) for _ in range(gpus)]
    ray.get([w.ready.remote() for w in workers])
    lanes: dict[str, list[SimTask]] = {k: [] for k in KEYS}
    rotation: list[str] = []
    pending = list(stream)
    chunks: list[tuple[int, float, float, str]] = []
    t0 = time.time()
    done = 0
    while done < len(stream):
        now = time.time() - t0
        while pending and pending[0].arrival <= now:
            t = pending.pop(0)
            lanes[t.key].append(t)
            if t.key not in rotation:
                rotation.append(t.key)
        if not rotation:
            time.sleep(min(0.01, max(0.0, pending[0].arrival - now)) if pending else 0.01)
            continue
        key = rotation.pop(0)
        t = lanes[key].pop(0)
        if lanes[key]:
            rotation.append(key)
        task = parse_task(t.body, known_models=(MODEL,))
        w, h = profile.native_size(task.width, task.height)
        plan = plan_clip(task.num_frames, window_frames=81, overlap_frames=17, temporal_stride=4)
        todo = [
            ChunkWork(
                task_uuid=t.task_uuid,
                result_index=r,
                chunk=c,
                seed=r,
                width=w,
                height=h,
                num_inference_steps=STEPS,
                guidance_scale=5.0,
            )
            for r in range(task.number_results)
            for c in plan.chunks
        ]
        idle, running = list(workers), {}
        while todo or running:
            while idle and todo:
                worker = idle.pop()
                meta, _ = worker.chunk.options(num_returns=2).remote(todo.pop(0), None)
                running[meta] = worker
            ready, _ = ray.wait(list(running), num_returns=1)
            meta = ray.get(ready[0])
            idle.append(running.pop(ready[0]))
            chunks.append((meta.worker_pid, meta.started_at - t0, meta.seconds, meta.task_uuid))
        time.sleep(tail_s * task.number_results)  # the last chunks' stitch, encode and delivery
        t.done = time.time() - t0
        done += 1
    for worker in workers:
        ray.kill(worker)
    return {"chunks": chunks, "overhead_s": float("nan")}


def report(name: str, stream: list[SimTask], run: dict, gpus: int) -> dict:
    chunks = run["chunks"]
    start = min(s for _, s, _, _ in chunks)
    end = max(t.arrival for t in stream)  # saturated while tasks still arrive
    busy = sum(max(0.0, min(s + d, end) - max(s, start)) for _, s, d, _ in chunks)
    utilisation = busy / (gpus * (end - start))
    latency = sorted(t.done - t.arrival for t in stream if t.done is not None)
    key_of = {t.task_uuid: t.key for t in stream}
    gpu_s = dict.fromkeys(KEYS, 0.0)
    for _, s, d, task in chunks:
        gpu_s[key_of[task]] += max(0.0, min(s + d, end) - max(s, start))
    total = sum(gpu_s.values()) or 1.0
    weight_total = sum(WEIGHTS.values())
    ratios = [(gpu_s[k] / total) / (WEIGHTS[k] / weight_total) for k in KEYS]
    jain = sum(ratios) ** 2 / (len(ratios) * sum(r * r for r in ratios))
    return {
        "name": name,
        "utilisation": utilisation,
        "p50": statistics.median(latency),
        "p95": latency[min(len(latency) - 1, math.ceil(0.95 * len(latency)) - 1)],
        "makespan": max(t.done for t in stream if t.done is not None),
        "shares": {k: gpu_s[k] / total for k in KEYS},
        "jain": jain,
        "overhead_ms": run["overhead_s"] * 1000,
        "chunks": len(chunks),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--gpus", type=int, default=32)
    parser.add_argument("--step-ms", type=float, default=10.0, help="modelled step time at 480p (ms)")
    parser.add_argument("--load", type=float, default=1.3, help="arrival rate / cluster capacity")
    parser.add_argument("--tail-ms", type=float, default=100.0, help="old runner's finishing tail per result")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    profile = sim_profile(args.step_ms)
    # Capacity in tasks/s: GPUs over the mean GPU-seconds of a task of the stream's mix.
    mean_chunks = statistics.mean(len(range(0, max(1, (d * 32 - 81) // 64 + 2))) for d in range(3, 16))
    mean_area = statistics.mean([848 * 480, 1280 * 720, 1920 * 1080]) / BASE_AREA
    task_s = mean_chunks * 2.5 * STEPS * args.step_ms / 1000 * mean_area
    rate = args.load * args.gpus / task_s
    stream = make_stream(args.tasks, rate, args.seed)
    print(
        f"# {machine()}\n# {args.tasks} tasks at {rate:.2f}/s (load {args.load}), {args.gpus} simulated GPUs, "
        f"step {args.step_ms} ms @480p",
        flush=True,
    )
    ray.init(
        num_cpus=2,
        resources={"sim_gpu": args.gpus},
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )
    results = []
    for name, runner in (
        ("farm scheduler", lambda s: run_farm(s, args.gpus, profile)),
        ("one task at a time", lambda s: run_one_at_a_time(s, args.gpus, profile, args.tail_ms / 1000)),
    ):
        fresh = [dataclasses.replace(t, done=None) for t in stream]
        started = time.perf_counter()
        run = runner(fresh)
        results.append(report(name, fresh, run, args.gpus))
        print(f"{name}: done in {time.perf_counter() - started:.1f}s", flush=True)
    ray.shutdown()
    print(
        "\n| runner | GPU utilisation | p50 latency s | p95 latency s | makespan s | Jain (share/weight) "
        "| sched. CPU ms/chunk | chunks |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['name']} | {r['utilisation']:.3f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['makespan']:.1f} "
            f"| {r['jain']:.3f} | {r['overhead_ms']:.2f} | {r['chunks']} |"
        )
    print("\nshares (weights " + ", ".join(f"{k} {WEIGHTS[k]:g}" for k in KEYS) + "):")
    for r in results:
        print(f"  {r['name']}: " + ", ".join(f"{k} {r['shares'][k]:.3f}" for k in KEYS))
    farm, old = results
    print(
        f"\nratio farm/old: utilisation {farm['utilisation'] / old['utilisation']:.2f}x, "
        f"p50 latency {farm['p50'] / old['p50']:.2f}x, p95 latency {farm['p95'] / old['p95']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
