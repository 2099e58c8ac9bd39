"""Model profiles: what the farm knows about each model id it accepts.

``get_profile(model_id)`` answers the planner and the workers. The embedded default,
``skywork:skyreels@v4`` (``farm.domain.constants.DEFAULT_MODEL``), renders with the tiny random-weight
models of ``models.tiny`` so the whole farm runs on a laptop CPU; its output is noise. To render
with real weights, register a profile built by ``wan_profile``::

    from models.profiles import register_profile, wan_profile
    register_profile(wan_profile("skywork:skyreels@v4", weights="/mnt/weights/Wan2.1-T2V-1.3B-Diffusers",
                                 audio_weights="/mnt/weights/stable-audio-open-1.0"), replace=True)

or write a YAML profile (``models.profile_config``, ``docs/profiles.md``), which ends up here too.

Factories are module-level functions or ``functools.partial`` objects: Ray pickles them into the
worker processes, which build (and load weights for) their backends once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from farm.domain.constants import DEFAULT_MODEL
from models.base import AudioBackend, ModelProfile, VideoBackend
from models.prompt_extend import PromptExtender, TemplateExtender
from models.safety import SafetyChecker

# The backends import diffusers and transformers (seconds of start-up): they are imported inside
# the factories, which run in the worker processes, so the driver and the gateway stay light.
if TYPE_CHECKING:
    import torch

    from models.prompt_extend import TransformersExtender
    from models.safety import ClipSafetyChecker
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

#: Concepts the tiny default's safety checker looks for.
TINY_SAFETY_CONCEPTS = ("nudity", "graphic violence", "gore")

#: Threshold of the tiny default's safety checker. Its random CLIP has logit scale 1 (see
#: ``models.tiny.tiny_clip_model``), so with 3 concepts and the 6 default neutral prompts a concept's
#: probability is at most e / (e + 8/e) ~= 0.48 and in practice about 1/9 ~= 0.11: 0.5 can never
#: flag, while the check itself (CLIP on every frame asked for) runs for real.
TINY_SAFETY_THRESHOLD = 0.5

#: Video pipeline classes a real-weight profile may name (kept in step with ``models.wan.VIDEO_PIPELINES``,
#: which is not imported here because it pulls in diffusers).
VIDEO_PIPELINES = ("WanPipeline", "WanVACEPipeline", "SkyReelsV2DiffusionForcingPipeline")
#: Those of ``VIDEO_PIPELINES`` that take conditioning (keyframes, masks, reference images).
CONDITIONING_PIPELINES = ("WanVACEPipeline",)

#: Temporal stride of the Wan VAE, shared by every supported video pipeline.
WAN_TEMPORAL_STRIDE = 4


class UnknownModelError(KeyError, ValueError):
    """No profile answers to the requested model id (the message lists the known ones)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def tiny_video_backend(seed: int = DEFAULT_SEED) -> WanVideoBackend:
    """The tiny Wan 2.1 VACE backend of the default profile (random weights from ``seed``, CPU,
    float32): VACE, so the embedded default takes every conditioning input end to end."""
    from models.tiny import tiny_vace_pipeline
    from models.wan import WanVideoBackend

    return WanVideoBackend(tiny_vace_pipeline(seed))


def tiny_audio_backend(seed: int = DEFAULT_SEED) -> StableAudioBackend:
    """The tiny Stable Audio backend of the default profile (stereo, 16 kHz, random weights)."""
    from models.stable_audio import StableAudioBackend
    from models.tiny import tiny_stable_audio_pipeline

    return StableAudioBackend(tiny_stable_audio_pipeline(seed), guidance_scale=7.0)


def tiny_safety_checker(seed: int = DEFAULT_SEED, threshold: float = TINY_SAFETY_THRESHOLD) -> ClipSafetyChecker:
    """The tiny CLIP safety checker of the default profile (random weights from ``seed``, CPU).

    It runs the real zero-shot scoring on random weights, so its verdicts mean nothing; at the
    default threshold it never flags (see ``TINY_SAFETY_THRESHOLD``).
    """
    from models.safety import ClipSafetyChecker
    from models.tiny import tiny_clip

    model, tokenizer, image_processor = tiny_clip(seed)
    return ClipSafetyChecker(model, tokenizer, image_processor, concepts=TINY_SAFETY_CONCEPTS, threshold=threshold)


