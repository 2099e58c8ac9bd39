"""The chaos suite's long runs (issue 13, item 9): fuzz both faces, kill the gateway and workers
under a stream of tasks, and measure what inline media leaves in the gateway.

    .venv/bin/python benchmarks/chaos.py [--phases fuzz,kills,memory] [--examples 1500]
        [--gateway-kills 5] [--worker-kills 5] [--tasks 16] [--interval 2] [--duration 8]
        [--memory-tasks 50] [--media-mb 20] [--json FILE]

Exit status 1 if any figure misses its target (a 5xx or INTERNAL/UNKNOWN, a lost task, RSS growth
over 100 MiB or ``tasks.db`` over 5 MB).

Phases (each prints its figures; ``--json`` writes them all):

- ``fuzz``: property-based fuzzing (hypothesis) of both faces of an in-process gateway: the real
  faces, validation, ``TaskManager``, SQLite store and inline-media storage, over a scheduler core
  whose executor renders nothing (``tests.farm.scheduler.fakes.FakeExecutor``), with API keys on.
  JSON face: random JSON documents, valid tasks with random mutations (any field set to any JSON
  value, removed, unknown fields, inline media strings, deep nesting, huge numbers), random bytes,
  duplicate keys, random ``Range`` headers on ``/v1/videos``. gRPC face: messages built field by
  field from the descriptors with random values (NaN/Infinity doubles, huge strings, nested
  Structs), valid messages with random byte edits, random bytes, on every method. Asserted: no HTTP
  5xx, no ``INTERNAL``/``UNKNOWN``. Then schemathesis (``pip install -e '.[chaos]'``; skipped with
  a message when absent) runs its examples, coverage and fuzzing phases (``--examples`` / 10 per
  operation) against the gateway's ``/openapi.json`` with the ``not_a_server_error`` check, as alice.
- ``kills``: a Ray head in its own process group (``ray start --head``; stopped by killing that
  group and the processes of its temp dir, never ``ray stop``, which stops every Ray on the
  machine) and ``farm serve --ray-address`` on it. A client submits a stream of small tasks (256x144,
  ``--duration`` s, no audio, one every ``--interval`` s) and retries a submit the gateway did not acknowledge with the same task (as a
  client should). Meanwhile the gateway is killed with SIGKILL ``--gateway-kills`` times (and
  started again) and a ``ray::VideoWorker`` process ``--worker-kills`` times. At the end every
  acknowledged task must be finished or failed with a clear code; ``lost`` (unknown after a restart,
  or never ending) must be 0.
- ``memory``: ``farm serve`` on the same kind of head; ``--memory-tasks`` tasks submitted one at a
  time over ``POST /v1``, each with ``--media-mb`` MB of distinct inline media (base64 of random
  bytes as a frame image: stored as an asset at submit, then refused by the media preparation as
  not an image, so nothing renders). Reported: the gateway's RSS after the first task ended and after
  the last (target: within 100 MiB), and the size of ``tasks.db`` with its WAL (target: < 5 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine  # noqa: E402 - after the sys.path line that makes the repo importable
from tests.serving import serve_command  # noqa: E402 - after the sys.path line that makes the repo importable

RAY = str(Path(sys.executable).with_name("ray"))
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
#: Codes a failed task may end with and still count as "failed with a clear code".
CLEAR_CODES = {
    "invalidParameter",
    "renderFailed",
    "workerLost",
    "encodeFailed",
    "safety",
    "taskCancelled",
    "planError",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------ fuzzing


class _GatewayThread:
    """The gateway on its own event loop thread (as ``tests/farm/gateway/conftest.py`` runs it)."""

    def __init__(self, gateway: Any):
        self.gateway = gateway
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> _GatewayThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.gateway.start(), self.loop).result(120)
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(grace=1.0), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextlib.contextmanager
def fuzz_gateway(data: Path):
    """A keyed gateway (alice, bob) over a real TaskManager on a scheduler that renders nothing."""
    from farm.gateway.server import Gateway, GatewayConfig, GuardedService
    from farm.io.artifacts import LocalArtifactStore
    from farm.io.urlguard import UrlGuard
    from farm.render.executor import MediaConfig
    from farm.scheduler.actor import LocalClient, SchedulerHost
    from farm.scheduler.core import SchedulerConfig, SchedulerCore
    from farm.scheduler.manager import TaskManager
    from farm.scheduler.pools import PoolPolicy
    from farm.scheduler.store import TaskStore
    from models.profiles import get_profile
    from tests.farm.scheduler.fakes import MODEL, FakeExecutor

    artifacts = LocalArtifactStore(data / "artifacts")
    config = SchedulerConfig(default_pool=PoolPolicy(max_workers=2))
    host = SchedulerHost(SchedulerCore(FakeExecutor(), {MODEL: get_profile(MODEL)}, config), 0.05)
    manager = TaskManager(
        TaskStore(data / "tasks.db"),
        scheduler=LocalClient(host),
        out_dir=data / "out",
        max_queue=50,
        artifacts=artifacts,
        known_models=(MODEL,),
        media=MediaConfig(assets_dir=str(data / "assets"), artifacts_dir=str(data / "artifacts")),
    )
    manager.start()
    gateway_config = GatewayConfig(
        grpc_port=0, http_port=0, host="127.0.0.1", data_dir=str(data), api_keys=["alice", "bob"], max_queue=50
    )
    gateway = Gateway(gateway_config, service=GuardedService(manager, UrlGuard([])), artifacts=artifacts)
    try:
        with _GatewayThread(gateway) as running:
            yield running.gateway
    finally:
        manager.stop(timeout=5, shutdown_scheduler=True)


def _json_strategies():
    from hypothesis import strategies as st

    from farm.domain.schema import task_json_schema

    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=40)
        | st.sampled_from(
            ["", "480p", "MP4", "first", "last", "@hero", "https://127.0.0.1/x", "data:image/png;base64,"]
        )
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=12,
    )
    schema = task_json_schema()
    top_fields = sorted(schema.get("properties", {})) or sorted(SMALL_TASK)
    paths = [(name,) for name in top_fields] + [
        ("settings", "audio"),
        ("settings", "chunkMode"),
        ("safety", "mode"),
        ("safety", "checkContent"),
        ("inputs", "frameImages"),
        ("inputs", "referenceImages"),
        ("inputs", "referenceVideos"),
        ("inputs", "mask"),
    ]
    media = st.one_of(
        st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
        st.binary(max_size=300).map(lambda b: "data:image/png;base64," + base64.b64encode(b).decode()),
        st.text(max_size=60),
        st.just(str(uuid.uuid4())),
    )
    frame_items = st.lists(
        media
        | st.fixed_dictionaries(
            {"image": media, "frame": st.one_of(st.sampled_from(["first", "last"]), st.integers(-5, 200), values)}
        ),
        max_size=9,
    )

    @st.composite
    def mutated_task(draw):
        task = json.loads(json.dumps(SMALL_TASK))
        task["taskUUID"] = draw(st.sampled_from([str(uuid.uuid4()), str(uuid.uuid4()).upper(), "dup-" + "0" * 32]))
        if task["taskUUID"].startswith("dup-"):
            task["taskUUID"] = "2f1d7c8e-4b6a-4c3e-9f1a-0b7e6f0e1b1e"  # the same UUID, again and again
        for _ in range(draw(st.integers(0, 4))):
            path = draw(st.sampled_from(paths))
            action = draw(st.sampled_from(["set", "set", "delete", "media"]))
            node = task
            for key in path[:-1]:
                if not isinstance(node.get(key), dict):
                    node[key] = {}
                node = node[key]
            if action == "delete":
                node.pop(path[-1], None)
            elif action == "media" and path[0] == "inputs":
                node[path[-1]] = draw(frame_items) if path[-1] == "frameImages" else draw(media)
            else:
                node[path[-1]] = draw(values)
        if draw(st.booleans()):
            task[draw(st.text(min_size=1, max_size=10))] = draw(values)
        return task

    return values, mutated_task()


def _raw_bodies():
    from hypothesis import strategies as st

    deep = st.integers(1, 3000).map(lambda n: ("[" * n + "]" * n).encode())
    deep_objects = st.integers(1, 2000).map(lambda n: ('{"a":' * n + "1" + "}" * n).encode())
    huge_int = st.integers(1, 20000).map(lambda n: ('[{"seed": ' + "9" * n + "}]").encode())
    duplicate_keys = st.just(b'[{"taskUUID": "a", "taskUUID": "b"}]')
    surrogates = st.just(b'[{"positivePrompt": "\\ud800", "taskUUID": "x"}]')
    return st.binary(max_size=500) | deep | deep_objects | huge_int | duplicate_keys | surrogates


def _one_video(gateway: Any) -> str:
    """A stored result to fetch ranges of."""
    source = Path(tempfile.mkdtemp()) / "v.mp4"
    source.write_bytes(os.urandom(10_000))
    video_uuid = str(uuid.uuid4())
    gateway.artifacts.put(video_uuid, source, "video/mp4", None, owner_key="alice")
    return video_uuid


def _http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


def _message_strategy(descriptor, depth: int = 0):
    """Messages of ``descriptor`` with random values in random fields (nested up to 3 deep)."""
    from google.protobuf import struct_pb2
    from google.protobuf.descriptor import FieldDescriptor as F
    from hypothesis import strategies as st

    if descriptor.full_name == "google.protobuf.Value":
        return st.recursive(
            st.none().map(lambda _: struct_pb2.Value(null_value=0))
            | st.floats().map(lambda x: struct_pb2.Value(number_value=x))
            | st.text(max_size=20).map(lambda s: struct_pb2.Value(string_value=s))
            | st.booleans().map(lambda b: struct_pb2.Value(bool_value=b)),
            lambda inner: st.lists(inner, max_size=3).map(
                lambda items: struct_pb2.Value(list_value=struct_pb2.ListValue(values=items))
            ),
            max_leaves=6,
        )
    kinds = {
        F.TYPE_STRING: st.one_of(
            st.text(max_size=30),
            st.sampled_from(["480p", "MP4", "skywork:skyreels@v4", str(uuid.uuid4())]),
            st.integers(0, 300_000).map(lambda n: "x" * n),
        ),
        F.TYPE_BYTES: st.binary(max_size=64),
        F.TYPE_BOOL: st.booleans(),
        F.TYPE_DOUBLE: st.floats(),
        F.TYPE_FLOAT: st.floats(width=32),
        F.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
        F.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
        F.TYPE_UINT32: st.integers(0, 2**32 - 1),
        F.TYPE_UINT64: st.integers(0, 2**64 - 1),
        F.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
        F.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
        F.TYPE_ENUM: st.integers(0, 3),
    }

    @st.composite
    def build(draw):
        from google.protobuf import message_factory

        message = message_factory.GetMessageClass(descriptor)()
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue
            if field.type == F.TYPE_MESSAGE:
                if depth >= 3:
                    continue
                sub = _message_strategy(field.message_type, depth + 1)
                if field.message_type.GetOptions().map_entry:
                    continue
                if field.is_repeated:
                    for item in draw(st.lists(sub, max_size=3)):
                        getattr(message, field.name).add().CopyFrom(item)
                else:
                    getattr(message, field.name).CopyFrom(draw(sub))
            elif field.type in kinds:
                strategy = kinds[field.type]
                if field.is_repeated:
                    getattr(message, field.name).extend(draw(st.lists(strategy, max_size=3)))
                else:
                    setattr(message, field.name, draw(strategy))
        return message

    return build()


def run_fuzz(examples: int) -> dict:
    import logging

    import grpc
    from google.protobuf import json_format
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from farm.v1 import farm_pb2

    # aiohttp logs each request its own parser refuses (it answers 400 itself): not news here.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    printable = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="chaos-fuzz-") as tmp, fuzz_gateway(Path(tmp)) as gateway:
        base = f"http://127.0.0.1:{gateway.http_port}"
        values, mutated_task = _json_strategies()
        # Mostly known keys (so tasks reach validation), sometimes none or a wrong one.
        keys = st.sampled_from(["alice"] * 9 + ["bob"] * 9 + [None, "mallory"])
        video = _one_video(gateway)
        quiet = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=False,
        )

        # -- the JSON face -----------------------------------------------------------------
        statuses: Counter[int] = Counter()
        bad: list[str] = []

        def post(body: bytes, key: str | None) -> None:
            headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
            status = _http("POST", f"{base}/v1", body, headers)
            statuses[status] += 1
            if status >= 500:
                bad.append(f"POST /v1 -> {status}: {body[:200]!r}")

        @quiet
        @given(st.lists(mutated_task, min_size=1, max_size=3), keys)
        def json_tasks(tasks, key):
            post(json.dumps(tasks).encode(), key)

        @quiet
        @given(values, keys)
        def json_documents(document, key):
            post(json.dumps(document).encode(), key)

        @settings(
            max_examples=max(50, examples // 4), deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(_raw_bodies(), keys)
        def raw_bodies(body, key):
            post(body, key)

        @settings(
            max_examples=max(50, examples // 4), deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(
            st.sampled_from([video, video, str(uuid.uuid4())]) | st.text(max_size=40),
            st.from_regex(r"\Abytes=[0-9,-]{0,12}\Z") | st.from_regex(r"\A[a-z]{0,6}=[0-9 ,-]{0,12}\Z") | printable,
        )
        def video_ranges(video_uuid, range_header):
            path = urllib.request.quote(video_uuid or "x", safe="")
            status = _http("GET", f"{base}/v1/videos/{path}", headers={"Range": range_header})
            statuses[status] += 1
            if status >= 500:
                bad.append(f"GET /v1/videos/{video_uuid!r} Range {range_header!r} -> {status}")

        started = time.monotonic()
        for name, test in (
            ("tasks", json_tasks),
            ("documents", json_documents),
            ("raw", raw_bodies),
            ("videos", video_ranges),
        ):
            before = sum(statuses.values())
            test()
            log(f"fuzz JSON {name}: {sum(statuses.values()) - before} requests")
        figures["json"] = {
            "requests": sum(statuses.values()),
            "statuses": dict(sorted(statuses.items())),
            "server_errors": len(bad),
            "examples_of_server_errors": bad[:5],
            "seconds": round(time.monotonic() - started, 1),
        }

        # -- the gRPC face -----------------------------------------------------------------
        codes: Counter[str] = Counter()
        broken: list[str] = []
        channel = grpc.insecure_channel(
            f"127.0.0.1:{gateway.grpc_port}",
            options=[("grpc.max_send_message_length", 70 * 2**20), ("grpc.max_receive_message_length", 70 * 2**20)],
        )
        service = "/farm.v1.VideoInference/"
        raw_unary = {name: channel.unary_unary(service + name) for name in ("Submit", "GetResponse", "Cancel")}
        raw_watch = channel.unary_stream(service + "Watch")
        raw_upload = channel.stream_unary(service + "UploadAsset")

        def call(method: str, payload: bytes, key: str | None) -> None:
            metadata = [("authorization", f"Bearer {key}")] if key else []
            try:
                if method == "Watch":
                    for _ in raw_watch(payload, metadata=metadata, timeout=5):
                        pass
                elif method == "UploadAsset":
                    raw_upload(iter([payload]), metadata=metadata, timeout=30)
                else:
                    raw_unary[method](payload, metadata=metadata, timeout=30)
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name
            if code == "DEADLINE_EXCEEDED" and method == "Watch":
                code = "OK (stream open)"  # a valid task's progress, still streaming
            codes[code] += 1
            if code in ("INTERNAL", "UNKNOWN"):
                broken.append(f"{method} -> {code}: {payload[:120]!r}")

        methods = st.sampled_from(["Submit", "Submit", "GetResponse", "Watch", "Cancel", "UploadAsset"])
        requests = {
            "Submit": _message_strategy(farm_pb2.SubmitRequest.DESCRIPTOR),
            "GetResponse": _message_strategy(farm_pb2.GetResponseRequest.DESCRIPTOR),
            "Watch": _message_strategy(farm_pb2.WatchRequest.DESCRIPTOR),
            "Cancel": _message_strategy(farm_pb2.CancelRequest.DESCRIPTOR),
            "UploadAsset": _message_strategy(farm_pb2.AssetChunk.DESCRIPTOR),
        }
        valid = json_format.ParseDict(
            {"tasks": [{k: v for k, v in SMALL_TASK.items() if k != "taskType"} | {"taskUUID": str(uuid.uuid4())}]},
            farm_pb2.SubmitRequest(),
        ).SerializeToString()

        @quiet
        @given(st.data(), methods, keys)
        def grpc_messages(data, method, key):
            call(method, data.draw(requests[method]).SerializeToString(), key)

        @quiet
        @given(
            st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), min_size=1, max_size=8),
            st.integers(0, len(valid)),
            keys,
        )
        def grpc_edits(edits, cut, key):
            payload = bytearray(valid)
            for position, value in edits:
                payload[position] = value
            call("Submit", bytes(payload[:cut] if cut else payload), key)

        @settings(
            max_examples=max(50, examples // 4), deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(st.binary(max_size=400), methods, keys)
        def grpc_bytes(payload, method, key):
            call(method, payload, key)

        started = time.monotonic()
        for name, test in (("messages", grpc_messages), ("edits", grpc_edits), ("bytes", grpc_bytes)):
            before = sum(codes.values())
            test()
            log(f"fuzz gRPC {name}: {sum(codes.values()) - before} calls")
        channel.close()
        figures["grpc"] = {
            "calls": sum(codes.values()),
            "codes": dict(sorted(codes.items())),
            "internal_or_unknown": len(broken),
            "examples_of_internal_or_unknown": broken[:5],
            "seconds": round(time.monotonic() - started, 1),
        }
        figures["openapi"] = _schemathesis(base, examples)
    return figures


def _schemathesis(base: str, examples: int) -> dict:
    """schemathesis over the gateway's own OpenAPI description: no answer may be a 5xx."""
    exe = Path(sys.executable).with_name("schemathesis")
    if not exe.exists():
        log("schemathesis is not installed: its phase is skipped (pip install schemathesis)")
        return {"skipped": "schemathesis is not installed (pip install -e '.[chaos]')"}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chaos-st-") as reports:
        command = [
            str(exe),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(max(1, examples // 10)),
            "--phases",
            "examples,coverage,fuzzing",
            "--header",
            "Authorization: Bearer alice",
            "--seed",
            "13",
            "--workers",
            "1",
            "--report",
            "ndjson",
            "--report-dir",
            reports,
        ]
        # Run in the temporary directory: schemathesis keeps its own state (.schemathesis/) in its cwd.
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=reports)
        statuses: Counter[int] = Counter()
        for path in Path(reports).glob("*.ndjson"):
            statuses.update(int(code) for code in re.findall(r'"status_code":\s*(\d{3})', path.read_text()))
    summary = [line for line in done.stdout.splitlines() if line.strip() and "NDJSON:" not in line][-7:]
    log(f"schemathesis: exit {done.returncode}; " + " | ".join(summary[-3:]))
    return {
        "exit": done.returncode,
        "responses": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(n for code, n in statuses.items() if code >= 500),
        "summary": summary,
        "seconds": round(time.monotonic() - started, 1),
    }


# -------------------------------------------------------------------- a Ray head, farm serve


class RayHead:
    """``ray start --head --block`` in its own process group, like a KubeRay head; stopped by
    killing that group and whatever still runs from its temp dir (``ray stop`` would stop every
    Ray on the machine)."""

    def __init__(self, cpus: int = 6):
        import psutil  # noqa: F401 - needed by stop(); fail before starting anything

        self.temp = Path(tempfile.mkdtemp(prefix="chaos-ray-"))
        self.env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_AUTH_MODE": "disabled"}
        port = 6400 + (os.getpid() + 250) % 500
        self.address = f"127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                RAY,
                "start",
                "--head",
                "--block",
                f"--port={port}",
                f"--num-cpus={cpus}",
                "--include-dashboard=false",
                f"--temp-dir={self.temp}",
                "--disable-usage-stats",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        probe = f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); print('up')"
        deadline = time.time() + 240
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Ray head did not start: {self.process.stderr.read().decode()[-2000:]}")
            done = subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, env=self.env, timeout=180
            )
            if done.returncode == 0:
                return
            time.sleep(1)
        raise RuntimeError("the Ray head did not answer within 240 s")

    def workers(self, name: str = "VideoWorker") -> list:
        """Processes of this head running actor class ``name``."""
        import psutil

        found = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmdline = " ".join(process.info["cmdline"] or ())
                if f"ray::{name}" in cmdline and any(p.pid == self.process.pid for p in process.parents()):
                    found.append(process)
            except psutil.Error:
                pass
        return found

    def stop(self) -> None:
        import psutil

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(60)
        for process in psutil.process_iter(["pid", "cmdline"]):
            try:
                if any(str(self.temp) in part for part in process.info["cmdline"] or ()):
                    process.kill()
            except psutil.Error:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)


