"""The task lifecycle as the gateway sees it: records, progress events and the manager interface.

``TaskManager`` (``farm/scheduler/manager.py``) implements ``TaskService``; the gRPC servicer and the JSON/REST
face call only these methods, so both faces share one set of handlers, one validation and one
error table (``farm.domain.errors.error_info``).

States, per result: ``queued -> running -> success | error | cancelled``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

ResultStatus = Literal["queued", "running", "success", "error", "cancelled"]
EventKind = Literal[
    "queued", "running", "chunks", "steps", "encoding", "result", "delivered", "error", "cancelled", "done"
]


@dataclass(frozen=True, kw_only=True)
class ResultRecord:
    """One result (of ``numberResults``) of a task, as stored and as answered by GetResponse."""

    task_uuid: str
    index: int
    status: ResultStatus
    seed: int | None = None
    video_uuid: str | None = None
    video_url: str | None = None
    #: USD, only when the task asked ``includeCost``.
    cost: float | None = None
    #: 0..1 over chunks rendered and frames encoded.
    progress: float = 0.0
    error_code: str | None = None
    error_message: str | None = None
    #: The field path an ``invalidParameter`` error is about (``inputs.frameImages[0].image``).
    error_parameter: str | None = None
    #: The prompt the model rendered when ``settings.promptExtend`` extended it.
    extended_prompt: str | None = None
    #: Delivery outcomes: None (not asked), "pending", "delivered", "failed".
    upload_status: str | None = None
    webhook_status: str | None = None


@dataclass(frozen=True, kw_only=True)
class TaskRecord:
    """A task as the farm remembers it."""

    task_uuid: str
    api_key: str | None
    #: The validated task's JSON body as submitted (canonical JSON text).
    body: str
    status: ResultStatus
    created_at: float
    results: tuple[ResultRecord, ...] = ()
    #: 1-based place in the queue while queued, else None.
    queue_position: int | None = None


@dataclass(frozen=True, kw_only=True)
class ProgressEvent:
    """One step of a task's progress, streamed by ``Watch`` in order."""

    task_uuid: str
    kind: EventKind
    result_index: int | None = None
    queue_position: int | None = None
    chunks_done: int = 0
    chunks_total: int = 0
    frames_encoded: int = 0
    frames_total: int = 0
    message: str = ""
    extra: dict = field(default_factory=dict)


class TaskService(Protocol):
    """What the gateway needs from the task manager."""

    def submit(self, raw_task: dict, api_key: str | None) -> TaskRecord:
        """Validate, persist and enqueue one seed-shaped task; returns at once (``async`` delivery).

        Raises ``TaskValidationError``, ``DuplicateTaskError`` (same UUID, other body; an identical
        body returns the first record), ``QueueFullError``.
        """
        ...

    def get(self, task_uuid: str, api_key: str | None) -> TaskRecord:
        """The task and every result so far; ``TaskNotFoundError`` if absent or another key's."""
        ...

    def cancel(self, task_uuid: str, api_key: str | None) -> TaskRecord:
        """Stop the task (at the next denoising step) and free its workers."""
        ...

    def watch(self, task_uuid: str, api_key: str | None) -> AsyncIterator[ProgressEvent]:
        """Progress events from now until the task ends (first event: the current state)."""
        ...
