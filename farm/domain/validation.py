"""Validate a seed-shaped ``videoInference`` task into a :class:`~farm.domain.task.VideoInferenceTask`.

:func:`parse_task` takes the JSON as ``json.load`` returns it (camelCase field names) and either
returns the frozen dataclasses with every default applied or raises
:class:`~farm.domain.errors.TaskValidationError` listing *every* broken rule at once. Each
:class:`~farm.domain.errors.Violation` names the full path of the field (``outputQuality``,
``settings.audio``, ``inputs.frameImages[2].frame``; the task itself is :data:`ROOT_FIELD`), the
rule in words, the limit (a number, a ``(min, max)`` tuple or a tuple of allowed values) and the
received value (long strings and big containers are shortened so an error never carries a 50 MB
data URI; NaN, infinities and lone surrogates are spelled out so an error always encodes as JSON
and UTF-8).

Two stages, both always run:

1. **The schema** (:class:`~farm.domain.schema.TaskSchema`, pydantic v2): every field's type,
   range, length, enumeration (case-insensitive, the seed's wording as aliases), the shape of
   media strings, URLs and tags, unknown fields, and the rules between the ``inputs`` arrays. Its
   field rules and the accepted aliases are listed in that module and in ``docs/task-schema.md``.
2. **The rules between sections**, over every section that passed stage 1 (so a bad
   ``outputQuality`` and a ``width`` without ``height`` are reported together):

   * ``model`` is one of ``known_models``;
   * ``width``/``height`` come together, exclude ``resolution`` (the task's ``resolution`` is then
     None) and hold at most ``MAX_PIXELS``;
   * a ``frameImages[].frame`` index is below the clip's ``round(duration x 32)`` frames, and no two
     items target the same frame (``first`` = 0, ``last`` = frames - 1);
   * every reference's ``@tag`` is mentioned in ``positivePrompt`` (read by
     :data:`~farm.domain.constants.TAG_PATTERN`, the grammar prompt extension keeps);
   * a ``reference``-type video carries its own audio: an explicit ``settings.audio: true`` is a
     violation and an absent one becomes ``False``;
   * the last result's seed, ``seed + numberResults - 1``, is at most ``SEED_MAX`` (2**63-1).
"""

from __future__ import annotations

import functools
import math
import reprlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from farm.domain.constants import (
    DEFAULT_MODEL,
    MAX_MEDIA_BYTES,
    MAX_PIXELS,
    POSITIVE_PROMPT_MAX_CHARS,
    RESOLUTION_PRESETS,
    SEED_MAX,
    frame_count,
    prompt_tags,
)
from farm.domain.errors import TaskValidationError, Violation
from farm.domain.schema import (
    FRAME_ITEM_TAGS,
    REFERENCE_IMAGE_TYPE_ALIASES,
    REFERENCE_VIDEO_TYPE_ALIASES,
    SAFETY_MODE_ALIASES,
    TASK_TYPE,
    FrameImageSchema,
    InputsSchema,
    SettingsSchema,
    TaskSchema,
    json_type,
)
from farm.domain.task import (
    FrameImage,
    Inputs,
    ReferenceImageGroup,
    ReferenceVideo,
    Safety,
    Settings,
    VideoInferenceTask,
)

__all__ = [
    "MEDIA_MAX_CHARS",
    "REFERENCE_IMAGE_TYPE_ALIASES",
    "REFERENCE_VIDEO_TYPE_ALIASES",
    "ROOT_FIELD",
    "SAFETY_MODE_ALIASES",
    "SEED_MAX",
    "parse_task",
]

#: ``Violation.field`` used when the task as a whole is wrong (not a JSON object).
ROOT_FIELD = "(task)"

#: Longest accepted media string, in characters (a data URI or base64): the farm's media limit.
MEDIA_MAX_CHARS = MAX_MEDIA_BYTES

_SHOWN_MAX_CHARS = 200
_SHOWN_MAX_NODES = 50
_SHOWN_MAX_INT_BITS = 128
_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlevel = 3


# --------------------------------------------------------------------------- what a violation shows


