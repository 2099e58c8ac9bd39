"""What travels between the scheduler and the worker actors: small, typed, torch-free messages.

Frames never travel inside these messages: a worker returns a chunk as two objects (this
module's small ``ChunkMeta`` and the frames array), so the scheduler reads the metadata without
pulling the frames, and hands the frames' object reference on to the finisher that stitches them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from farm.domain.planner import ChunkPlan
from models.base import ChunkConditioning


@dataclass(frozen=True, kw_only=True)
class ChunkWork:
    """One chunk of one result, as sent to a ``VideoWorker``."""

    task_uuid: str
    result_index: int
    chunk: ChunkPlan
    seed: int
    #: Native (model) size of the result.
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    #: The render's cancel token: the worker asks the ``CancelFlags`` actor about it after each
    #: denoising step (throttled) and reports its step under it.
    cancel_token: str | None = None
    #: ``fast`` (first, middle and last frame) or ``full`` (every frame): the worker runs the
    #: profile's safety checker on the chunk's frames; ``none``: no check.
    safety_mode: str = "none"
    #: Sequential mode: render-grid frames ``[tail_start, chunk.start + overlap)`` of the
    #: previous chunk (whose own first frame is ``tail_start``) are known frames of this chunk;
    #: the previous chunk's frames come as a separate argument. None: no tail.
    tail_start: int | None = None


@dataclass(frozen=True, kw_only=True)
class PromptWork:
    """Encode (and optionally first extend) a task's prompt on a video worker."""

    task_uuid: str
    prompt: str
    negative_prompt: str | None = None
    #: Extend with the profile's extender first, with this seed; None: do not extend.
    extend_seed: int | None = None


@dataclass(frozen=True, kw_only=True)
class SafetyFinding:
    """The safety checker's verdict on a chunk (``frame`` chunk-local), plain data."""

    flagged: bool
    concept: str | None
    score: float
    frame: int | None


@dataclass(frozen=True, kw_only=True)
class ChunkMeta:
    """The small half of a rendered chunk: what the scheduler needs to know about it."""

    task_uuid: str
    result_index: int
    chunk_index: int
    #: Model seconds and wall-clock start (``time.time``) of the render.
    seconds: float
    started_at: float
    worker_pid: int
    num_frames: int
    safety: SafetyFinding | None = None


@dataclass(frozen=True, kw_only=True)
class AudioWork:
    """A result's audio, as sent to an ``AudioWorker``."""

    task_uuid: str
    result_index: int
    prompt: str
    duration_s: float
    seed: int
    num_inference_steps: int
    cancel_token: str | None = None


@dataclass(frozen=True, kw_only=True)
class AudioMeta:
    """The small half of a rendered audio track."""

    task_uuid: str
    result_index: int
    seconds: float
    started_at: float
    sample_rate: int


@dataclass(frozen=True, eq=False)
class ClipConditioning:
    """One result's conditioning on the render grid (the same for every result of a task)."""

    #: Render-grid frames before the first delivered frame (``extend``: the input's tail).
    lead_frames: int = 0
    #: Render-grid frame -> ``uint8 [H, W, 3]`` at native size.
    frames: dict[int, np.ndarray] = field(default_factory=dict)
    #: Render-grid frame -> ``uint8 [H, W]``, 255 = regenerate.
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    reference_images: tuple[np.ndarray, ...] = ()
    #: The reference video's audio, carried to the output: (float32 ``[ch, n]``, rate).
    carried_audio: tuple[np.ndarray, int] | None = None
    #: The first reference group's voice reference: (float32 ``[ch, n]``, rate).
    voice: tuple[np.ndarray, int] | None = None

    @property
    def empty(self) -> bool:
        """True when no chunk gets anything (text-to-video)."""
        return not (self.frames or self.masks or self.reference_images)

    def for_chunk(
        self, chunk: ChunkPlan, extra_frames: dict[int, np.ndarray] | None = None
    ) -> ChunkConditioning | None:
        """The share of ``chunk`` in chunk-local indices; ``extra_frames`` (render-grid frame ->
        pixels, e.g. the previous chunk's tail in sequential mode) fill frames the inputs leave free.
        None when the chunk gets nothing."""
        frames = {g - chunk.start: f for g, f in (extra_frames or {}).items() if chunk.start <= g < chunk.end}
        frames.update({g - chunk.start: f for g, f in self.frames.items() if chunk.start <= g < chunk.end})
        masks = {g - chunk.start: m for g, m in self.masks.items() if chunk.start <= g < chunk.end}
        if not (frames or masks or self.reference_images):
            return None
        return ChunkConditioning(frames=frames, masks=masks, reference_images=self.reference_images)