class Serve:
    """``farm serve --ray-address`` in its own session (so SIGKILL of its group leaves nothing)."""

    def __init__(self, data: Path, address: str, log_path: Path, workers: int = 2):
        self.data, self.address, self.log_path, self.workers = data, address, log_path, workers
        self.process: subprocess.Popen | None = None
        self.grpc_port = self.http_port = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *serve_command(self.data),
                "--workers",
                str(self.workers),
                "--ray-address",
                self.address,
            ],
            stdout=subprocess.PIPE,
            stderr=open(self.log_path, "a"),
            text=True,
            start_new_session=True,
            cwd=ROOT,
        )
        deadline, line = time.time() + 300, ""
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if "farm gateway:" in line or not line:
                break
        match = re.search(r"gRPC on [\d.]+:(\d+), HTTP on [\d.]+:(\d+)", line)
        if not match:
            self.kill()
            raise RuntimeError(f"farm serve did not start: {line!r}\n{self.log_path.read_text()[-3000:]}")
        self.grpc_port, self.http_port = int(match.group(1)), int(match.group(2))

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL of the gateway's whole process group: no shutdown code runs."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


# ------------------------------------------------------------------------------------- kills


def run_kills(
    gateway_kills: int, worker_kills: int, tasks: int, interval_s: float, deadline_s: float, duration: float
) -> dict:
    import grpc
    from google.protobuf import json_format

    from farm.v1 import farm_pb2, farm_pb2_grpc

    head = RayHead()
    data = Path(tempfile.mkdtemp(prefix="chaos-kills-"))
    serve = Serve(data / "data", head.address, data / "gateway.log")
    gate = threading.Lock()  # held while a new gateway starts (its port is not known yet)
    stop = threading.Event()
    acked: dict[str, float] = {}
    submit_refusals: Counter[str] = Counter()
    events: list[str] = []
    at_kill: list[int] = []

    stubs: dict[int, Any] = {}

    def stub():
        """A stub on the gateway now up (one channel per incarnation)."""
        with gate:
            port = serve.grpc_port
            if port not in stubs:
                stubs[port] = farm_pb2_grpc.VideoInferenceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
            return stubs[port]

    kills_done = threading.Event()

    def submitter() -> None:
        # A stream for as long as the kills go on, and at least ``tasks`` tasks.
        n = 0
        while n < tasks or not kills_done.is_set():
            n += 1
            task = {**SMALL_TASK, "taskUUID": str(uuid.uuid4()), "seed": n, "duration": duration}
            request = json_format.ParseDict(
                {"tasks": [{k: v for k, v in task.items() if k != "taskType"}]}, farm_pb2.SubmitRequest()
            )
            while not stop.is_set():
                try:
                    answer = stub().Submit(request, timeout=20)
                    if answer.data:
                        acked[task["taskUUID"]] = time.time()
                        break
                except grpc.RpcError as error:
                    submit_refusals[error.code().name] += 1
                    if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS):
                        break  # a clear refusal: not accepted
                time.sleep(1.0)  # the gateway restarts (or the queue is full): same task again
            stop.wait(interval_s)

    try:
        serve.start()
        log(f"kills: farm serve up (pid {serve.pid}); head {head.address}")
        thread = threading.Thread(target=submitter, daemon=True)
        thread.start()
        plan = ["gateway"] * gateway_kills + ["worker"] * worker_kills
        random.Random(13).shuffle(plan)

        def in_flight() -> int:
            """Acknowledged tasks not ended yet (what a kill can hurt)."""
            count = 0
            for task_uuid in list(acked):
                with contextlib.suppress(grpc.RpcError):
                    answer = stub().GetResponse(farm_pb2.GetResponseRequest(task_uuid=task_uuid), timeout=20)
                    count += not all(item.status in ("success", "error") for item in answer.data)
            return count

        pace = random.Random(13)
        for what in plan:
            time.sleep(pace.uniform(12, 25))
            running = in_flight()
            at_kill.append(running)
            if what == "gateway":
                # Not under ``gate``: submits in flight and during the restart fail, and are retried.
                serve.kill()
                events.append(f"{time.strftime('%H:%M:%S')} SIGKILL gateway ({len(acked)} acked, {running} unfinished)")
                log(events[-1])
                time.sleep(1.0)
                with gate:
                    serve.start()
                log(f"kills: gateway back (pid {serve.pid})")
            else:
                workers = head.workers()
                if not workers:
                    events.append(f"{time.strftime('%H:%M:%S')} no VideoWorker process to kill (pool idle)")
                    log(events[-1])
                    continue
                victim = max(workers, key=lambda p: p.cpu_times().user)
                victim.kill()
                events.append(
                    f"{time.strftime('%H:%M:%S')} SIGKILL VideoWorker pid {victim.pid} ({running} tasks unfinished)"
                )
                log(events[-1])
        kills_done.set()
        thread.join()
        log(f"kills: {len(acked)} tasks acknowledged; waiting for them to end")
        outcomes: dict[str, tuple[str, list[str]]] = {}
        end = time.time() + deadline_s
        while time.time() < end and len(outcomes) < len(acked):
            for task_uuid in [t for t in acked if t not in outcomes]:
                try:
                    answer = stub().GetResponse(farm_pb2.GetResponseRequest(task_uuid=task_uuid), timeout=20)
                except grpc.RpcError as error:
                    if error.code() == grpc.StatusCode.NOT_FOUND:
                        outcomes[task_uuid] = ("lost", ["NOT_FOUND"])
                    continue
                statuses = [item.status for item in answer.data]
                if statuses and all(s in ("success", "error") for s in statuses):
                    codes = sorted({e.code for e in answer.errors})
                    outcomes[task_uuid] = ("finished" if not codes else "failed", codes)
            time.sleep(2)
        for task_uuid in acked:
            outcomes.setdefault(task_uuid, ("lost", ["never ended"]))
        kinds = Counter(kind for kind, _ in outcomes.values())
        codes = Counter(code for kind, found in outcomes.values() if kind == "failed" for code in found)
        unclear = sum(1 for kind, found in outcomes.values() if kind == "failed" and not set(found) <= CLEAR_CODES)
        return {
            "gateway_kills": sum("gateway" in e for e in events),
            "worker_kills": sum("VideoWorker pid" in e for e in events),
            "accepted": len(acked),
            "finished": kinds["finished"],
            "failed_with_a_clear_code": kinds["failed"] - unclear,
            "failed_unclear": unclear,
            "failure_codes": dict(codes),
            "lost": kinds["lost"],
            "unfinished_tasks_at_each_kill": at_kill,
            "submit_retries_by_code": dict(submit_refusals),
            "events": events,
        }
    finally:
        stop.set()
        serve.stop()
        head.stop()
        shutil.rmtree(data / "data", ignore_errors=True)  # the gateway's log stays