def _printable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes, so it encodes as UTF-8."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_small_json(value: object) -> bool:
    """Whether ``value`` is plain, finite JSON data small enough to carry in a violation as it is."""
    budget = _SHOWN_MAX_NODES
    chars = _SHOWN_MAX_CHARS
    stack = [value]
    while stack:
        item = stack.pop()
        budget -= 1
        if budget < 0:
            return False
        if isinstance(item, int) and item.bit_length() > _SHOWN_MAX_INT_BITS:
            return False
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if item is None or isinstance(item, (bool, int, float)):
            continue
        if isinstance(item, str):
            chars -= len(item)
            if chars < 0 or _printable(item) != item:
                return False
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            if not all(isinstance(key, str) and _printable(key) == key for key in item):
                return False
            chars -= sum(len(key) for key in item)
            if chars < 0:
                return False
            stack.extend(item.values())
        else:
            return False
    return True


def _shown(value: object) -> object:
    """``value`` as stored in a violation: as is when small, else a shortened text.

    NaN and the infinities become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (a
    violation is sent as strict JSON), lone surrogates become escapes (it is sent as UTF-8).
    """
    if isinstance(value, str):
        if len(value) > _SHOWN_MAX_CHARS:
            return _printable(f"{value[:80]}... ({len(value)} characters)")
        return _printable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return json_type(value)
    if isinstance(value, int) and value.bit_length() > _SHOWN_MAX_INT_BITS:
        return f"<integer of {value.bit_length()} bits>"
    if _is_small_json(value):
        return value
    try:
        return _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ or a huge nested integer
        return f"<{json_type(value)}>"


def _number_text(number: float) -> str:
    """``number`` for a message: integers in full, floats without a needless ``.0``."""
    return f"{number:g}" if isinstance(number, float) else str(number)


def _range_rule(lo: float | None, hi: float | None) -> tuple[str, Any]:
    """Message and limit of a numeric range."""
    if lo is not None and hi is not None:
        return f"must be between {_number_text(lo)} and {_number_text(hi)}", (lo, hi)
    if lo is not None:
        return f"must be at least {_number_text(lo)}", lo
    assert hi is not None, "a range has at least one end"
    return f"must be at most {_number_text(hi)}", hi


# --------------------------------------------------------------------------- pydantic errors -> violations

Loc = tuple[int | str, ...]


def _field_path(loc: Loc, *, index: str | None = None) -> str:
    """``("inputs", "frameImages", 1, "object", "frame")`` -> ``inputs.frameImages[1].frame``.

    The shape tags pydantic puts after an array index (``FRAME_ITEM_TAGS``) are left out; with
    ``index`` every index is written as it (``"[]"``: the schema path of the field).
    """
    path = ""
    previous: int | str = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]" if index is None else index
        elif not (isinstance(previous, int) and part in FRAME_ITEM_TAGS):
            if len(part) > _SHOWN_MAX_CHARS or not part.isascii():
                part = str(_shown(part))  # an unknown key is the client's text: shortened and escaped
            path = f"{path}.{part}" if path else part
        previous = part
    return path


def _pattern(loc: Loc) -> str:
    """The schema path of ``loc``, indices left out: ``inputs.frameImages[].frame``."""
    return _field_path(loc, index="[]")


