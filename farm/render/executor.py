"""The narrow call between the scheduler and the machinery that runs its decisions.

The scheduler (``farm.scheduler.core``) decides *what* runs *where*; an ``Executor`` starts it and
later reports what happened as ``Outcome`` objects from ``poll``. ``farm.render.dispatch.RayExecutor``
is the real one (Ray actors, the object store, finisher actors); unit tests use a fake, so every
scheduling rule is testable without Ray. Frames never pass through here: outcomes carry opaque
references (Ray ``ObjectRef`` s) that the scheduler hands on without reading.

Torch-free on purpose: the scheduler imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from farm.domain.planner import ClipPlan
from farm.workers.messages import AudioMeta, AudioWork, ChunkMeta, ChunkWork, PromptWork

if TYPE_CHECKING:
    from farm.domain.task import VideoInferenceTask
    from models.base import ModelProfile

ResultKey = tuple[str, int]
"""(task UUID, result index)."""


@dataclass(frozen=True, kw_only=True)
class PoolSpec:
    """One pool of worker actors: a model's video workers or its audio worker."""

    #: ``video:<model id>`` or ``audio:<model id>``.
    name: str
    kind: Literal["video", "audio"]
    profile: Any = field(repr=False)
    gpus: float = 0.0
    cpus: float = 1.0
    #: Custom Ray resources each worker asks for (e.g. ``{"sim_gpu": 1}`` in simulations).
    resources: dict[str, float] = field(default_factory=dict)
    torch_threads: int | None = 1


@dataclass(frozen=True, kw_only=True)
class MediaConfig:
    """Where a task's media inputs come from, as its owner sees them (``farm.io.media``)."""

    allow_urls: tuple[str, ...] = ()
    assets_dir: str | None = None
    artifacts_dir: str | None = None
    api_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class PreparedInputs:
    """A task's decoded media inputs, placed on the render grid (``farm.render.prepare``)."""

    #: The delivered size (a preset follows the input's aspect ratio).
    width: int
    height: int
    #: An ``extend`` video's tail frames leading the render grid (dropped after stitching).
    lead_frames: int = 0
    #: Whether any chunk gets conditioning (frames, masks or reference images).
    conditioned: bool = False
    #: A ``reference`` video's audio is carried to the output (with this many channels).
    carried_audio: bool = False
    carried_channels: int = 2
    #: The ``ClipConditioning`` in the object store (opaque), or None.
    conditioning: Any = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class FinishSpec:
    """How one result's file is stitched and encoded."""

    path: str
    output_format: str
    quality: int
    width: int
    height: int
    fps: int
    audio: bool
    plan: ClipPlan
    lead_frames: int = 0
    #: Channels of the audio the finisher will be given (a carried track keeps its own).
    audio_channels: int = 2


@dataclass(frozen=True, kw_only=True)
class FinishedFile:
    """A result's final file and what finishing it cost."""

    path: str
    encode_seconds: float
    frames: int
    activity: tuple[tuple[float, float], ...] = ()


# -- outcomes ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class WorkerReady:
    worker: str
    load_seconds: float


@dataclass(frozen=True, kw_only=True)
class WorkerFailed:
    """A worker that could not start, or died while idle."""

    worker: str
    error: BaseException


@dataclass(frozen=True, kw_only=True)
class Prepared:
    task_uuid: str
    inputs: PreparedInputs | None = None
    error: BaseException | None = None


@dataclass(frozen=True, kw_only=True)
class PromptDone:
    #: The scheduler's unit (opaque here).
    unit: Any
    worker: str
    #: The prompt embeddings in the object store (opaque).
    embeds: Any = field(repr=False)
    extended: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChunkDone:
    #: The scheduler's unit (opaque here).
    unit: Any
    worker: str
    meta: ChunkMeta
    #: The chunk's frames in the object store (opaque).
    frames: Any = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class AudioDone:
    #: The scheduler's unit (opaque here).
    unit: Any
    worker: str
    meta: AudioMeta
    audio: Any = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class UnitFailed:
    #: The scheduler's unit (opaque here).
    unit: Any
    worker: str
    error: BaseException
    #: The worker process died (vs. the unit raising inside a live worker).
    worker_lost: bool = False