# ------------------------------------------------------------------------------------ memory


def run_memory(count: int, media_mb: float) -> dict:
    import psutil

    head = RayHead()
    data = Path(tempfile.mkdtemp(prefix="chaos-memory-"))
    serve = Serve(data / "data", head.address, data / "gateway.log", workers=1)
    rng = random.Random(2)

    def rss() -> int:
        return psutil.Process(serve.pid).memory_info().rss

    def submit_and_wait(n: int) -> str:
        payload = base64.b64encode(rng.randbytes(int(media_mb * 1_000_000))).decode()
        task = {**SMALL_TASK, "taskUUID": str(uuid.uuid4()), "inputs": {"frameImages": [payload]}}
        body = json.dumps([task]).encode()
        del payload, task
        answer = json.loads(
            urllib.request.urlopen(
                urllib.request.Request(
                    f"http://127.0.0.1:{serve.http_port}/v1",
                    data=body,
                    method="POST",
                    headers={"Content-Type": "application/json"},
                ),
                timeout=120,
            ).read()
        )
        task_uuid = answer["data"][0]["taskUUID"]
        deadline = time.time() + 300
        while time.time() < deadline:
            request = urllib.request.Request(
                f"http://127.0.0.1:{serve.http_port}/v1",
                data=json.dumps([{"taskType": "getResponse", "taskUUID": task_uuid}]).encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            try:
                reply = json.loads(urllib.request.urlopen(request, timeout=30).read())
            except urllib.error.HTTPError as error:
                reply = json.loads(error.read() or b"{}")
            statuses = [item.get("status") for item in reply.get("data", [])]
            if statuses and all(s in ("success", "error") for s in statuses):
                return ",".join(sorted({e.get("code", "") for e in reply.get("errors", [])}) or ["success"])
            time.sleep(0.5)
        raise RuntimeError(f"task {n} did not end")

    try:
        serve.start()
        started_rss = rss()
        outcomes: Counter[str] = Counter()
        samples = []
        peak = started_rss
        for n in range(count):
            outcomes[submit_and_wait(n)] += 1
            current = rss()
            peak = max(peak, current)
            samples.append(current)
            if n == 0:
                first = current
                log(f"memory: RSS after the first task {first / 2**20:.0f} MiB")
            elif (n + 1) % 10 == 0:
                log(f"memory: {n + 1} tasks, RSS {current / 2**20:.0f} MiB")
        time.sleep(2)
        last = rss()
        db = data / "data" / "tasks.db"
        sizes = {p.name: p.stat().st_size for p in db.parent.glob("tasks.db*")}
        assets = sum(p.stat().st_size for p in (data / "data" / "assets").glob("*"))
        return {
            "tasks": count,
            "inline_media_mb_each": media_mb,
            "outcomes": dict(outcomes),
            "rss_at_start_mib": round(started_rss / 2**20, 1),
            "rss_after_first_mib": round(first / 2**20, 1),
            "rss_after_last_mib": round(last / 2**20, 1),
            "rss_growth_mib": round((last - first) / 2**20, 1),
            "rss_peak_mib": round(peak / 2**20, 1),
            "tasks_db_bytes": sizes,
            "tasks_db_total_mb": round(sum(sizes.values()) / 1e6, 3),
            "assets_on_disk_mb": round(assets / 1e6, 1),
        }
    finally:
        serve.stop()
        head.stop()
        shutil.rmtree(data / "data", ignore_errors=True)  # a GB of assets; the gateway's log stays


# ------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", default="fuzz,kills,memory")
    parser.add_argument("--examples", type=int, default=1500, help="hypothesis examples per fuzz strategy")
    parser.add_argument("--gateway-kills", type=int, default=5)
    parser.add_argument("--worker-kills", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=16, help="tasks in the stream of the kills phase, at least")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between submits (kills phase)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of video per task (kills phase)")
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds the kills phase waits for tasks to end")
    parser.add_argument("--memory-tasks", type=int, default=50)
    parser.add_argument("--media-mb", type=float, default=20.0)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    figures: dict[str, Any] = {"machine": machine()}
    log(f"chaos on {figures['machine']}: {', '.join(phases)}")
    if "fuzz" in phases:
        figures["fuzz"] = run_fuzz(args.examples)
        log(json.dumps(figures["fuzz"], indent=1))
    if "kills" in phases:
        figures["kills"] = run_kills(
            args.gateway_kills, args.worker_kills, args.tasks, args.interval, args.deadline, args.duration
        )
        log(json.dumps(figures["kills"], indent=1))
    if "memory" in phases:
        figures["memory"] = run_memory(args.memory_tasks, args.media_mb)
        log(json.dumps(figures["memory"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    failed = (
        figures.get("fuzz", {}).get("json", {}).get("server_errors", 0)
        + figures.get("fuzz", {}).get("grpc", {}).get("internal_or_unknown", 0)
        + figures.get("fuzz", {}).get("openapi", {}).get("server_errors", 0)
        + figures.get("kills", {}).get("lost", 0)
        + figures.get("kills", {}).get("failed_unclear", 0)
    )
    memory = figures.get("memory")
    if memory and (memory["rss_growth_mib"] > 100 or memory["tasks_db_total_mb"] > 5):
        failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
