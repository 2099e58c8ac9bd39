"""Model profiles: what the farm knows about each model id it accepts.

``get_profile(model_id)`` answers the planner and the workers. The embedded default,
``skywork:skyreels@v4`` (``farm.constants.DEFAULT_MODEL``), renders with the tiny random-weight
models of ``models.tiny`` so the whole farm runs on a laptop CPU; its output is noise. To render
with real weights, register a profile built by ``wan_profile``::

    from models.profiles import register_profile, wan_profile
    register_profile(wan_profile("skywork:skyreels@v4", weights="/mnt/weights/Wan2.1-T2V-1.3B-Diffusers",
                                 audio_weights="/mnt/weights/stable-audio-open-1.0"), replace=True)

Factories are module-level functions or ``functools.partial`` objects: Ray pickles them into the
worker processes, which build (and load weights for) their backends once.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

import torch

from farm.constants import DEFAULT_MODEL
from models.base import AudioBackend, ModelProfile, VideoBackend

# The backends import diffusers and transformers (seconds of start-up): they are imported inside
# the factories, which run in the worker processes, so the driver and the gateway stay light.
if TYPE_CHECKING:
    from models.stable_audio import StableAudioBackend
    from models.wan import WanVideoBackend

from models.weights import DEFAULT_STABLE_AUDIO_WEIGHTS, DEFAULT_WAN_WEIGHTS
from models.weights import TINY_SEED as DEFAULT_SEED

#: Native generation area of the tiny default: a 16:9 clip renders at 112x64, 9:16 at 64x112.
TINY_NATIVE_AREA = 112 * 64

#: Denoising steps of the tiny default, video and audio (each step costs a few tens of ms on a core).
TINY_STEPS = 4

#: Guidance of the tiny default. Above 1 the pipelines run classifier-free guidance (two transformer
#: passes per step, about +50% of a chunk's time): kept so the tiny path exercises the real one.
TINY_GUIDANCE_SCALE = 5.0


class UnknownModelError(KeyError, ValueError):
    """No profile answers to the requested model id (the message lists the known ones)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def tiny_video_backend(seed: int = DEFAULT_SEED) -> WanVideoBackend:
    """The tiny Wan backend of the default profile (random weights from ``seed``, CPU, float32)."""
    from models.tiny import tiny_wan_pipeline
    from models.wan import WanVideoBackend

    return WanVideoBackend(tiny_wan_pipeline(seed))


def tiny_audio_backend(seed: int = DEFAULT_SEED) -> StableAudioBackend:
    """The tiny Stable Audio backend of the default profile (stereo, 16 kHz, random weights)."""
    from models.stable_audio import StableAudioBackend
    from models.tiny import tiny_stable_audio_pipeline

    return StableAudioBackend(tiny_stable_audio_pipeline(seed), guidance_scale=7.0)


