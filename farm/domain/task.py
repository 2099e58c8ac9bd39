"""The validated form of a ``videoInference`` task.

``farm.domain.validation.parse_task`` reads the seed-shaped JSON with the pydantic schema
(``farm.domain.schema.TaskSchema``, the client's view: camelCase, optional fields) and turns it
into these frozen dataclasses (or raises ``TaskValidationError`` listing every violation). Past
the gateway nothing handles loose dicts. Defaults are already resolved here: ``width``/``height``
from ``resolution``, ``num_frames`` from ``duration``, ``settings.audio`` from the reference video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

OutputFormat = Literal["MP4", "WEBM", "MOV"]
SafetyMode = Literal["none", "fast", "full"]
ReferenceImageType = Literal["grid", "image"]
ReferenceVideoType = Literal["reference", "extend"]


@dataclass(frozen=True, kw_only=True)
class Safety:
    """``safety``: content checking (``mode`` none/fast/full; the seed's wording is accepted too)."""

    check_content: bool = False
    mode: SafetyMode = "none"


@dataclass(frozen=True, kw_only=True)
class ReferenceImageGroup:
    """One item of ``inputs.referenceImages``."""

    type: ReferenceImageType
    images: tuple[str, ...]
    tag: str
    audio: str | None = None


@dataclass(frozen=True, kw_only=True)
class FrameImage:
    """One item of ``inputs.frameImages``; ``frame`` is ``"first"``, ``"last"``, an index, or None
    when the client gave a plain string (positions are then spread by a later stage)."""

    image: str
    frame: int | Literal["first", "last"] | None = None


@dataclass(frozen=True, kw_only=True)
class ReferenceVideo:
    """The single item of ``inputs.referenceVideos``."""

    type: ReferenceVideoType
    tag: str
    video: str


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """``inputs``: media that conditions the render (decoded by a later stage)."""

    reference_images: tuple[ReferenceImageGroup, ...] = ()
    frame_images: tuple[FrameImage, ...] = ()
    reference_videos: tuple[ReferenceVideo, ...] = ()
    #: Extension to the seed: ``inputs.mask``, an image or video (white = regenerate) that limits
    #: a ``reference`` video's editing to the white area (inpainting). Needs a reference video.
    mask: str | None = None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """``settings``: ``audio`` (default on: SkyReels V4 renders joint audio) and ``promptExtend``."""

    audio: bool = True
    prompt_extend: bool = True
    #: Extension to the seed: ``chunkMode`` ``parallel`` (chunks of a result render at once) or
    #: ``sequential`` (each chunk continues the previous chunk's last frames); None: the profile's.
    chunk_mode: Literal["parallel", "sequential", "codenoise"] | None = None


@dataclass(frozen=True, kw_only=True)
class VideoInferenceTask:
    """A validated ``videoInference`` task with every default applied."""

    task_uuid: str
    model: str
    positive_prompt: str
    output_type: Literal["URL"] = "URL"
    output_format: OutputFormat = "MP4"
    output_quality: int = 95
    webhook_url: str | None = None
    delivery_method: Literal["async"] = "async"
    upload_endpoint: str | None = None
    safety: Safety = field(default_factory=Safety)
    ttl: int | None = None
    include_cost: bool = False
    inputs: Inputs = field(default_factory=Inputs)
    number_results: int = 1
    #: The preset asked for, or None when explicit width/height were given.
    resolution: str | None = "1080p"
    width: int = 1920
    height: int = 1080
    duration: float = 5.0
    num_frames: int = 160
    settings: Settings = field(default_factory=Settings)
    #: Extension to the seed: base seed of result 0 (result i uses seed + i). None: random.
    seed: int | None = None
    #: Extension to the seed: scheduling priority within the API key's share (higher first).
    priority: int = 0
