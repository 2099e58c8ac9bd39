"""What a render reports: progress events, per-result timings and the finished results.

Plain, torch-free data shared by the in-process render (``farm.scheduler.local.render_task``), the
gateway's task manager and its metrics. Also the two small rules every caller needs: the seeds of a
task's results and its chunk plan.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from farm.domain.errors import FarmError
from farm.domain.planner import ClipPlan, plan_clip
from farm.domain.task import VideoInferenceTask

if TYPE_CHECKING:
    from models.base import ModelProfile

Stage = Literal["chunk", "denoise", "audio", "encode", "result"]


@dataclass(frozen=True, kw_only=True)
class RenderEvent:
    """Progress of one result: ``done`` of ``total`` units of ``stage``.

    Stages: ``chunk`` (chunks rendered), ``denoise`` (denoising steps done over all of the result's
    chunks, finished ones included; about every half second while chunks render), ``audio`` (0/1),
    ``encode`` (frames written to the container), ``result`` (1/1 once the file is final).
    """

    stage: Stage
    result_index: int
    done: int
    total: int
    #: For ``chunk``: the model seconds of the chunk just rendered (metrics); else 0.
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ResultTimings:
    """Where a result's time went, in seconds."""

    #: Sum of the model time of its chunks (over all workers).
    model_s: float
    #: Audio model time.
    audio_s: float
    #: Stitch, resize and encode time in the finisher.
    encode_s: float
    #: From the hand-over to the file being final.
    wall_s: float
    #: Wall-clock (``time.time``) intervals in which a model or the encoder worked on this result.
    activity: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, kw_only=True)
class RenderResult:
    """One delivered file of a task."""

    index: int
    seed: int
    video_uuid: str
    path: Path | None
    output_format: str
    num_frames: int
    width: int
    height: int
    fps: int
    has_audio: bool
    chunks: int
    timings: ResultTimings
    #: The prompt the model rendered when ``settings.promptExtend`` extended it, else None.
    extended_prompt: str | None = None
    #: Set when this result failed on its own (e.g. ``SafetyError``) while the others went on;
    #: ``path`` is then None and nothing may be delivered.
    error: FarmError | None = None


def result_seeds(task: VideoInferenceTask, base_seed: int | None = None) -> list[int]:
    """Seeds of the task's results: ``base + i``; the base is the task's ``seed``, else random."""
    base = base_seed if base_seed is not None else task.seed
    if base is None:
        base = secrets.randbelow(2**31)
    return [base + i for i in range(task.number_results)]


def plan_task(
    task: VideoInferenceTask, profile: ModelProfile, blend: Literal["linear", "cosine"] = "cosine", lead_frames: int = 0
) -> ClipPlan:
    """The chunk plan of each of ``task``'s results on ``profile`` (``lead_frames``: an extended
    video's tail, rendered in front of the delivered frames and dropped after stitching)."""
    return plan_clip(
        task.num_frames + lead_frames,
        window_frames=profile.window_frames,
        overlap_frames=profile.overlap_frames,
        temporal_stride=profile.temporal_stride,
        blend=blend,
    )
