"""YAML model profiles for operators: ``load_profiles(path) -> list[ModelProfile]``.

The format is documented in ``docs/profiles.md``; the shipped profiles live in ``profiles/`` at the
top of the repository. A file holds a ``profiles:`` list; a directory is every ``*.yaml``/``*.yml``
in it, in name order. Every error is a ``ProfileConfigError`` naming the file, the profile (its
position in the list) and the field, e.g. ``profiles.yaml: profiles[1].window_frames: must be
4k+1, got 80``.

Only this module's parsing runs in the driver/gateway (yaml, no diffusers, no transformers): each
profile is built by ``models.profiles.wan_profile``, the one constructor of real-weight profiles,
whose module-level factories Ray pickles into the worker processes; the video and audio backends,
the prompt extender and the safety checker load there, when a worker first needs them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from models.base import ModelProfile
from models.profiles import (
    VIDEO_PIPELINES,
    WAN_TEMPORAL_STRIDE,
    InvalidProfileField,
    hub_kwargs,
    hub_offline,
    load_prompt_extender,
    load_safety_checker,
    wan_profile,
)
from models.prompt_extend import TemplateExtender

__all__ = [
    "AUDIO_PIPELINES",
    "DTYPES",
    "VIDEO_PIPELINES",
    "ProfileConfigError",
    "hub_offline",
    "load_profiles",
    "parse_profile",
    "parse_profiles",
    "register_profiles",
]

#: Audio pipeline classes a profile may name.
AUDIO_PIPELINES = ("StableAudioPipeline",)

#: Accepted ``dtype`` values; ``auto`` lets the backend choose (bf16/fp16 on a GPU, fp32 on the CPU).
DTYPES = ("bfloat16", "float16", "float32", "auto")

#: Temporal stride of the Wan VAE, shared by every supported video pipeline.
TEMPORAL_STRIDE = WAN_TEMPORAL_STRIDE

_TOP_KEYS = {
    "model",
    "description",
    "video",
    "window_frames",
    "overlap_frames",
    "native",
    "steps",
    "guidance_scale",
    "audio",
    "prompt_extender",
    "safety_checker",
    "chunk_mode",
}
_VIDEO_KEYS = {"pipeline", "weights", "dtype"}
_NATIVE_KEYS = {"area", "width", "height", "multiple", "fps"}
_AUDIO_KEYS = {"pipeline", "weights", "dtype", "steps", "guidance_scale"}
_EXTENDER_KEYS = {"model", "system_prompt", "max_new_tokens", "temperature"}
_SAFETY_KEYS = {"model", "concepts", "threshold", "safe_prompts"}

#: The one string ``prompt_extender`` may be: the built-in ``TemplateExtender``.
TEMPLATE_EXTENDER = "template"

# The hub settings of the process that loads the weights (kept under its old name here).
_hub_kwargs = hub_kwargs


class ProfileConfigError(ValueError):
    """A profile file is invalid; the message names the file, the profile and the field."""


class _Fields:
    """Reads one mapping of a profile, raising errors that name where the value came from."""

    def __init__(self, source: str, where: str, raw: Any, allowed: set[str]):
        self.source, self.where = source, where
        if not isinstance(raw, dict):
            self.fail(None, f"must be a mapping, got {type(raw).__name__}")
        unknown = sorted(set(map(str, raw)) - allowed)
        if unknown:
            self.fail(unknown[0], f"unknown field; known: {', '.join(sorted(allowed))}")
        self.raw = raw

    def fail(self, key: str | None, message: str):
        path = self.where if key is None else f"{self.where}.{key}"
        raise ProfileConfigError(f"{self.source}: {path}: {message}")

    def has(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def str(self, key: str, default: str | None = None, *, choices: tuple[str, ...] | None = None) -> str:
        value = default if self.raw.get(key) is None else self.raw[key]
        if value is None:
            self.fail(key, "is required")
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def int(self, key: str, default: int | None = None, *, minimum: int = 1) -> int:
        value = default if self.raw.get(key) is None else self.raw[key]
        if value is None:
            self.fail(key, "is required")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {value!r}")
        if value < minimum:
            self.fail(key, f"must be >= {minimum}, got {value}")
        return value

    def number(self, key: str, default: float | None, *, minimum: float = 0.0) -> float:
        value = default if self.raw.get(key) is None else self.raw[key]
        if value is None:
            self.fail(key, "is required")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, got {value!r}")
        if value < minimum:
            self.fail(key, f"must be >= {minimum:g}, got {value}")
        return float(value)

    def strings(self, key: str, *, required: bool = True) -> tuple[str, ...] | None:
        """A non-empty list of non-empty strings."""
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, "is required")
            return None
        if not isinstance(value, list) or not value:
            self.fail(key, f"must be a non-empty list of strings, got {value!r}")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.fail(f"{key}[{index}]", f"must be a non-empty string, got {item!r}")
        return tuple(value)


def _prompt_extender(top: _Fields, source: str, where: str):
    """``prompt_extender`` -> (factory or None, summary for ``extra``)."""
    raw = top.raw.get("prompt_extender")
    if raw is None:
        return None, None
    if raw == TEMPLATE_EXTENDER:
        return TemplateExtender, {"kind": TEMPLATE_EXTENDER}
    if not isinstance(raw, dict):
        top.fail("prompt_extender", f"must be {TEMPLATE_EXTENDER!r}, a mapping with a model, or null, got {raw!r}")
    fields = _Fields(source, f"{where}.prompt_extender", raw, _EXTENDER_KEYS)
    model = fields.str("model")
    options: dict[str, Any] = {
        "max_new_tokens": fields.int("max_new_tokens", 256),
        "temperature": fields.number("temperature", 0.0),
    }
    if fields.has("system_prompt"):
        options["system_prompt"] = fields.str("system_prompt")
    return (
        functools.partial(load_prompt_extender, model, **options),
        {"kind": "transformers", "model": model, **options},
    )


def _safety_checker(top: _Fields, source: str, where: str):
    """``safety_checker`` -> (factory or None, summary for ``extra``)."""
    raw = top.raw.get("safety_checker")
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        top.fail("safety_checker", f"must be a mapping or null, got {raw!r}")
    fields = _Fields(source, f"{where}.safety_checker", raw, _SAFETY_KEYS)
    model = fields.str("model")
    options: dict[str, Any] = {"concepts": fields.strings("concepts"), "threshold": fields.number("threshold", None)}
    safe_prompts = fields.strings("safe_prompts", required=False)
    if safe_prompts is not None:
        options["safe_prompts"] = safe_prompts
    return (
        functools.partial(load_safety_checker, model, **options),
        {"kind": "clip", "model": model, **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}},
    )


def parse_profile(raw: Any, *, source: str = "<profiles>", where: str = "profiles[0]") -> ModelProfile:
    """One profile mapping -> ``ModelProfile``; ``source``/``where`` prefix every error message."""
    top = _Fields(source, where, raw, _TOP_KEYS)
    model_id = top.str("model")
    description = top.raw.get("description")
    if description is not None and not isinstance(description, str):
        top.fail("description", f"must be a string, got {description!r}")

    video = (
        _Fields(source, f"{where}.video", top.raw.get("video"), _VIDEO_KEYS)
        if top.has("video")
        else top.fail("video", "is required")
    )
    pipeline = video.str("pipeline", choices=VIDEO_PIPELINES)
    weights = video.str("weights")
    dtype = video.str("dtype", "auto", choices=DTYPES)

    window = top.int("window_frames")
    overlap = top.int("overlap_frames", minimum=0)

    native = (
        _Fields(source, f"{where}.native", top.raw.get("native"), _NATIVE_KEYS)
        if top.has("native")
        else top.fail("native", "is required")
    )
    multiple = native.int("multiple", 16)
    native_w = native_h = None
    if native.has("area"):
        if native.has("width") or native.has("height"):
            native.fail("area", "give either area or width/height, not both")
        area = native.int("area")
    elif native.has("width") or native.has("height"):
        native_w, native_h = native.int("width"), native.int("height")
        for key, value in (("width", native_w), ("height", native_h)):
            if value % multiple:
                native.fail(key, f"must be a multiple of {multiple}, got {value}")
        area = native_w * native_h
    else:
        native.fail("area", "is required (or width and height)")
    if area < multiple * multiple:
        native.fail("area", f"must be at least {multiple * multiple} (multiple squared), got {area}")
    fps = native.number("fps", 16, minimum=1)

    steps = top.int("steps", 30)
    guidance = top.number("guidance_scale", 5.0)
    # A task's settings.chunkMode overrides it; sequential needs a conditioning pipeline (VACE).
    chunk_mode = top.str("chunk_mode", "parallel", choices=("parallel", "sequential"))

    audio_weights = audio_summary = None
    audio_dtype = "auto"
    audio_steps = 0
    audio_guidance = 7.0
    if top.has("audio"):
        audio = _Fields(source, f"{where}.audio", top.raw["audio"], _AUDIO_KEYS)
        audio.str("pipeline", "StableAudioPipeline", choices=AUDIO_PIPELINES)
        audio_weights = audio.str("weights")
        # Stable Audio runs in fp16/fp32: a video profile's bf16 does not carry over (auto instead).
        audio_dtype = audio.str("dtype", "auto" if dtype == "bfloat16" else dtype, choices=DTYPES)
        audio_steps = audio.int("steps", 100)
        audio_guidance = audio.number("guidance_scale", 7.0)
        audio_summary = {
            "pipeline": "StableAudioPipeline",
            "weights": audio_weights,
            "dtype": audio_dtype,
            "steps": audio_steps,
            "guidance_scale": audio_guidance,
        }

    extender_factory, extender_summary = _prompt_extender(top, source, where)
    safety_factory, safety_summary = _safety_checker(top, source, where)

    try:
        return wan_profile(
            model_id,
            weights=weights,
            pipeline=pipeline,
            dtype=dtype,
            audio_weights=audio_weights,
            audio_dtype=audio_dtype,
            window_frames=window,
            overlap_frames=overlap,
            native_area=area,
            native_multiple=multiple,
            num_inference_steps=steps,
            guidance_scale=guidance,
            audio_steps=audio_steps,
            audio_guidance_scale=audio_guidance,
            description=description,
            prompt_extender_factory=extender_factory,
            safety_factory=safety_factory,
            extra={
                "source": source,
                "fps": fps,
                "native_width": native_w,
                "native_height": native_h,
                "audio": audio_summary,
                "prompt_extender": extender_summary,
                "safety_checker": safety_summary,
                "chunk_mode": chunk_mode,
            },
        )
    except InvalidProfileField as exc:
        top.fail(exc.field, exc.reason)


def parse_profiles(document: Any, *, source: str = "<profiles>") -> list[ModelProfile]:
    """A parsed YAML document (``{"profiles": [...]}``) -> profiles; model ids must be unique."""
    if not isinstance(document, dict) or "profiles" not in document:
        raise ProfileConfigError(f"{source}: expected a mapping with a 'profiles' list at the top level")
    unknown = sorted(set(map(str, document)) - {"profiles"})
    if unknown:
        raise ProfileConfigError(f"{source}: {unknown[0]}: unknown top-level key; only 'profiles' is read")
    items = document["profiles"]
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ProfileConfigError(f"{source}: profiles: must be a list, got {type(items).__name__}")
    profiles: list[ModelProfile] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        profile = parse_profile(item, source=source, where=f"profiles[{index}]")
        if profile.model_id in seen:
            raise ProfileConfigError(
                f"{source}: profiles[{index}].model: {profile.model_id!r} is already "
                f"defined by profiles[{seen[profile.model_id]}]"
            )
        seen[profile.model_id] = index
        profiles.append(profile)
    return profiles


def load_profiles(path: str | Path) -> list[ModelProfile]:
    """Profiles from a YAML file with a ``profiles:`` list, or from every ``*.yaml``/``*.yml`` of a directory.

    Raises ``FileNotFoundError`` for a missing path and ``ProfileConfigError`` (a ``ValueError``)
    for invalid YAML or fields, naming the file, the profile and the field. A model id defined
    twice (in one file or across a directory's files) is an error.
    """
    import yaml

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    elif path.exists():
        files = [path]
    else:
        raise FileNotFoundError(f"no such profile file or directory: {path}")
    profiles: list[ModelProfile] = []
    origin: dict[str, str] = {}
    for file in files:
        source = str(file)
        try:
            document = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            raise ProfileConfigError(f"{source}: not valid YAML: {exc}") from None
        for profile in parse_profiles(document, source=source):
            if profile.model_id in origin:
                raise ProfileConfigError(
                    f"{source}: model {profile.model_id!r} is already defined in {origin[profile.model_id]}"
                )
            origin[profile.model_id] = source
            profiles.append(profile)
    return profiles


def register_profiles(path: str | Path) -> list[ModelProfile]:
    """``load_profiles(path)`` and register each one (``replace=True``, so a file may override the
    embedded default); returns them."""
    from models.profiles import register_profile

    profiles = load_profiles(path)
    for profile in profiles:
        register_profile(profile, replace=True)
    return profiles