def _nested_models(annotation: Any, suffix: str = "") -> Iterator[tuple[type[BaseModel], str]]:
    """The models inside a field's annotation, each with the path suffix that reaches it ("[]")."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, suffix
        return
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        args = args[:1]
    elif origin is list:
        suffix += "[]"
    for arg in args:
        yield from _nested_models(arg, suffix)


def _schema_index() -> tuple[dict[str, FieldInfo], dict[str, type[BaseModel]]]:
    """Every field of ``TaskSchema`` by its pattern, and every object by the pattern reaching it."""
    fields: dict[str, FieldInfo] = {}
    models: dict[str, type[BaseModel]] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        models[prefix] = model
        for name, info in model.model_fields.items():
            path = f"{prefix}.{info.alias or name}" if prefix else info.alias or name
            fields[path] = info
            for nested, suffix in _nested_models(info.annotation):
                walk(nested, path + suffix)

    walk(TaskSchema, "")
    return fields, models


_FIELDS, _OBJECTS = _schema_index()

#: The limit a "is required" violation quotes.
_REQUIRED_LIMITS: dict[str, Any] = {
    "taskType": TASK_TYPE,
    "positivePrompt": (1, POSITIVE_PROMPT_MAX_CHARS),
    "inputs.referenceImages[].type": tuple(dict.fromkeys(REFERENCE_IMAGE_TYPE_ALIASES.values())),
    "inputs.referenceVideos[].type": tuple(dict.fromkeys(REFERENCE_VIDEO_TYPE_ALIASES.values())),
    "inputs.frameImages[].frame": ("first", "last", "0..num_frames-1"),
}

#: pydantic's type errors -> what the field must be.
_EXPECTED = {
    "int_type": "an integer",
    "bool_type": "a boolean",
    "float_type": "a number",
    "string_type": "a string",
    "list_type": "an array",
    "model_type": "an object",
    "dict_type": "an object",
    "frame_item_type": "a string or an object with image and frame",
}

_BOUND_ERRORS = {"greater_than_equal", "less_than_equal", "finite_number", "multiple_of", "too_short", "too_long"}

#: Units appended to a field's range message.
_UNITS = {"duration": " seconds"}


def _bound(info: FieldInfo | None, *names: str) -> Any:
    """The first of the constraints ``names`` (``ge``, ``max_length``, ...) set on ``info``."""
    for item in info.metadata if info is not None else ():
        for name in names:
            if getattr(item, name, None) is not None:
                return getattr(item, name)
    return None


def _bound_violation(field: str, loc: Loc, kind: str, value: Any) -> Violation:
    """A range, length or multiple-of error, worded with both ends of the field's range."""
    info = _FIELDS.get(_pattern(loc))
    if kind in ("too_short", "too_long"):
        lo, hi = _bound(info, "min_length"), _bound(info, "max_length")
        if lo == hi:
            message, limit = f"must have exactly {lo} item{'' if lo == 1 else 's'}", lo
        else:
            message, limit = f"must have between {lo} and {hi} items", (lo, hi)
        return Violation(field=field, message=message, limit=limit, value=_shown(value))
    lo, hi = _bound(info, "ge"), _bound(info, "le")
    if kind == "multiple_of":
        step = _bound(info, "multiple_of")
        message = "must be even" if step == 2 else f"must be a multiple of {step}"
        return Violation(field=field, message=message, limit=(lo, hi), value=_shown(value))
    message, limit = _range_rule(lo, hi)
    return Violation(field=field, message=message + _UNITS.get(field, ""), limit=limit, value=_shown(value))


def _violation(error: ErrorDetails) -> Violation:
    """One pydantic error as a ``Violation`` with the seed's field path and wording."""
    loc, kind, value = error["loc"], error["type"], error["input"]
    field = _field_path(loc)
    context = error.get("ctx", {})
    if "message" in context:  # the schema's own rules carry their message and limit
        return Violation(field=field, message=error["msg"], limit=context.get("limit"), value=_shown(value))
    if kind == "missing":
        return Violation(field=field, message="is required", limit=_REQUIRED_LIMITS.get(_pattern(loc)))
    if kind == "extra_forbidden":
        known = _OBJECTS.get(_pattern(loc[:-1]))
        names = tuple(sorted(info.alias or name for name, info in known.model_fields.items())) if known else None
        return Violation(field=field, message="unknown field", limit=names, value=_shown(value))
    # An integer too large for a double fails as a float: it is out of the range.
    if kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        kind = "less_than_equal"
    if kind in _EXPECTED:
        return Violation(field=field, message=f"must be {_EXPECTED[kind]}, got {json_type(value)}", value=_shown(value))
    if kind in _BOUND_ERRORS:
        return _bound_violation(field, loc, kind, value)
    return Violation(field=field, message=error["msg"], value=_shown(value))


# --------------------------------------------------------------------------- rules between sections


#: The top-level fields the rules between sections read.
_RULE_FIELD_NAMES = (
    "model",
    "positive_prompt",
    "width",
    "height",
    "duration",
    "inputs",
    "settings",
    "seed",
    "number_results",
)
#: The same, as (name, alias, default).
_RULE_FIELDS = [
    (name, info.alias or name, info.default) for name in _RULE_FIELD_NAMES for info in [TaskSchema.model_fields[name]]
]


@functools.cache
def _field_adapter(name: str) -> TypeAdapter[Any]:
    """Validates ``TaskSchema``'s field ``name`` on its own (for ``_valid_sections``)."""
    info = TaskSchema.model_fields[name]
    annotation: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
    return TypeAdapter(annotation)


