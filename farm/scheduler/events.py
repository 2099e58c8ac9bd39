"""What crosses between the gateway and the scheduler: the hand-over and the events back.

The gateway validates and persists a task, then hands it over as a ``TaskSpec``; from then on the
scheduler owns its render and reports ``SchedulerEvent`` s in order (one global sequence number).
The gateway reads them with a cursor, stores what they say and forwards them to ``Watch``; after a
restart it asks for a ``Snapshot`` and goes on from its cursor. Plain, picklable, torch-free data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from farm.domain.task import VideoInferenceTask
from farm.render.executor import MediaConfig

EventKind = Literal[
    "running",  # the task's first unit was dispatched
    "chunk",  # a chunk of a result finished: done/total
    "denoise",  # denoising steps over a result's chunks: done/total
    "audio",  # a result's audio is rendered
    "encode",  # frames of a result written to its file: done/total
    "result",  # a result ended: ``outcome`` says how
    "failed",  # the task failed as a whole (bad media, no workers, ...): code/message/parameter
    "cancelled",  # the task stopped on its owner's request
    "done",  # every result of the task has ended
    "positions",  # queue positions that changed: data = {task: position, or None once started/ended}
    "stats",  # pools, queues and utilisation (metrics)
]


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """A validated, persisted task handed to the scheduler.

    ``body`` is the seed-shaped JSON as stored; ``seeds[i]`` is result ``i``'s persisted seed;
    ``results`` are the indices still to render (a resumed task skips finished ones); files are
    written to ``out_dir`` (the artifact volume the gateway serves from).
    """

    task_uuid: str
    body: dict
    api_key: str | None
    seeds: tuple[int, ...]
    results: tuple[int, ...]
    out_dir: str
    priority: int = 0
    submitted_at: float = 0.0
    media: MediaConfig = field(default_factory=MediaConfig)
    #: The task already parsed (in-process renders); None: parse ``body``.
    parsed: VideoInferenceTask | None = None


@dataclass(frozen=True, kw_only=True)
class ResultOutcome:
    """How one result ended."""

    index: int
    seed: int
    status: Literal["success", "error", "cancelled"]
    video_uuid: str | None = None
    path: str | None = None
    extended_prompt: str | None = None
    #: Seconds of model time (video chunks, audio) and finishing, and the wall time.
    model_s: float = 0.0
    audio_s: float = 0.0
    encode_s: float = 0.0
    wall_s: float = 0.0
    chunks: int = 0
    num_frames: int = 0
    width: int = 0
    height: int = 0
    has_audio: bool = False
    activity: tuple[tuple[float, float], ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    error_parameter: str | None = None


@dataclass(frozen=True, kw_only=True)
class SchedulerEvent:
    """One thing that happened, in order. ``seq`` is global and strictly increasing."""

    seq: int
    kind: EventKind
    task_uuid: str | None = None
    result_index: int | None = None
    done: int = 0
    total: int = 0
    #: Model seconds of the chunk (``chunk``).
    seconds: float = 0.0
    outcome: ResultOutcome | None = None
    code: str | None = None
    message: str | None = None
    parameter: str | None = None
    data: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ResultSnapshot:
    index: int
    status: Literal["queued", "running", "success", "error", "cancelled"]
    chunks_done: int = 0
    chunks_total: int = 0
    outcome: ResultOutcome | None = None


@dataclass(frozen=True, kw_only=True)
class TaskSnapshot:
    task_uuid: str
    status: Literal["queued", "running", "success", "error", "cancelled"]
    results: tuple[ResultSnapshot, ...] = ()
    position: int | None = None
    #: Chunks rendered by a worker for this task, retries included (tests count re-renders).
    chunk_renders: int = 0
    code: str | None = None
    message: str | None = None
    parameter: str | None = None


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Everything the scheduler holds, and the sequence number it is current to."""

    epoch: str
    seq: int
    tasks: tuple[TaskSnapshot, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EventBatch:
    """Events after a cursor. ``resync``: the cursor fell out of the kept log (ask for a snapshot)."""

    epoch: str
    events: tuple[SchedulerEvent, ...] = ()
    resync: bool = False
