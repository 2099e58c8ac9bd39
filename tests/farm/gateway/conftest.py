"""A gateway on loopback (free ports) in a background thread, over a fake or the real TaskService."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path

import pytest

from farm.domain.errors import DuplicateTaskError, QueueFullError, TaskNotFoundError
from farm.domain.records import ProgressEvent, ResultRecord, TaskRecord
from farm.domain.validation import parse_task


class FakeService:
    """A TaskService that validates for real and keeps tasks in memory; tests drive the results."""

    def __init__(self, max_queue: int = 100):
        self.tasks: dict[str, TaskRecord] = {}
        self.bodies: dict[str, dict] = {}
        self.max_queue = max_queue
        self.calls: list[tuple[str, str | None]] = []

    def submit(self, raw_task, api_key):
        self.calls.append(("submit", api_key))
        task = parse_task(raw_task)
        existing = self.tasks.get(task.task_uuid)
        if existing is not None:
            if self.bodies[task.task_uuid] == raw_task and existing.api_key == api_key:
                return existing
            raise DuplicateTaskError(f"taskUUID {task.task_uuid} already exists with another body")
        if sum(t.status == "queued" for t in self.tasks.values()) >= self.max_queue:
            raise QueueFullError("queue is full", retry_after_s=2.5)
        record = TaskRecord(
            task_uuid=task.task_uuid,
            api_key=api_key,
            body="{}",
            status="queued",
            created_at=time.time(),
            queue_position=1,
        )
        self.tasks[task.task_uuid] = record
        self.bodies[task.task_uuid] = raw_task
        return record

    def get(self, task_uuid, api_key):
        self.calls.append(("get", api_key))
        record = self.tasks.get(task_uuid)
        if record is None or record.api_key != api_key:
            raise TaskNotFoundError(f"no task {task_uuid}")
        return record

    def cancel(self, task_uuid, api_key):
        record = self.get(task_uuid, api_key)
        results = tuple(dataclasses.replace(r, status="cancelled") for r in record.results) or (
            ResultRecord(task_uuid=task_uuid, index=0, status="cancelled"),
        )
        record = dataclasses.replace(record, status="cancelled", results=results, queue_position=None)
        self.tasks[task_uuid] = record
        return record

    def finish(self, task_uuid, video_uuid, seed=7, cost=None):
        """Mark the task done with one successful result."""
        record = self.tasks[task_uuid]
        result = ResultRecord(
            task_uuid=task_uuid, index=0, status="success", seed=seed, video_uuid=video_uuid, cost=cost, progress=1.0
        )
        self.tasks[task_uuid] = dataclasses.replace(record, status="success", results=(result,), queue_position=None)

    async def watch(self, task_uuid, api_key):
        self.get(task_uuid, api_key)
        yield ProgressEvent(task_uuid=task_uuid, kind="queued", queue_position=1)
        for done in (1, 2, 3):
            await asyncio.sleep(0)
            yield ProgressEvent(task_uuid=task_uuid, kind="chunks", result_index=0, chunks_done=done, chunks_total=3)
        yield ProgressEvent(task_uuid=task_uuid, kind="done", extra={"status": "success"})


# The HTTP face maps the artifact store's own error classes (404, 410).
from farm.io.artifacts import ArtifactExpired, ArtifactNotFound  # noqa: E402 - next to the fake that raises them


@dataclasses.dataclass
class FakeArtifact:
    path: Path
    content_type: str
    size: int
    expires_at: float | None = None


class FakeArtifacts:
    def __init__(self):
        self.items: dict[str, FakeArtifact] = {}
        self.expired: set[str] = set()

    def get(self, video_uuid):
        if video_uuid in self.expired:
            raise ArtifactExpired(video_uuid)
        if video_uuid not in self.items:
            raise ArtifactNotFound(video_uuid)
        return self.items[video_uuid]


class GatewayThread:
    """Runs ``Gateway`` in its own event loop on a thread, so tests use ordinary blocking clients."""

    def __init__(self, gateway):
        self.gateway = gateway
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.gateway.start(), self.loop).result(120)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.gateway.stop(grace=1.0), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.gateway.grpc_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.gateway.http_port}"


@pytest.fixture
def fake_gateway(tmp_path):
    """A gateway over ``FakeService`` with API keys off, real FarmMetrics and fake artifacts."""
    from farm.gateway.metrics import FarmMetrics
    from farm.gateway.server import Gateway, GatewayConfig

    config = GatewayConfig(grpc_port=0, http_port=0, host="127.0.0.1", data_dir=str(tmp_path))
    gateway = Gateway(config, service=FakeService(max_queue=3), artifacts=FakeArtifacts(), metrics=FarmMetrics())
    with GatewayThread(gateway) as running:
        yield running


@pytest.fixture
def keyed_gateway(tmp_path):
    """A gateway over ``FakeService`` that requires the keys ``alice`` or ``bob``."""
    from farm.gateway.server import Gateway, GatewayConfig

    config = GatewayConfig(
        grpc_port=0, http_port=0, host="127.0.0.1", data_dir=str(tmp_path), api_keys=["alice", "bob"]
    )
    with GatewayThread(Gateway(config, service=FakeService())) as running:
        yield running