def _valid_sections(raw: Mapping[Any, Any], errors: Sequence[ErrorDetails]) -> dict[str, Any]:
    """The validated value of every field the rules read that has no error, by attribute name.

    The schema failed as a whole: each such field that was not the cause is validated on its own
    (it cannot fail now), so the rules between sections still run over everything that is valid.
    """
    failed = {error["loc"][0] for error in errors if error["loc"]}
    values: dict[str, Any] = {}
    for name, alias, default in _RULE_FIELDS:
        if alias in failed:
            continue
        value = raw.get(alias)
        if value is None:
            values[name] = default  # immutable (None, a number, a frozen model); required ones failed
            continue
        try:
            values[name] = _field_adapter(name).validate_python(value, strict=True)
        except ValidationError:  # pragma: no cover - it passed as part of the task
            continue
    return values


def _check_size(raw: Mapping[Any, Any], values: Mapping[str, Any]) -> Iterator[Violation]:
    """``width``/``height`` together, at most ``MAX_PIXELS``, not with ``resolution``."""
    width_given = raw.get("width") is not None
    height_given = raw.get("height") is not None
    if width_given != height_given:
        yield Violation(field="height" if width_given else "width", message="width and height must be given together")
    width, height = values.get("width"), values.get("height")
    if width is not None and height is not None and width * height > MAX_PIXELS:
        yield Violation(
            field="width",
            message=f"width x height must be at most {MAX_PIXELS} pixels",
            limit=MAX_PIXELS,
            value=f"{width}x{height}",
        )
    if (width_given or height_given) and raw.get("resolution") is not None:
        yield Violation(
            field="resolution",
            message="cannot be combined with width/height; give one or the other",
            value=_shown(raw.get("resolution")),
        )


def _check_frames(inputs: InputsSchema, duration: float | None) -> Iterator[Violation]:
    """Frame indices below the clip's frame count; no two frame images on the same frame."""
    num_frames = frame_count(duration) if duration is not None else None
    taken: dict[int | str, int] = {}
    for index, item in enumerate(inputs.frame_images or ()):
        if not isinstance(item, FrameImageSchema):
            continue  # a plain image: positions are spread later
        field, frame = f"inputs.frameImages[{index}].frame", item.frame
        if isinstance(frame, int) and num_frames is not None and frame >= num_frames:
            yield Violation(
                field=field,
                message=f"must be a frame index below the clip's {num_frames} frames",
                limit=num_frames - 1,
                value=_shown(frame),
            )
            continue
        position: int | str = frame
        if frame == "first":
            position = 0
        elif frame == "last" and num_frames is not None:
            position = num_frames - 1
        if position in taken:
            yield Violation(
                field=field, message=f"targets the same frame as inputs.frameImages[{taken[position]}]", value=frame
            )
        else:
            taken[position] = index


def _check_tags_mentioned(inputs: InputsSchema, prompt: str) -> Iterator[Violation]:
    """Every reference's ``@tag`` is one of the tags ``positivePrompt`` mentions."""
    mentioned = set(prompt_tags(prompt))
    tagged = [(f"inputs.referenceImages[{i}].tag", g.tag) for i, g in enumerate(inputs.reference_images or ())]
    tagged += [(f"inputs.referenceVideos[{i}].tag", v.tag) for i, v in enumerate(inputs.reference_videos or ())]
    for field, tag in tagged:
        if tag not in mentioned:
            yield Violation(field=field, message=f"tag {tag} must be mentioned in positivePrompt", value=tag)


def _carries_audio(inputs: InputsSchema) -> bool:
    """Whether a ``reference``-type video brings its own audio to the output."""
    return any(video.type == "reference" for video in inputs.reference_videos or ())


def _check_seed(seed: int | None, number_results: int | None) -> Iterator[Violation]:
    """Result ``i`` renders with ``seed + i``: the last one must still be a signed 64-bit integer."""
    if seed is None or number_results is None or seed + number_results - 1 <= SEED_MAX:
        return
    highest = SEED_MAX - (number_results - 1)
    yield Violation(
        field="seed",
        message=f"must be at most {highest} with numberResults {number_results}: result i renders with "
        f"seed + i, which must stay within 0..{SEED_MAX}",
        limit=(0, highest),
        value=seed,
    )


