"""The narrow interfaces between the farm and its generation backends.

The farm never touches a diffusers pipeline directly: a ``VideoWorker`` holds a ``VideoBackend``
and calls ``encode_prompt`` once per task and ``render_chunk`` once per temporal chunk; the
``AudioWorker`` holds an ``AudioBackend`` and calls ``render`` once per result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

# Types only: the farm's control plane (scheduler, gateway) reads profiles without loading torch.
if TYPE_CHECKING:
    import torch

    from models.prompt_extend import PromptExtender
    from models.safety import SafetyChecker


@dataclass(frozen=True, kw_only=True)
class PromptEmbeds:
    """Text conditioning computed once per task and shared by every chunk (via Ray's object store)."""

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None = None


@dataclass(frozen=True, kw_only=True)
class ChunkConditioning:
    """What steers one chunk besides the prompt: known frames, masks and reference images.

    ``frames`` maps a chunk-local frame index to ``uint8 [H, W, 3]`` RGB at the chunk's native size
    (a keyframe, a frame of a control or source video, or the previous chunk's tail in sequential
    mode). ``masks`` maps a local frame index to ``uint8 [H, W]``: 255 = regenerate, 0 = keep the
    given pixels. A frame in ``frames`` without a mask is kept as given; a frame in neither is
    generated freely. ``reference_images`` (``uint8 [h, w, 3]``, at most the native size) condition
    every frame of the chunk (subject, scene or style references).
    """

    frames: Mapping[int, np.ndarray] = field(default_factory=dict)
    masks: Mapping[int, np.ndarray] = field(default_factory=dict)
    reference_images: tuple[np.ndarray, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing conditions the chunk (plain text-to-video)."""
        return not (self.frames or self.masks or self.reference_images)

    def dense(self, num_frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The chunk as a VACE-style source video and mask.

        Returns ``video`` float32 ``[num_frames, height, width, 3]`` in ``[0, 1]`` (0.5 -- zero in the
        model's ``[-1, 1]`` range -- where nothing is given) and ``mask`` float32
        ``[num_frames, height, width]``, 1 where the model generates and 0 where it keeps pixels.
        Raises ``ValueError`` for frames outside the chunk or of the wrong size.
        """
        video = np.full((num_frames, height, width, 3), 0.5, dtype=np.float32)
        mask = np.ones((num_frames, height, width), dtype=np.float32)
        for index, frame in self.frames.items():
            self._check(index, frame.shape, (height, width, 3), num_frames, "frame")
            video[index] = frame.astype(np.float32) / 255.0
            mask[index] = 0.0
        for index, frame_mask in self.masks.items():
            self._check(index, frame_mask.shape, (height, width), num_frames, "mask")
            mask[index] = (frame_mask >= 128).astype(np.float32)
        return video, mask

    @staticmethod
    def _check(index: int, shape: tuple, expected: tuple, num_frames: int, what: str) -> None:
        if not 0 <= index < num_frames:
            raise ValueError(f"conditioning {what} at local frame {index} is outside the chunk's {num_frames} frames")
        if tuple(shape) != expected:
            raise ValueError(
                f"conditioning {what} at local frame {index} has shape {tuple(shape)}, expected {expected}"
            )


@dataclass(frozen=True, kw_only=True)
class ChunkRequest:
    """What one ``render_chunk`` call renders.

    ``latents`` is the chunk's slice of the result's global seeded noise tensor, shape
    ``[1, C, T_latent, h, w]`` (float32, CPU); overlapping chunks receive identical slices for
    their shared frames. ``num_frames`` is the chunk's pixel frame count (``4k+1`` for the Wan VAE).
    """

    chunk_index: int
    prompt: PromptEmbeds
    latents: torch.Tensor
    num_frames: int
    height: int
    width: int
    num_inference_steps: int
    guidance_scale: float
    seed: int
    #: Keyframes, source/control frames, masks and reference images (None: text only).
    conditioning: ChunkConditioning | None = None


@dataclass(frozen=True, kw_only=True)
class AudioRequest:
    """What one ``AudioBackend.render`` call renders: the whole clip's audio."""

    prompt: str
    duration_s: float
    seed: int
    num_inference_steps: int
    #: A voice/timbre reference (``referenceImages[].audio``): float32 ``[channels, n]`` at
    #: ``voice_rate``; the backend resamples it. None: no reference.
    voice: np.ndarray | None = field(default=None, repr=False)
    voice_rate: int = 0


#: Called after each denoising step with (step_index, total_steps).
StepCallback = Callable[[int, int], None]


@runtime_checkable
class VideoBackend(Protocol):
    """Renders temporal chunks of a clip at the profile's native size."""

    #: Frames per latent frame along time (4 for the Wan VAE): chunk starts are multiples of it.
    temporal_stride: int

    def latent_frame_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """``(channels, h, w)`` of one latent frame for a native ``height`` x ``width`` clip."""
        ...

    def encode_prompt(self, prompt: str, negative_prompt: str | None = None) -> PromptEmbeds:
        """Text conditioning for ``prompt``; computed once per task."""
        ...

    #: Whether ``render_chunk`` honours ``request.conditioning`` (keyframes, masks, references).
    supports_conditioning: bool

    def render_chunk(self, request: ChunkRequest, on_step: StepCallback | None = None) -> np.ndarray:
        """Frames of one chunk as ``uint8 [num_frames, height, width, 3]`` RGB."""
        ...


@runtime_checkable
class AudioBackend(Protocol):
    """Renders a clip's audio track."""

    #: Sample rate of the arrays ``render`` returns.
    sample_rate: int

    def render(self, request: AudioRequest, on_step: StepCallback | None = None) -> np.ndarray:
        """Audio as ``float32 [channels, samples]`` in ``[-1, 1]`` at ``sample_rate``, at least
        ``duration_s`` long (the farm trims or pads to the video's exact length). ``on_step`` is
        called after each denoising step and may raise to cancel."""
        ...


@dataclass(frozen=True, kw_only=True)
class ModelProfile:
    """Everything the farm needs to know about a model to plan and render with it.

    ``window_frames`` must be ``k * temporal_stride + 1``; ``overlap_frames`` must leave a stride
    (``window - overlap``) that is a multiple of ``temporal_stride`` so chunk starts fall on the
    latent grid.
    """

    model_id: str
    description: str
    window_frames: int
    overlap_frames: int
    temporal_stride: int
    #: Native generation area in pixels; the native size follows the output's aspect ratio.
    native_area: int
    #: Native width/height are rounded to multiples of this (16 for Wan).
    native_multiple: int
    num_inference_steps: int
    guidance_scale: float
    audio_steps: int
    #: Builds the backends inside a worker process (so weights load once per worker).
    video_factory: Callable[[], VideoBackend] = field(repr=False)
    audio_factory: Callable[[], AudioBackend] | None = field(default=None, repr=False)
    #: Builds the ``settings.promptExtend`` extender (None: the profile cannot extend prompts).
    prompt_extender_factory: Callable[[], PromptExtender] | None = field(default=None, repr=False)
    #: Builds the ``safety.checkContent`` checker (None: the profile cannot check content).
    safety_factory: Callable[[], SafetyChecker] | None = field(default=None, repr=False)
    #: Whether the video backend takes conditioning (keyframes, masks, reference images, the
    #: previous chunk's tail): a VACE pipeline does, a text-to-video one does not.
    takes_conditioning: bool = False
    #: How a result's chunks are rendered unless the task says (``settings.chunkMode``).
    chunk_mode: str = "parallel"
    extra: dict[str, Any] = field(default_factory=dict)

    def native_size(self, width: int, height: int) -> tuple[int, int]:
        """Native ``(width, height)`` with the output's aspect ratio and about ``native_area`` pixels."""
        aspect = width / height
        m = self.native_multiple
        native_h = max(m, round((self.native_area / aspect) ** 0.5 / m) * m)
        native_w = max(m, round(native_h * aspect / m) * m)
        return native_w, native_h
