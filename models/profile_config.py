"""YAML model profiles for operators: ``load_profiles(path) -> list[ModelProfile]``.

The format is documented in ``docs/profiles.md``; the shipped profiles live in ``profiles/`` at the
top of the repository. A file holds a ``profiles:`` list; a directory is every ``*.yaml``/``*.yml``
in it, in name order. Each profile is read by the pydantic models below (``ProfileSpec`` and its
sections: strict types, unknown keys refused, ``null`` meaning "absent"); every broken rule is
reported in one ``ProfileConfigError``, one line each naming the file, the profile (its position in
the list) and the key, e.g. ``profiles.yaml: profiles[1].window_frames: must be 4k+1, got 80``.

Only this module's parsing runs in the driver/gateway (yaml and pydantic, no diffusers, no
transformers): each profile is built by ``models.profiles.wan_profile``, the one constructor of
real-weight profiles, whose module-level factories Ray pickles into the worker processes; the video
and audio backends, the prompt extender and the safety checker load there, when a worker first
needs them.
"""

from __future__ import annotations

import functools
import reprlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from models.base import ModelProfile
from models.profiles import (
    COMPILE_MODES,
    CONDITIONING_PIPELINES,
    HALF_PRECISIONS,
    VIDEO_PIPELINES,
    WAN_TEMPORAL_STRIDE,
    InvalidProfileField,
    check_windows,
    hub_kwargs,
    hub_offline,
    load_prompt_extender,
    load_safety_checker,
    wan_profile,
)
from models.prompt_extend import PromptExtender, TemplateExtender
from models.safety import SafetyChecker