def tiny_profile(model_id: str = DEFAULT_MODEL, seed: int = DEFAULT_SEED) -> ModelProfile:
    """The embedded tiny profile: 17-frame windows overlapping by 5, 112x64 native for 16:9; the
    template prompt extender and a tiny random-weight CLIP safety checker that never flags."""
    return ModelProfile(
        model_id=model_id,
        description="Embedded tiny random-weight Wan 2.1 VACE + Stable Audio models (output is noise; CPU-friendly)",
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
        prompt_extender_factory=TemplateExtender,
        safety_factory=functools.partial(tiny_safety_checker, seed),
        takes_conditioning=True,
        extra={"tiny": True, "seed": seed},
    )


#: dtype names a profile may give (``auto``: the backend's default, bf16 on a GPU, fp32 on the CPU).
DTYPE_NAMES = ("auto", "float32", "float16", "bfloat16", "float64")


def _dtype_key(dtype: torch.dtype | str | None) -> str | None:
    """``torch.bfloat16`` / ``"bfloat16"`` / ``"auto"`` / None -> a dtype name or None, without
    importing torch (profiles are read by processes that load no model)."""
    if dtype is None:
        return None
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPE_NAMES:
        raise ValueError(f"unknown torch dtype {dtype!r}; known: {', '.join(DTYPE_NAMES)}")
    return None if name == "auto" else name


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``"bfloat16"`` / ``torch.bfloat16`` / ``"auto"`` / None -> ``torch.dtype`` or None (the backend's default)."""
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return None
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown torch dtype {dtype!r}")
    return value


def _dtype_name(dtype: torch.dtype | str | None) -> str:
    return "auto" if dtype is None else str(dtype).removeprefix("torch.")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no hub access (``1``/``true``/``yes``/``on``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_kwargs() -> dict[str, Any]:
    """``from_pretrained`` keywords for the hub settings of the process that loads the weights.

    ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` once, at import; passing ``local_files_only``
    explicitly makes a worker whose environment says offline never reach the network, whenever
    the variable was set. The loaders below call it in the worker, when the factory runs.
    """
    return {"local_files_only": True} if hub_offline() else {}


#: Speed options of ``wan_profile`` (the ``speed:`` section of a YAML profile), kept in step with
#: ``models.wan`` (not imported here: it pulls in diffusers; a test checks they agree).
HALF_PRECISIONS = ("bfloat16", "float16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
FIRST_BLOCK_CACHE_PIPELINES = ("WanPipeline", "WanVACEPipeline")


def _load_wan(
    weights: str,
    *,
    half_precision: str | None = None,
    compile_mode: str | None = None,
    first_block_cache: float | None = None,
    vae_tiling: tuple[int, int] | None = None,
    **kwargs,
) -> WanVideoBackend:
    from models.wan import SpeedOptions, WanVideoBackend

    kwargs["torch_dtype"] = _dtype(kwargs.get("torch_dtype"))  # a name until the worker loads
    # Plain values until here too: the options object (and torch) exist only in the worker.
    speed = SpeedOptions(
        half_precision=half_precision,
        compile_mode=compile_mode,
        first_block_cache=first_block_cache,
        vae_tiling=vae_tiling,
    )
    return WanVideoBackend.from_pretrained(weights, speed=speed, **kwargs, **hub_kwargs())


def _load_stable_audio(weights: str, **kwargs) -> StableAudioBackend:
    from models.stable_audio import StableAudioBackend

    kwargs["torch_dtype"] = _dtype(kwargs.get("torch_dtype"))
    return StableAudioBackend.from_pretrained(weights, **kwargs, **hub_kwargs())


def load_prompt_extender(model: str, **kwargs: Any) -> TransformersExtender:
    """``TransformersExtender.from_pretrained(model, **kwargs)`` honouring ``HF_HUB_OFFLINE``: the
    factory a profile gets for ``prompt_extender: {model: ...}`` (bind it with ``functools.partial``)."""
    from models.prompt_extend import TransformersExtender

    return TransformersExtender.from_pretrained(model, **kwargs, **hub_kwargs())


def load_safety_checker(model: str, *, concepts: Sequence[str], threshold: float, **kwargs: Any) -> ClipSafetyChecker:
    """``ClipSafetyChecker.from_pretrained(model, ...)`` honouring ``HF_HUB_OFFLINE``: the factory a
    profile gets for ``safety_checker: {model: ..., concepts: [...], threshold: ...}``."""
    from models.safety import ClipSafetyChecker

    return ClipSafetyChecker.from_pretrained(model, concepts=concepts, threshold=threshold, **kwargs, **hub_kwargs())


class InvalidProfileField(ValueError):
    """A ``wan_profile`` argument breaks a rule; ``field`` names it, ``reason`` says how (the YAML
    loader reports the two at the field's place in the file)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field} {reason}")
        self.field, self.reason = field, reason


def check_windows(window_frames: int, overlap_frames: int, stride: int = WAN_TEMPORAL_STRIDE) -> None:
    """Raise ``InvalidProfileField`` unless ``window_frames`` is ``stride*k+1`` and ``overlap_frames``
    leaves a positive stride (window - overlap) that is a multiple of ``stride``."""
    if window_frames < 1 or (window_frames - 1) % stride:
        raise InvalidProfileField("window_frames", f"must be {stride}k+1, got {window_frames}")
    if not 0 <= overlap_frames < window_frames or (window_frames - overlap_frames) % stride:
        raise InvalidProfileField(
            "overlap_frames",
            f"must be below window_frames ({window_frames}) and leave a stride (window - overlap) "
            f"that is a multiple of {stride}, got {overlap_frames}",
        )


def _checked_speed(
    pipeline: str,
    torch_dtype: str | None,
    chunk_mode: str,
    *,
    half_precision: str | None = None,
    compile_mode: str | None = None,
    first_block_cache: float | None = None,
    vae_tiling: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """``wan_profile``'s speed options checked against the rest of the profile: the ones set, as the
    YAML writes them (``{}`` for none). ``InvalidProfileField`` names an option by its YAML path."""
    speed: dict[str, Any] = {}
    if half_precision is not None:
        if half_precision not in HALF_PRECISIONS:
            raise InvalidProfileField(
                "speed.half_precision", f"must be one of {', '.join(HALF_PRECISIONS)}, got {half_precision!r}"
            )
        if torch_dtype is not None:
            # Both would set the transformer's dtype on a GPU; one rule is easier to read.
            raise InvalidProfileField(
                "speed.half_precision",
                f"sets the transformer's dtype on CUDA: leave video.dtype auto, got {torch_dtype}",
            )
        speed["half_precision"] = half_precision
    if compile_mode is not None:
        if compile_mode not in COMPILE_MODES:
            raise InvalidProfileField(
                "speed.compile", f"must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}"
            )
        speed["compile"] = compile_mode
    if first_block_cache is not None:
        if not first_block_cache > 0:
            raise InvalidProfileField("speed.first_block_cache", f"must be > 0, got {first_block_cache}")
        if pipeline not in FIRST_BLOCK_CACHE_PIPELINES:
            raise InvalidProfileField(
                "speed.first_block_cache",
                f"needs {' or '.join(FIRST_BLOCK_CACHE_PIPELINES)} (diffusers has no First Block Cache for "
                f"{pipeline}'s transformer blocks), got {pipeline}",
            )
        if chunk_mode == "codenoise":
            # Co-denoised windows take their steps interleaved on one transformer: they would
            # compare their first blocks with each other's and reuse each other's residuals.
            raise InvalidProfileField(
                "speed.first_block_cache",
                "cannot be used with chunk_mode codenoise (the windows would share one cache)",
            )
        speed["first_block_cache"] = first_block_cache
    if vae_tiling is not None:
        tile, stride = vae_tiling
        if tile % 8 or stride % 8 or not 0 < stride < tile:
            raise InvalidProfileField(
                "speed.vae_tiling",
                f"needs tile and stride multiples of 8 (the Wan VAE's stride) with 0 < stride < tile, "
                f"got tile {tile}, stride {stride}",
            )
        speed["vae_tiling"] = {"tile": tile, "stride": stride}
    return speed


def wan_profile(
    model_id: str,
    *,
    weights: str = DEFAULT_WAN_WEIGHTS,
    pipeline: str = "WanPipeline",
    audio_weights: str | None = DEFAULT_STABLE_AUDIO_WEIGHTS,
    dtype: torch.dtype | str | None = None,
    audio_dtype: torch.dtype | str | None = None,
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
    prompt_extender_factory: Callable[[], PromptExtender] | None = None,
    safety_factory: Callable[[], SafetyChecker] | None = None,
    extra: Mapping[str, Any] | None = None,
    half_precision: str | None = None,
    compile_mode: str | None = None,
    first_block_cache: float | None = None,
    vae_tiling: tuple[int, int] | None = None,
) -> ModelProfile:
    """A profile rendering with real Wan-family weights (+ Stable Audio, unless ``audio_weights`` is None).

    The one constructor of real-weight profiles: ``farm render --weights`` and the YAML loader
    (``models.profile_config``) both build theirs here. ``pipeline`` is one of ``VIDEO_PIPELINES``;
    ``weights`` / ``audio_weights`` are local folders in diffusers layout or hub ids (with
    ``HF_HUB_OFFLINE`` set, hub ids resolve from the local cache only). ``dtype`` (a torch dtype, its
    name, or ``"auto"``/None) defaults to bf16 on a GPU and float32 on the CPU; ``audio_dtype``
    defaults to ``dtype``, except that bf16 becomes the audio backend's default (fp16/fp32).
    ``device`` defaults to the worker's GPU when it has one. The defaults match Wan 2.1 at 480p:
    81-frame windows (its training length), 17 frames of overlap, about 832x480 pixels.
    ``extra`` is merged over the profile's own ``extra`` (pipeline, weights, dtype, audio_weights,
    and ``speed``: the speed options set, when any is).

    The speed options (``models.wan.SpeedOptions``; the ``speed:`` keys of a YAML profile, all off
    by default) travel as plain values and are applied in the worker: ``half_precision``
    (``"bfloat16"``/``"float16"``: transformer and VAE on CUDA, float32 elsewhere; needs ``dtype``
    auto), ``compile_mode`` (a ``torch.compile`` mode, ``"default"`` included), ``first_block_cache``
    (the threshold, > 0; ``WanPipeline``/``WanVACEPipeline`` only, not with ``chunk_mode`` codenoise)
    and ``vae_tiling`` (``(tile, stride)`` pixels, multiples of 8, ``stride < tile``).
    Raises ``InvalidProfileField`` (a ``ValueError``) for a pipeline, window, overlap or speed
    option it cannot render; a speed option's ``field`` is its YAML path (``speed.compile``).
    """
    if pipeline not in VIDEO_PIPELINES:
        raise InvalidProfileField("pipeline", f"must be one of {', '.join(VIDEO_PIPELINES)}, got {pipeline!r}")
    check_windows(window_frames, overlap_frames)
    torch_dtype = _dtype_key(dtype)
    chunk_mode = str((extra or {}).get("chunk_mode", "parallel"))
    speed_kwargs: dict[str, Any] = {
        "half_precision": half_precision,
        "compile_mode": compile_mode,
        "first_block_cache": first_block_cache,
        "vae_tiling": None if vae_tiling is None else (int(vae_tiling[0]), int(vae_tiling[1])),
    }
    speed_kwargs = {key: value for key, value in speed_kwargs.items() if value is not None}
    speed = _checked_speed(pipeline, torch_dtype, chunk_mode, **speed_kwargs)
    video_factory: Callable[[], VideoBackend] = functools.partial(
        _load_wan,
        weights,
        pipeline=pipeline,
        torch_dtype=torch_dtype,
        device=device,
        **speed_kwargs,
    )
    audio_factory: Callable[[], AudioBackend] | None = None
    if audio_weights is not None:
        # Wan's bf16 default does not carry over: Stable Audio runs in fp16/fp32.
        audio_torch_dtype = (
            (None if torch_dtype == "bfloat16" else torch_dtype) if audio_dtype is None else _dtype_key(audio_dtype)
        )
        audio_factory = functools.partial(
            _load_stable_audio,
            audio_weights,
            torch_dtype=audio_torch_dtype,
            device=device,
            guidance_scale=audio_guidance_scale,
        )
    return ModelProfile(
        model_id=model_id,
        description=description or f"{pipeline} from {weights}",
        window_frames=window_frames,
        overlap_frames=overlap_frames,
        temporal_stride=WAN_TEMPORAL_STRIDE,
        native_area=native_area,
        native_multiple=native_multiple,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        audio_steps=audio_steps,
        video_factory=video_factory,
        audio_factory=audio_factory,
        prompt_extender_factory=prompt_extender_factory,
        safety_factory=safety_factory,
        takes_conditioning=pipeline in CONDITIONING_PIPELINES,
        chunk_mode=chunk_mode,
        extra={
            "pipeline": pipeline,
            "weights": weights,
            "dtype": _dtype_name(torch_dtype),
            "audio_weights": audio_weights,
            **({"speed": speed} if speed else {}),
            **(extra or {}),
        },
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
        raise UnknownModelError(f"unknown model {model_id!r}; known models: {', '.join(known_models())}") from None


register_profile(tiny_profile())
# farm:toy-gp@1, the analytic toy model for seam studies (its profile module is torch-free).
from models.toy_profile import toy_gp_profile  # noqa: E402 - registered after the default, on purpose

register_profile(toy_gp_profile())