def tiny_profile(model_id: str = DEFAULT_MODEL, seed: int = DEFAULT_SEED) -> ModelProfile:
    """The embedded tiny profile: 17-frame windows overlapping by 5, 112x64 native for 16:9."""
    return ModelProfile(
        model_id=model_id,
        description="Embedded tiny random-weight Wan 2.1 + Stable Audio models (output is noise; CPU-friendly)",
        window_frames=17,
        overlap_frames=5,
        temporal_stride=4,
        native_area=TINY_NATIVE_AREA,
        native_multiple=16,
        num_inference_steps=TINY_STEPS,
        guidance_scale=TINY_GUIDANCE_SCALE,
        audio_steps=TINY_STEPS,
        video_factory=functools.partial(tiny_video_backend, seed),
        audio_factory=functools.partial(tiny_audio_backend, seed),
        extra={"tiny": True, "seed": seed},
    )


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``"bfloat16"`` / ``torch.bfloat16`` / None -> ``torch.dtype`` or None (the backend's default)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown torch dtype {dtype!r}")
    return value


def _load_wan(weights: str, **kwargs) -> WanVideoBackend:
    from models.wan import WanVideoBackend

    return WanVideoBackend.from_pretrained(weights, **kwargs)


def _load_stable_audio(weights: str, **kwargs) -> StableAudioBackend:
    from models.stable_audio import StableAudioBackend

    return StableAudioBackend.from_pretrained(weights, **kwargs)


def wan_profile(
    model_id: str,
    *,
    weights: str = DEFAULT_WAN_WEIGHTS,
    audio_weights: str | None = DEFAULT_STABLE_AUDIO_WEIGHTS,
    dtype: torch.dtype | str | None = None,
    device: str | None = None,
    window_frames: int = 81,
    overlap_frames: int = 17,
    native_area: int = 832 * 480,
    native_multiple: int = 16,
    num_inference_steps: int = 30,
    guidance_scale: float = 5.0,
    audio_steps: int = 100,
    audio_guidance_scale: float = 7.0,
    description: str | None = None,
) -> ModelProfile:
    """A profile rendering with real Wan 2.1 text-to-video weights (+ Stable Audio, unless None).

    ``weights`` / ``audio_weights`` are local folders in diffusers layout or hub ids (downloads obey
    ``HF_HUB_OFFLINE``). ``dtype`` defaults to bf16 for Wan (fp16 for audio) on a GPU and float32 on
    the CPU; ``device`` defaults to the worker's GPU when it has one. The defaults match Wan 2.1 at
    480p: 81-frame windows (its training length), 17 frames of overlap, about 832x480 pixels.
    """
    stride = 4
    if window_frames < 1 or (window_frames - 1) % stride:
        raise ValueError(f"window_frames must be {stride}k+1, got {window_frames}")
    if not 0 <= overlap_frames < window_frames or (window_frames - overlap_frames) % stride:
        raise ValueError(
            f"overlap_frames must leave a stride (window - overlap) that is a positive multiple of {stride}, "
            f"got window {window_frames}, overlap {overlap_frames}"
        )
    torch_dtype = _dtype(dtype)
    video_factory: Callable[[], VideoBackend] = functools.partial(
        _load_wan, weights, torch_dtype=torch_dtype, device=device
    )
    audio_factory: Callable[[], AudioBackend] | None = None
    if audio_weights is not None:
        audio_factory = functools.partial(
            _load_stable_audio,
            audio_weights,
            # Wan's bf16 default does not carry over: Stable Audio runs in fp16/fp32.
            torch_dtype=None if torch_dtype is torch.bfloat16 else torch_dtype,
            device=device,
            guidance_scale=audio_guidance_scale,
        )
    return ModelProfile(
        model_id=model_id,
        description=description or f"Wan 2.1 text-to-video from {weights}",
        window_frames=window_frames,
        overlap_frames=overlap_frames,
        temporal_stride=stride,
        native_area=native_area,
        native_multiple=native_multiple,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        audio_steps=audio_steps,
        video_factory=video_factory,
        audio_factory=audio_factory,
        extra={"weights": weights, "audio_weights": audio_weights},
    )


_PROFILES: dict[str, ModelProfile] = {}


def register_profile(profile: ModelProfile, *, replace: bool = False) -> None:
    """Make ``profile`` answer to ``profile.model_id``; ``replace=True`` overrides an existing one."""
    if profile.model_id in _PROFILES and not replace:
        raise ValueError(f"a profile for {profile.model_id!r} is already registered (pass replace=True)")
    _PROFILES[profile.model_id] = profile


def known_models() -> list[str]:
    """The model ids ``get_profile`` answers to, sorted."""
    return sorted(_PROFILES)


def get_profile(model_id: str) -> ModelProfile:
    """The profile of ``model_id``; raises ``UnknownModelError`` (a KeyError and a ValueError) naming the known ids."""
    try:
        return _PROFILES[model_id]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {model_id!r}; known models: {', '.join(known_models())}"
        ) from None


register_profile(tiny_profile())
