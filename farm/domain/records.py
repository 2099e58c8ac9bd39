"""The task lifecycle as the gateway sees it: records, progress events and the manager interface.

``TaskManager`` (``farm/scheduler/manager.py``) implements ``TaskService``; the gRPC servicer and the JSON/REST
face call only these methods, so both faces share one set of handlers, one validation and one
error table (``farm.domain.errors.error_info``).

States, per result: ``queued -> running -> success | error | cancelled``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict, cast

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


class ProgressExtra(TypedDict, total=False):
    """The named details of a ``ProgressEvent`` (its ``extra``), by their wire names.

    Both faces send these keys as they are (gRPC ``ProgressEvent.extra``, a ``Struct``; JSON
    ``extra``), so a client reads the same names whichever face it uses. Which kinds carry which:

    ========== ============================================================
    steps      ``stepsDone``, ``stepsTotal`` (denoising steps over the result's chunks)
    result     ``videoUUID``, ``seed``, ``extendedPrompt``; a failed result ``code``, ``seed``
    delivered  ``upload``, ``webhook`` (``delivered`` or ``failed``, for the parts the task asked for)
    error      ``code``, ``parameter`` (the field at fault, when there is one)
    done       ``succeeded``, ``failed`` (result counts), ``status``
    ========== ============================================================

    Build one with ``progress_extra`` (keyword arguments in Python's spelling).
    """

    stepsDone: int
    stepsTotal: int
    videoUUID: str
    seed: int
    extendedPrompt: str
    code: str
    parameter: str
    upload: str
    webhook: str
    succeeded: int
    failed: int
    status: str


#: ``progress_extra`` keyword -> wire key.
PROGRESS_EXTRA_KEYS: dict[str, str] = {
    "steps_done": "stepsDone",
    "steps_total": "stepsTotal",
    "video_uuid": "videoUUID",
    "seed": "seed",
    "extended_prompt": "extendedPrompt",
    "code": "code",
    "parameter": "parameter",
    "upload": "upload",
    "webhook": "webhook",
    "succeeded": "succeeded",
    "failed": "failed",
    "status": "status",
}


def progress_extra(
    *,
    steps_done: int | None = None,
    steps_total: int | None = None,
    video_uuid: str | None = None,
    seed: int | None = None,
    extended_prompt: str | None = None,
    code: str | None = None,
    parameter: str | None = None,
    upload: str | None = None,
    webhook: str | None = None,
    succeeded: int | None = None,
    failed: int | None = None,
    status: str | None = None,
) -> ProgressExtra:
    """A ``ProgressExtra`` with the given details; ``None`` (or an empty string) leaves a key out.

    >>> progress_extra(steps_done=3, steps_total=40)
    {'stepsDone': 3, 'stepsTotal': 40}
    >>> progress_extra(video_uuid="v1", seed=7, extended_prompt=None)
    {'videoUUID': 'v1', 'seed': 7}
    """
    given = {
        "steps_done": steps_done,
        "steps_total": steps_total,
        "video_uuid": video_uuid,
        "seed": seed,
        "extended_prompt": extended_prompt,
        "code": code,
        "parameter": parameter,
        "upload": upload,
        "webhook": webhook,
        "succeeded": succeeded,
        "failed": failed,
        "status": status,
    }
    return cast(ProgressExtra, {PROGRESS_EXTRA_KEYS[k]: v for k, v in given.items() if v is not None and v != ""})


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
    #: Named details by kind (``ProgressExtra``; built with ``progress_extra``).
    extra: ProgressExtra = field(default_factory=lambda: ProgressExtra())


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