@dataclass(frozen=True, kw_only=True)
class Encoded:
    task_uuid: str
    result_index: int
    frames_done: int


@dataclass(frozen=True, kw_only=True)
class Finished:
    task_uuid: str
    result_index: int
    file: FinishedFile | None = None
    error: BaseException | None = None


@dataclass(frozen=True, kw_only=True)
class StepReport:
    """Denoising steps reported by the workers: token -> {(result, chunk): steps done}."""

    steps: dict[str, dict[tuple[int, int], int]]


Outcome = (
    WorkerReady
    | WorkerFailed
    | Prepared
    | PromptDone
    | ChunkDone
    | AudioDone
    | UnitFailed
    | Encoded
    | Finished
    | StepReport
)


class Executor(Protocol):
    """Runs what the scheduler decided; every call returns at once, results come from ``poll``."""

    def start_worker(self, pool: PoolSpec) -> str:
        """Start a worker actor of ``pool``; returns its id. ``WorkerReady`` (or ``WorkerFailed``) follows."""
        ...

    def stop_worker(self, worker: str) -> None:
        """Stop a worker (idle timeout, retirement); nothing of it is reported afterwards."""
        ...

    def prepare(self, task: VideoInferenceTask, profile: ModelProfile, media: MediaConfig) -> None:
        """Fetch and decode the task's media inputs off the GPUs; ``Prepared`` follows."""
        ...

    def encode_prompt(self, unit: Any, worker: str, work: PromptWork) -> None:
        """Extend (optionally) and encode a task's prompt; ``PromptDone`` or ``UnitFailed`` follows."""
        ...

    def render_chunk(self, unit: Any, worker: str, work: ChunkWork, prompt: Any, conditioning: Any, tail: Any) -> None:
        """Render one chunk; ``ChunkDone`` or ``UnitFailed`` follows."""
        ...

    def render_audio(self, unit: Any, worker: str, work: AudioWork, conditioning: Any) -> None:
        """Render a result's audio; ``AudioDone`` or ``UnitFailed`` follows."""
        ...

    def render_codenoise(self, unit: Any, workers: list[str], work: Any, prompt: Any, conditioning: Any) -> None:
        """Co-denoise a result's windows in lockstep on ``workers`` (a gang). One ``ChunkDone`` per
        window (``meta.chunk_index`` = the window) or one ``UnitFailed`` for the gang follows, then a
        ``WorkerFailed`` for each worker lost on the way."""
        ...

    def open_result(self, key: ResultKey, spec: FinishSpec) -> None:
        """Start finishing a result (stitch, resize, encode into ``spec.path``)."""
        ...

    def add_chunk(self, key: ResultKey, chunk_index: int, frames: Any) -> None:
        """Hand a rendered chunk to the result's finisher; ``Encoded`` follows (or ``Finished`` with an error)."""
        ...

    def add_audio(self, key: ResultKey, audio: Any = None, *, carried: Any = None) -> None:
        """Hand the result's audio (generated, or carried from a reference video's conditioning)."""
        ...

    def finish_result(self, key: ResultKey) -> None:
        """Every chunk (and the audio) is in: close the file; ``Finished`` follows."""
        ...

    def abort_result(self, key: ResultKey) -> None:
        """Drop a result's partial file; nothing of it is reported afterwards."""
        ...

    def cancel(self, token: str) -> None:
        """Ask the workers running units under ``token`` to stop at their next step."""
        ...

    def forget_token(self, token: str) -> None:
        """No unit under ``token`` runs any more."""
        ...

    def poll(self, timeout: float, tokens: Sequence[str] = ()) -> list[Outcome]:
        """Outcomes that arrived, waiting up to ``timeout`` seconds for the first; with ``tokens``,
        a ``StepReport`` for them now and then."""
        ...

    def shutdown(self) -> None:
        """Stop every actor this executor started."""
        ...