__all__ = [
    "AUDIO_PIPELINES",
    "DTYPES",
    "VIDEO_PIPELINES",
    "ProfileConfigError",
    "ProfileSpec",
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

#: The one string ``prompt_extender`` may be: the built-in ``TemplateExtender``.
TEMPLATE_EXTENDER = "template"

# The hub settings of the process that loads the weights (kept under its old name here).
_hub_kwargs = hub_kwargs

_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60


class ProfileConfigError(ValueError):
    """A profile file is invalid; each line names the file, the profile and the key."""


# --------------------------------------------------------------------------- value rules


def _error(message: str) -> PydanticCustomError:
    # The message goes through the context: a template would read any brace in it as a placeholder.
    return PydanticCustomError("profile", "{message}", {"message": message})


def _non_empty_string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _error(f"must be a non-empty string, got {_REPR.repr(value)}")
    return value


def _one_of(*choices: str) -> PlainValidator:
    """A string that is exactly one of ``choices``."""

    def check(value: Any) -> str:
        if isinstance(value, str) and not value.strip():
            raise _error(f"must be a non-empty string, got {_REPR.repr(value)}")
        if value not in choices:  # a non-string too (``compile: true``): the choices say what fits
            raise _error(f"must be one of {', '.join(choices)}, got {_REPR.repr(value)}")
        return value

    return PlainValidator(check)


Text = Annotated[str, PlainValidator(_non_empty_string)]
DType = Annotated[str, _one_of(*DTYPES)]


class _Section(BaseModel):
    """Shared configuration: strict YAML types, unknown keys refused, ``null`` = absent."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_absent(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value is not None}
        return data


def _raise(errors: list[InitErrorDetails], title: str) -> None:
    if errors:
        raise ValidationError.from_exception_data(title, errors)


def _at(key: str, message: str, value: Any = None) -> InitErrorDetails:
    return InitErrorDetails(type=_error(message), loc=(key,), input=value)


# --------------------------------------------------------------------------- sections


class VideoSpec(_Section):
    """``video``: the diffusers pipeline, its weights and dtype."""

    pipeline: Annotated[str, _one_of(*VIDEO_PIPELINES)]
    weights: Text
    dtype: DType = "auto"


class NativeSpec(_Section):
    """``native``: the size the model renders at (``area``, or ``width`` x ``height``) and its fps."""

    area: int | None = Field(default=None, ge=1)
    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    multiple: int = Field(default=16, ge=1)
    fps: float = Field(default=16.0, ge=1)

    @model_validator(mode="after")
    def _one_size(self) -> Self:
        errors: list[InitErrorDetails] = []
        sides = {"width": self.width, "height": self.height}
        if self.area is not None and (self.width is not None or self.height is not None):
            errors.append(_at("area", "give either area or width/height, not both"))
        elif self.area is None and self.width is None and self.height is None:
            errors.append(_at("area", "is required (or width and height)"))
        elif self.area is None:
            for key, value in sides.items():
                if value is None:
                    errors.append(_at(key, "is required (with the other side)"))
                elif value % self.multiple:
                    errors.append(_at(key, f"must be a multiple of {self.multiple}, got {value}", value))
        if not errors and self.native_area < self.multiple**2:
            errors.append(
                _at("area", f"must be at least {self.multiple**2} (multiple squared), got {self.native_area}")
            )
        _raise(errors, type(self).__name__)
        return self

    @property
    def native_area(self) -> int:
        """``area``, or ``width x height``."""
        if self.area is not None:
            return self.area
        assert self.width is not None and self.height is not None
        return self.width * self.height


class AudioSpec(_Section):
    """``audio``: the Stable Audio model of the soundtrack."""

    pipeline: Annotated[str, _one_of(*AUDIO_PIPELINES)] = "StableAudioPipeline"
    weights: Text
    #: None: the video dtype, except that bfloat16 becomes auto (Stable Audio runs in fp16/fp32).
    dtype: DType | None = None
    steps: int = Field(default=100, ge=1)
    guidance_scale: float = Field(default=7.0, ge=0)


class PromptExtenderSpec(_Section):
    """``prompt_extender`` as a mapping: a chat model that rewrites prompts."""

    model: Text
    system_prompt: Text | None = None
    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0)

    def factory(self) -> Callable[[], PromptExtender]:
        return functools.partial(load_prompt_extender, self.model, **self.options())

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature}
        if self.system_prompt is not None:
            options["system_prompt"] = self.system_prompt
        return options


def _prompt_extender(value: Any) -> str | PromptExtenderSpec:
    if value == TEMPLATE_EXTENDER:
        return TEMPLATE_EXTENDER
    if not isinstance(value, Mapping):
        raise _error(f"must be {TEMPLATE_EXTENDER!r}, a mapping with a model, or null, got {_REPR.repr(value)}")
    return PromptExtenderSpec.model_validate(value)  # its errors keep their keys (prompt_extender.model)


class SafetyCheckerSpec(_Section):
    """``safety_checker``: a CLIP model and the concepts it flags."""

    model: Text
    concepts: list[Text] = Field(min_length=1)
    threshold: float = Field(ge=0)
    safe_prompts: list[Text] | None = Field(default=None, min_length=1)

    def factory(self) -> Callable[[], SafetyChecker]:
        return functools.partial(load_safety_checker, self.model, **self.options())

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"concepts": tuple(self.concepts), "threshold": self.threshold}
        if self.safe_prompts is not None:
            options["safe_prompts"] = tuple(self.safe_prompts)
        return options


class VaeTilingSpec(_Section):
    """``speed.vae_tiling`` as a mapping: square tiles of ``tile`` pixels, ``stride`` apart."""

    #: Defaults: diffusers' own for the Wan VAE (1080p decodes in 40 tiles overlapping by 64 px).
    tile: int = Field(default=256, ge=16)
    stride: int = Field(default=192, ge=8)

    @model_validator(mode="after")
    def _overlapping(self) -> Self:
        errors: list[InitErrorDetails] = []
        for key, value in (("tile", self.tile), ("stride", self.stride)):
            if value % 8:
                errors.append(_at(key, f"must be a multiple of 8 (the Wan VAE's spatial stride), got {value}", value))
        if not errors and self.stride >= self.tile:
            errors.append(
                _at("stride", f"must be below tile ({self.tile}) so that tiles overlap, got {self.stride}", self.stride)
            )
        _raise(errors, type(self).__name__)
        return self


def _vae_tiling(value: Any) -> VaeTilingSpec | None:
    if value is True:
        return VaeTilingSpec()
    if value is False:
        return None
    if not isinstance(value, Mapping):
        raise _error(f"must be true, false or a mapping with tile and stride, got {_REPR.repr(value)}")
    return VaeTilingSpec.model_validate(value)  # its errors keep their keys (speed.vae_tiling.tile)


class SpeedSpec(_Section):
    """``speed``: opt-in speed-ups of the video model, all off by default (``models.wan.SpeedOptions``)."""

    #: Transformer and VAE in this dtype on CUDA; float32 on the CPU.
    half_precision: Annotated[str, _one_of(*HALF_PRECISIONS)] | None = None
    #: ``torch.compile`` of the transformer, in this mode.
    compile: Annotated[str, _one_of(*COMPILE_MODES)] | None = None
    #: diffusers' First Block Cache with this threshold.
    first_block_cache: float | None = Field(default=None, gt=0)
    vae_tiling: Annotated[VaeTilingSpec | None, PlainValidator(_vae_tiling)] = None

    def options(self) -> dict[str, Any]:
        """``wan_profile``'s keyword arguments."""
        tiling = self.vae_tiling
        return {
            "half_precision": self.half_precision,
            "compile_mode": self.compile,
            "first_block_cache": self.first_block_cache,
            "vae_tiling": None if tiling is None else (tiling.tile, tiling.stride),
        }


class ProfileSpec(_Section):
    """One item of a file's ``profiles`` list (``docs/profiles.md`` lists every key)."""

    model: Text
    description: str | None = None
    video: VideoSpec
    window_frames: int = Field(ge=1)
    overlap_frames: int = Field(ge=0)
    native: NativeSpec
    steps: int = Field(default=30, ge=1)
    guidance_scale: float = Field(default=5.0, ge=0)
    audio: AudioSpec | None = None
    prompt_extender: Annotated[str | PromptExtenderSpec, PlainValidator(_prompt_extender)] | None = None
    safety_checker: SafetyCheckerSpec | None = None
    #: How a result's chunks render unless a task's ``settings.chunkMode`` says otherwise.
    chunk_mode: Annotated[
        Literal["parallel", "sequential", "codenoise"], _one_of("parallel", "sequential", "codenoise")
    ] = "parallel"
    speed: SpeedSpec | None = None

    @model_validator(mode="after")
    def _renderable(self) -> Self:
        errors: list[InitErrorDetails] = []
        try:
            check_windows(self.window_frames, self.overlap_frames)
        except InvalidProfileField as exc:
            errors.append(_at(exc.field, exc.reason))
        if self.chunk_mode == "sequential" and self.video.pipeline not in CONDITIONING_PIPELINES:
            errors.append(
                _at(
                    "chunk_mode",
                    f"sequential needs a pipeline that takes conditioning ({', '.join(CONDITIONING_PIPELINES)}), "
                    f"got {self.video.pipeline}",
                )
            )
        _raise(errors, type(self).__name__)
        return self

    def audio_dtype(self) -> str:
        """The audio model's dtype: its own, else the video's (bfloat16 becomes auto)."""
        if self.audio is None or self.audio.dtype is None:
            return "auto" if self.video.dtype == "bfloat16" else self.video.dtype
        return self.audio.dtype


# --------------------------------------------------------------------------- errors in the profile's words


#: Sections that may be left out or null.
_OPTIONAL_SECTIONS = {"audio", "prompt_extender", "safety_checker", "speed"}


def _message(error: ErrorDetails) -> str:
    """One pydantic error in this file format's words."""
    kind, value, context = error["type"], error["input"], error.get("ctx", {})
    if "message" in context:
        return str(context["message"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("model_type", "dict_type"):
        optional = error["loc"] and error["loc"][-1] in _OPTIONAL_SECTIONS
        return f"must be a mapping{' or null' if optional else ''}, got {_REPR.repr(value)}"
    if kind == "int_type":
        return f"must be an integer, got {_REPR.repr(value)}"
    if kind == "float_type":
        return f"must be a number, got {_REPR.repr(value)}"
    if kind in ("string_type", "str_type"):
        return f"must be a string, got {_REPR.repr(value)}"
    if kind in ("list_type", "too_short"):
        return f"must be a non-empty list of strings, got {_REPR.repr(value)}"
    if kind == "greater_than_equal":
        return f"must be >= {context['ge']:g}, got {value}"
    if kind == "greater_than":
        return f"must be > {context['gt']:g}, got {value}"
    return error["msg"]


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """The keys allowed where an unknown ``loc`` was found."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        nested = [arg for arg in _types_in(info.annotation if info else None) if issubclass(arg, BaseModel)]
        if not nested:
            return ""
        model = nested[0]
    return ", ".join(sorted(model.model_fields))


def _types_in(annotation: Any) -> list[type]:
    if isinstance(annotation, type):
        return [annotation]
    return [found for arg in getattr(annotation, "__args__", ()) for found in _types_in(arg)]


def _config_error(error: ValidationError, source: str, where: str) -> ProfileConfigError:
    lines = []
    for detail in error.errors(include_url=False):
        path = where
        for part in detail["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = _message(detail)
        if detail["type"] == "extra_forbidden":
            message += f"; known: {_known_keys(ProfileSpec, detail['loc'])}"
        lines.append(f"{source}: {path}: {message}")
    return ProfileConfigError("\n".join(lines))


# --------------------------------------------------------------------------- the profile


def _build(spec: ProfileSpec, source: str) -> ModelProfile:
    """The ``ModelProfile`` of a valid spec, through ``wan_profile``."""
    extender: Callable[[], PromptExtender] | None = None
    extender_summary: dict[str, Any] | None = None
    if spec.prompt_extender == TEMPLATE_EXTENDER:
        extender, extender_summary = TemplateExtender, {"kind": TEMPLATE_EXTENDER}
    elif isinstance(spec.prompt_extender, PromptExtenderSpec):
        extender = spec.prompt_extender.factory()
        extender_summary = {
            "kind": "transformers",
            "model": spec.prompt_extender.model,
            **spec.prompt_extender.options(),
        }
    checker: Callable[[], SafetyChecker] | None = None
    checker_summary: dict[str, Any] | None = None
    if spec.safety_checker is not None:
        checker = spec.safety_checker.factory()
        options = spec.safety_checker.options()
        checker_summary = {
            "kind": "clip",
            "model": spec.safety_checker.model,
            **{key: list(value) if isinstance(value, tuple) else value for key, value in options.items()},
        }
    audio = spec.audio
    audio_summary = None
    if audio is not None:
        audio_summary = {
            "pipeline": audio.pipeline,
            "weights": audio.weights,
            "dtype": spec.audio_dtype(),
            "steps": audio.steps,
            "guidance_scale": audio.guidance_scale,
        }
    return wan_profile(
        spec.model,
        weights=spec.video.weights,
        pipeline=spec.video.pipeline,
        dtype=spec.video.dtype,
        audio_weights=audio.weights if audio is not None else None,
        audio_dtype=spec.audio_dtype(),
        window_frames=spec.window_frames,
        overlap_frames=spec.overlap_frames,
        native_area=spec.native.native_area,
        native_multiple=spec.native.multiple,
        num_inference_steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        audio_steps=audio.steps if audio is not None else 0,
        audio_guidance_scale=audio.guidance_scale if audio is not None else 7.0,
        description=spec.description,
        prompt_extender_factory=extender,
        safety_factory=checker,
        **(spec.speed.options() if spec.speed is not None else {}),
        # wan_profile sets the typed ModelProfile.chunk_mode (and takes_conditioning, from the
        # pipeline) from these; "chunk_mode" stays in extra for `farm models` and older readers.
        extra={
            "source": source,
            "fps": spec.native.fps,
            "native_width": spec.native.width,
            "native_height": spec.native.height,
            "audio": audio_summary,
            "prompt_extender": extender_summary,
            "safety_checker": checker_summary,
            "chunk_mode": spec.chunk_mode,
        },
    )


def parse_profile(raw: Any, *, source: str = "<profiles>", where: str = "profiles[0]") -> ModelProfile:
    """One profile mapping -> ``ModelProfile``; ``source``/``where`` prefix every error line."""
    try:
        spec = ProfileSpec.model_validate(raw)
    except ValidationError as error:
        raise _config_error(error, source, where) from None
    try:
        return _build(spec, source)
    except InvalidProfileField as exc:
        # wan_profile's rules across sections (e.g. speed.first_block_cache with chunk_mode codenoise).
        raise ProfileConfigError(f"{source}: {where}.{exc.field}: {exc.reason}") from None


def parse_profiles(document: Any, *, source: str = "<profiles>") -> list[ModelProfile]:
    """A parsed YAML document (``{"profiles": [...]}``) -> profiles; model ids must be unique.

    Every invalid profile of the document is reported, in one ``ProfileConfigError``.
    """
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
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            profile = parse_profile(item, source=source, where=f"profiles[{index}]")
        except ProfileConfigError as error:
            problems.append(str(error))
            continue
        if profile.model_id in seen:
            problems.append(
                f"{source}: profiles[{index}].model: {profile.model_id!r} is already "
                f"defined by profiles[{seen[profile.model_id]}]"
            )
            continue
        seen[profile.model_id] = index
        profiles.append(profile)
    if problems:
        raise ProfileConfigError("\n".join(problems))
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
