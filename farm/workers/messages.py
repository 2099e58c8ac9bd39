"""What travels between the scheduler and the worker actors: small, typed, torch-free messages.

Frames never travel inside these messages: a worker returns a chunk as two objects (this
module's small ``ChunkMeta`` and the frames), so the scheduler reads the metadata without
pulling the frames, and hands the frames' object reference on to the finisher that stitches them.
The frames travel as ``Yuv420Frames`` (yuv420p planes, half the bytes of RGB24) or, when the work
asks for ``wire_format="rgb"``, as a uint8 RGB array (see "Frames on the wire" at the end).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

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
    #: How the frames travel back (``resolve_wire_format``): ``"yuv420p"`` planes, ``"rgb"``, or
    #: None for ``$FARM_WIRE_FORMAT`` (default ``"yuv420p"``). ``wire_format_for`` picks it per
    #: output format.
    wire_format: str | None = None


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


# -- co-denoising (chunkMode: codenoise) -------------------------------------------------------

WindowKey = tuple[str, int]
"""A co-denoised window kept on a worker: (render id, window index). The render id is fresh for
every lockstep run, so windows of a retried or concurrent run never collide."""


@dataclass(frozen=True, kw_only=True)
class CodenoiseWork:
    """A whole result co-denoised in lockstep, as the scheduler hands it to
    ``RayExecutor.render_codenoise`` (built from a ``farm.render.codenoise.CodenoisePlan``)."""

    task_uuid: str
    result_index: int
    #: The plan's windows (``CodenoisePlan.chunks``), in order; ``index`` is the window index.
    windows: tuple[ChunkPlan, ...]
    #: Per window, float32 fusion weights over its latent frames (``CodenoisePlan.fusion_weights``):
    #: the windows covering a latent frame sum to 1 there.
    fusion_weights: tuple[np.ndarray, ...] = field(repr=False)
    seed: int
    #: Native (model) size of the result.
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    #: As ``ChunkWork.cancel_token``: each window reports its steps under it and stops once cancelled.
    cancel_token: str | None = None
    #: As ``ChunkWork.safety_mode``, checked on each decoded window.
    safety_mode: str = "none"
    #: As ``ChunkWork.wire_format``, for each decoded window.
    wire_format: str | None = None

    def __post_init__(self) -> None:
        if len(self.fusion_weights) != len(self.windows):
            raise ValueError(
                f"need one fusion weight vector per window, got {len(self.fusion_weights)} for "
                f"{len(self.windows)} windows"
            )
        for window, weights in zip(self.windows, self.fusion_weights):
            if weights.shape != (window.latent_frames,):
                raise ValueError(
                    f"fusion weights of window {window.index} have shape {weights.shape}, expected "
                    f"({window.latent_frames},)"
                )


@dataclass(frozen=True, kw_only=True)
class WindowWork:
    """One co-denoised window, as a ``VideoWorker`` keeps it across steps (``windows_begin``)."""

    task_uuid: str
    result_index: int
    chunk: ChunkPlan
    #: Local latent frames of the window that other windows cover too, ascending: the worker
    #: sends these slices of every prediction and takes their fused values back.
    shared: tuple[int, ...]
    seed: int
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    cancel_token: str | None = None
    safety_mode: str = "none"
    wire_format: str | None = None


@dataclass(frozen=True, kw_only=True)
class WindowsReply:
    """A worker's answer for the windows it was asked about (``windows_begin``, ``windows_predict``,
    ``windows_step``): small, except the prediction slices the driver fuses."""

    #: Per window, the shared slices (``WindowWork.shared``) of its guided prediction at the step
    #: asked for: float32 ``[1, C, len(shared), h, w]``. Empty when nothing was predicted.
    predictions: dict[WindowKey, np.ndarray] = field(default_factory=dict, repr=False)
    #: Per window, a digest of each shared latent frame of its current latents: windows sharing a
    #: frame must hold bit-identical latents there after every step.
    checksums: dict[WindowKey, tuple[str, ...]] = field(default_factory=dict, repr=False)
    #: Denoising steps of the windows' schedule.
    num_steps: int = 0
    #: Whether a window restarted from a latent checkpoint continues bit-identically (the
    #: backend's ``resumable``: single-step schedulers yes, multistep ones no).
    resumable: bool = True
    #: Seconds of model computation in this call (the lockstep overhead is the rest).
    seconds: float = 0.0


class CheckpointLostError(RuntimeError):
    """A window's latent checkpoint could not be fetched (the node that held it is gone): the
    driver restarts the result from its noise instead."""


# -- frames on the wire -------------------------------------------------------------------------

WireFormat = Literal["rgb", "yuv420p"]
"""How a worker returns frames: uint8 RGB ``[n, H, W, 3]``, or ``Yuv420Frames`` (12 bits a pixel)."""

WIRE_FORMATS: tuple[str, ...] = ("rgb", "yuv420p")
#: Environment variable giving the wire format of work that does not name one (read by the workers).
WIRE_FORMAT_ENV = "FARM_WIRE_FORMAT"
#: yuv420p is what the MP4 and WEBM codecs encode: converted once on the worker's device, the frames
#: cross the object store at half the bytes and the finisher skips the colour conversion.
DEFAULT_WIRE_FORMAT: WireFormat = "yuv420p"


def resolve_wire_format(requested: str | None = None) -> WireFormat:
    """``requested``, else ``$FARM_WIRE_FORMAT``, else ``"yuv420p"``; ``ValueError`` for anything else.

    >>> resolve_wire_format("rgb")
    'rgb'
    """
    source = "wire_format"
    if requested is None:
        requested, source = os.environ.get(WIRE_FORMAT_ENV) or DEFAULT_WIRE_FORMAT, WIRE_FORMAT_ENV
    if requested not in WIRE_FORMATS:
        raise ValueError(f"{source} must be one of {WIRE_FORMATS} (received: {requested!r})")
    return requested  # type: ignore[return-value]  # checked against WIRE_FORMATS just above


def wire_format_for(output_format: str, *, sequential: bool = False) -> WireFormat | None:
    """The ``wire_format`` the chunks of a result should ask their workers for.

    ``"rgb"`` where yuv420p would lose something: MOV is ProRes 4:2:2 at 10 bits, which built
    from RGB keeps every chroma row and the conversion's extra precision; in ``sequential`` mode a
    chunk's frames are also the next chunk's known frames, which must be exactly what the model
    made. Otherwise None: the workers' default (``$FARM_WIRE_FORMAT``, yuv420p).

    >>> wire_format_for("MOV"), wire_format_for("MP4", sequential=True), wire_format_for("WEBM")
    ('rgb', 'rgb', None)
    """
    return "rgb" if output_format.upper() == "MOV" or sequential else None


@dataclass(frozen=True, eq=False, repr=False)
class Yuv420Frames:
    """A chunk's frames as yuv420p planes: what a video worker returns instead of RGB24.

    BT.709, limited range, chroma sited and filtered as libswscale writes it for the encoder
    (``kernels.yuv``), at the chunk's native size: ``y`` uint8 ``[n, H, W]``, ``u`` and ``v`` uint8
    ``[n, ceil(H/2), ceil(W/2)]``. 12 bits a pixel, half of RGB24. Equal when every plane is.
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    def __post_init__(self) -> None:
        planes = (self.y, self.u, self.v)
        if any(not isinstance(p, np.ndarray) or p.dtype != np.uint8 for p in planes) or self.y.ndim != 3:
            raise ValueError(
                "Yuv420Frames needs uint8 numpy planes y [n, H, W], u and v [n, H/2, W/2], got "
                + ", ".join(f"{getattr(p, 'dtype', type(p).__name__)} {tuple(getattr(p, 'shape', ()))}" for p in planes)
            )
        n, height, width = self.y.shape
        chroma = (n, math.ceil(height / 2), math.ceil(width / 2))
        if self.u.shape != chroma or self.v.shape != chroma:
            raise ValueError(
                f"Yuv420Frames with y {self.y.shape} needs u and v of shape {chroma}, got {self.u.shape} and {self.v.shape}"
            )

    def __len__(self) -> int:
        return self.y.shape[0]

    @property
    def height(self) -> int:
        return self.y.shape[1]

    @property
    def width(self) -> int:
        return self.y.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes of the three planes."""
        return self.y.nbytes + self.u.nbytes + self.v.nbytes

    def __repr__(self) -> str:
        return f"Yuv420Frames({len(self)} frames of {self.width}x{self.height}, {self.nbytes} bytes)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Yuv420Frames):
            return NotImplemented
        return all(np.array_equal(a, b) for a, b in zip((self.y, self.u, self.v), (other.y, other.u, other.v)))

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside: equal, never hashed