def _rule_violations(raw: Mapping[Any, Any], values: Mapping[str, Any], models: tuple[str, ...]) -> list[Violation]:
    """The rules between sections, over the sections in ``values`` (the valid ones)."""
    found: list[Violation] = []
    model = values.get("model")
    if model is not None and model not in models:
        found.append(
            Violation(
                field="model",
                message="must be one of the known models: " + ", ".join(models),
                limit=models,
                value=_shown(model),
            )
        )
    found += _check_size(raw, values)
    inputs: InputsSchema | None = values.get("inputs")
    if inputs is not None:
        if inputs.frame_images:
            found += _check_frames(inputs, values.get("duration"))
        prompt = values.get("positive_prompt")
        if prompt is not None and (inputs.reference_images or inputs.reference_videos):
            found += _check_tags_mentioned(inputs, prompt)
        settings: SettingsSchema | None = values.get("settings")
        if settings is not None and _carries_audio(inputs) and "audio" in settings.model_fields_set and settings.audio:
            found.append(
                Violation(
                    field="settings.audio",
                    message="must not be true with a reference-type video: the input video's audio is carried "
                    "to the output",
                    limit=False,
                    value=True,
                )
            )
    found += _check_seed(values.get("seed"), values.get("number_results"))
    return found


# --------------------------------------------------------------------------- the result


_NO_INPUTS = Inputs()


def _inputs(inputs: InputsSchema) -> Inputs:
    if inputs.reference_images is inputs.frame_images is inputs.reference_videos is inputs.mask is None:
        return _NO_INPUTS
    return Inputs(
        reference_images=tuple(
            ReferenceImageGroup(type=g.type, images=tuple(g.images), tag=g.tag, audio=g.audio)
            for g in inputs.reference_images or ()
        ),
        frame_images=tuple(
            FrameImage(image=item) if isinstance(item, str) else FrameImage(image=item.image, frame=item.frame)
            for item in inputs.frame_images or ()
        ),
        reference_videos=tuple(
            ReferenceVideo(type=v.type, tag=v.tag, video=v.video) for v in inputs.reference_videos or ()
        ),
        mask=inputs.mask,
    )


def _task(schema: TaskSchema) -> VideoInferenceTask:
    """The validated schema with every default resolved."""
    resolution: str | None
    if schema.width is not None and schema.height is not None:
        resolution, width, height = None, schema.width, schema.height
    else:
        resolution = schema.resolution
        width, height = RESOLUTION_PRESETS[resolution]
    settings = schema.settings
    # A reference-type video carries its own audio: generating another is off unless asked for.
    audio = settings.audio if "audio" in settings.model_fields_set or not _carries_audio(schema.inputs) else False
    return VideoInferenceTask(
        task_uuid=schema.task_uuid,
        model=schema.model,
        positive_prompt=schema.positive_prompt,
        output_type=schema.output_type,
        output_format=schema.output_format,
        output_quality=schema.output_quality,
        webhook_url=schema.webhook_url,
        delivery_method=schema.delivery_method,
        upload_endpoint=schema.upload_endpoint,
        safety=Safety(check_content=schema.safety.check_content, mode=schema.safety.mode),
        ttl=schema.ttl,
        include_cost=schema.include_cost,
        inputs=_inputs(schema.inputs),
        number_results=schema.number_results,
        resolution=resolution,
        width=width,
        height=height,
        duration=float(schema.duration),
        num_frames=frame_count(schema.duration),
        settings=Settings(audio=audio, prompt_extend=settings.prompt_extend, chunk_mode=settings.chunk_mode),
        seed=schema.seed,
        priority=schema.priority or 0,
    )


# --------------------------------------------------------------------------- entry point


def parse_task(raw: object, *, known_models: Collection[str] = (DEFAULT_MODEL,)) -> VideoInferenceTask:
    """Validate a seed-shaped ``videoInference`` task and return it with every default applied.

    ``raw`` is the JSON as ``json.load`` returns it. ``known_models`` lists the model identifiers
    the farm serves (by default only ``skywork:skyreels@v4``). Raises ``TaskValidationError``
    listing every violation (``task_uuid`` set when ``taskUUID`` was a string); never raises
    anything else, whatever ``raw`` holds.
    """
    models = (known_models,) if isinstance(known_models, str) else tuple(known_models)
    if not isinstance(raw, Mapping):
        violation = Violation(
            field=ROOT_FIELD, message=f"must be a JSON object, got {json_type(raw)}", value=_shown(raw)
        )
        raise TaskValidationError([violation])
    schema: TaskSchema | None = None
    try:
        schema = TaskSchema.model_validate(raw)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        violations = [_violation(e) for e in errors]
        violations += _rule_violations(raw, _valid_sections(raw, errors), models)
    else:
        violations = _rule_violations(raw, vars(schema), models)
    if violations or schema is None:
        given_uuid = raw.get("taskUUID")
        raise TaskValidationError(violations, task_uuid=given_uuid if isinstance(given_uuid, str) else None)
    return _task(schema)
