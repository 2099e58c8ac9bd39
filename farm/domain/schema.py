"""The ``videoInference`` task as a client sends it: pydantic v2 models, and their JSON Schema.

``TaskSchema`` mirrors the seed API's JSON field by field: the seed's names (camelCase aliases),
limits and defaults, enumerations matched case-insensitively with the seed's wording accepted as
aliases, and the extensions ``seed``, ``settings.chunkMode`` and ``inputs.mask``. Each model checks
every rule its own object can see: JSON types (strict: ``true`` is no integer, ``95.0`` is no
integer), ranges, array lengths, unknown fields, the shape of media strings and URLs, tags, and in
``InputsSchema`` the rules between its arrays. ``null`` for a field means "absent".

Rules that span sections of the task (width with height, frame indices within the duration, tags
mentioned in the prompt, audio with a reference video, the seed of the last result, a known model)
are checked by ``farm.domain.validation.parse_task``, which also words pydantic's errors as
``Violation``s with the seed's field paths and resolves the defaults into a ``VideoInferenceTask``.

The published JSON Schema (``docs/task.schema.json``) is ``task_json_schema()``; regenerate it with
``python -m farm.domain.schema > docs/task.schema.json`` (a test checks that the file is current).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    Tag,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from farm.domain.constants import (
    DEFAULT_RESOLUTION,
    DIMENSION_MAX,
    DIMENSION_MIN,
    DURATION_DEFAULT_S,
    DURATION_MAX_S,
    DURATION_MIN_S,
    FRAME_IMAGES_MAX,
    MAX_MEDIA_BYTES,
    NUMBER_RESULTS_MAX,
    NUMBER_RESULTS_MIN,
    OUTPUT_FORMATS,
    OUTPUT_QUALITY_DEFAULT,
    OUTPUT_QUALITY_MAX,
    OUTPUT_QUALITY_MIN,
    POSITIVE_PROMPT_MAX_CHARS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    REFERENCE_IMAGES_MAX,
    REFERENCE_IMAGES_PER_GROUP_MAX,
    REFERENCE_VIDEOS_COUNT,
    RESOLUTION_PRESETS,
    SEED_MAX,
    TAG_NAME,
    TTL_MIN_S,
    is_tag,
)
from farm.domain.task import OutputFormat, ReferenceImageType, ReferenceVideoType, SafetyMode

__all__ = [
    "FRAME_ITEM_TAGS",
    "REFERENCE_IMAGE_TYPE_ALIASES",
    "REFERENCE_VIDEO_TYPE_ALIASES",
    "SAFETY_MODE_ALIASES",
    "TASK_TYPE",
    "FrameImageSchema",
    "InputsSchema",
    "ReferenceImageSchema",
    "ReferenceVideoSchema",
    "SafetySchema",
    "SettingsSchema",
    "TaskSchema",
    "json_type",
    "task_json_schema",
]

#: The one ``taskType`` this schema describes.
TASK_TYPE = "videoInference"

#: Accepted spellings (lower-case) of ``safety.mode`` -> canonical value.
SAFETY_MODE_ALIASES: dict[str, str] = {
    "none": "none",
    "disabled": "none",
    "off": "none",
    "fast": "fast",
    "keyframes": "fast",
    "key_frames": "fast",
    "key frames": "fast",
    "full": "full",
    "all": "full",
    "all_frames": "full",
    "all frames": "full",
}

#: Accepted spellings (lower-case) of ``inputs.referenceImages[].type`` -> canonical value.
REFERENCE_IMAGE_TYPE_ALIASES: dict[str, str] = {
    "grid": "grid",
    "collage": "grid",
    "image": "image",
    "reference": "image",
    "subject": "image",
    "scene": "image",
    "style": "image",
}

#: Accepted spellings (lower-case) of ``inputs.referenceVideos[].type`` -> canonical value.
REFERENCE_VIDEO_TYPE_ALIASES: dict[str, str] = {
    "reference": "reference",
    "motion": "reference",
    "edit": "reference",
    "replace": "reference",
    "extend": "extend",
    "extension": "extend",
}

#: The two shapes of an ``inputs.frameImages`` item. pydantic puts the shape's tag in an error's
#: location (``frameImages, 0, "object", "frame"``); field paths leave it out.
FRAME_ITEM_TAGS = ("string", "object")

_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_TOKEN = r"[A-Za-z0-9!#$&^_.+\-]+"
_DATA_URI_HEAD = re.compile(rf"data:{_TOKEN}/{_TOKEN}(?:;{_TOKEN}=[^;,]*)*;base64,", re.IGNORECASE)
_UUID4 = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}")
# Whitespace (str.isspace's set) and control characters; a regex, not a loop: media URLs may be long.
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")
# A lone surrogate cannot be encoded as UTF-8: the render (and gRPC) would fail on it much later.
_SURROGATE = re.compile("[\ud800-\udfff]")


# --------------------------------------------------------------------------- field rules


def json_type(value: object) -> str:
    """The JSON name of ``value``'s type, for messages (``"integer"``, ``"array"``, ``"NaN"``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        if math.isfinite(value):
            return "number"
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _error(kind: str, message: str, limit: Any = None) -> PydanticCustomError:
    """A violation of one of the schema's own rules; ``limit`` travels in the error's context."""
    # The message goes through the context: a template would read any brace in it as a placeholder.
    return PydanticCustomError(kind, "{message}", {"message": message, "limit": limit})


def _type_error(expected: str, value: object) -> PydanticCustomError:
    return _error("json_type", f"must be {expected}, got {json_type(value)}")


def _check_unicode(text: str) -> None:
    """Refuse a lone surrogate (``"\\ud800"``): valid in a Python string, not in UTF-8."""
    # isascii() is O(1) on CPython: the search runs only over non-ASCII text.
    if not text.isascii() and _SURROGATE.search(text) is not None:
        raise _error("unicode", "must be valid Unicode text: it holds a lone surrogate (U+D800..U+DFFF)")


def _url_problem(text: str) -> str | None:
    """Why ``text`` is not an absolute http/https URL with a host, or None when it is one."""
    if _URL_FORBIDDEN.search(text) is not None:
        return "must be a URL without whitespace or control characters"
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "must be a valid absolute http or https URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if not host:
        return "must be an absolute URL with a host"
    return None


def _task_type(value: Any) -> str:
    if not isinstance(value, str) or value != TASK_TYPE:
        raise _error("task_type", f'must be "{TASK_TYPE}"', TASK_TYPE)
    return value


def _task_uuid(value: Any) -> str:
    """A UUID v4 in canonical 8-4-4-4-12 form (upper-case hex accepted, kept as given)."""
    if not isinstance(value, str):
        raise _type_error("a string (UUID v4)", value)
    if len(value) != 36 or _UUID4.fullmatch(value) is None:
        raise _error("uuid", "must be a UUID v4 in canonical form (xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx)")
    return value


def _non_empty_text(value: Any) -> str:
    if not isinstance(value, str):
        raise _type_error("a string", value)
    if not value:
        raise _error("empty", "must not be empty")
    _check_unicode(value)
    return value


def _prompt(value: Any) -> str:
    """1..POSITIVE_PROMPT_MAX_CHARS characters, not only whitespace."""
    limit = (1, POSITIVE_PROMPT_MAX_CHARS)
    if not isinstance(value, str):
        raise _type_error("a string", value)
    if not value.strip():
        raise _error("empty", "must not be empty or only whitespace", limit)
    if len(value) > POSITIVE_PROMPT_MAX_CHARS:
        raise _error(
            "prompt_length", f"must be at most {POSITIVE_PROMPT_MAX_CHARS} characters (got {len(value)})", limit
        )
    _check_unicode(value)
    return value


def _http_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _type_error("a string (an http or https URL)", value)
    _check_unicode(value)
    problem = _url_problem(value)
    if problem is not None:
        raise _error("url", problem, ("http", "https"))
    return value


def _media(value: Any) -> str:
    """A media string (UUID, URL, data URI or base64), checked for shape only: decoding is later."""
    if not isinstance(value, str):
        raise _type_error("a string (UUID, URL, data URI or base64)", value)
    if not value:
        raise _error("empty", "must not be empty")
    if len(value) > MAX_MEDIA_BYTES:
        raise _error("media_length", f"must be at most {MAX_MEDIA_BYTES} characters", MAX_MEDIA_BYTES)
    _check_unicode(value)
    if value[:5].lower() == "data:":
        head = _DATA_URI_HEAD.match(value)
        if head is None or head.end() == len(value):
            raise _error("data_uri", "must be a data URI of the form data:<type>/<subtype>;base64,<data>")
    elif _URL_LIKE.match(value):
        problem = _url_problem(value)
        if problem is not None:
            raise _error("url", problem, ("http", "https"))
    return value


def _tag(value: Any) -> str:
    if not isinstance(value, str):
        raise _type_error("a string starting with @", value)
    if not is_tag(value):
        raise _error(
            "tag",
            "must be @ and a name of letters, digits and underscores, with single hyphens inside "
            "(e.g. @actor1, @shop-2)",
        )
    return value


def _frame(value: Any) -> int | str:
    """``"first"``, ``"last"`` (any letter case, stored lower-case) or a frame index >= 0.

    The upper bound depends on ``duration``: ``parse_task`` checks it."""
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("first", "last"):
            return lowered
        raise _error("frame", 'must be "first", "last" or a frame index')
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error('"first", "last" or an integer frame index', value)
    if value < 0:
        raise _error("frame", "must be at least 0", 0)
    return value


class _Choice:
    """Annotation of an enumerated string: matched case-insensitively against ``aliases``
    (lower-case spelling -> canonical value) and stored canonical. The JSON Schema lists the
    canonical values, then the aliases."""

    def __init__(self, aliases: Mapping[str, str]):
        self.aliases = dict(aliases)
        self.allowed = tuple(dict.fromkeys(aliases.values()))
        canonical = {name.lower() for name in self.allowed}
        self.others = tuple(name for name in aliases if name not in canonical)
        self.message = "must be one of " + ", ".join(self.allowed)
        if self.others:
            self.message += " (also accepted: " + ", ".join(self.others) + ")"

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _type_error("a string", value)
        found = self.aliases.get(value.lower())
        if found is None:
            raise _error("enum", self.message, self.allowed)
        return found

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self.check)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {"type": "string", "enum": [*self.allowed, *self.others]}


def _lower(*names: str) -> dict[str, str]:
    return {name.lower(): name for name in names}


TaskUUID = Annotated[str, PlainValidator(_task_uuid), WithJsonSchema({"type": "string", "format": "uuid"})]
NonEmptyText = Annotated[str, PlainValidator(_non_empty_text), WithJsonSchema({"type": "string", "minLength": 1})]
Prompt = Annotated[
    str,
    PlainValidator(_prompt),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": POSITIVE_PROMPT_MAX_CHARS}),
]
HttpURL = Annotated[
    str,
    PlainValidator(_http_url),
    WithJsonSchema({"type": "string", "format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}),
]
Media = Annotated[
    str,
    PlainValidator(_media),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_MEDIA_BYTES,
            "description": "An asset UUID, an earlier result's videoUUID, an http(s) URL, a base64 data URI "
            "(data:<type>/<subtype>;base64,<data>) or bare base64.",
        }
    ),
]
PromptTag = Annotated[
    str,
    PlainValidator(_tag),
    WithJsonSchema({"type": "string", "pattern": f"^@{TAG_NAME}$", "examples": ["@actor1", "@style"]}),
]
Frame = Annotated[
    int | Literal["first", "last"],
    PlainValidator(_frame),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "enum": ["first", "last"]},
                {"type": "integer", "minimum": 0, "description": "A frame index below round(duration x 32)."},
            ]
        }
    ),
]


# --------------------------------------------------------------------------- models


class _Schema(BaseModel):
    """Shared configuration: strict JSON types, unknown fields refused, camelCase names, frozen."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, alias_generator=to_camel)

    @model_validator(mode="before")
    @classmethod
    def _json_object(cls, data: Any) -> Any:
        """``null`` for a field means "absent": the default applies, a required field is missing.

        A key that is no valid text (a lone surrogate; a non-string key from a Python caller) is
        escaped, so it is reported as an unknown field like any other instead of failing the object.
        """
        if type(data) is dict:
            for key, value in data.items():
                if value is None or type(key) is not str or not key.isascii():
                    break
            else:
                return data  # the usual case, without a copy (this runs for every object of every task)
        if isinstance(data, Mapping):
            return {_key_text(key): value for key, value in data.items() if value is not None}
        return data


def _key_text(key: object) -> str:
    if not isinstance(key, str):
        return f"<{type(key).__name__} key>"
    if key.isascii() or _SURROGATE.search(key) is None:
        return key
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


class SafetySchema(_Schema):
    """Content safety checking of the results."""

    model_config = ConfigDict(title="safety")

    check_content: bool = Field(default=False, description="Check the results' frames; a flagged result is an error.")
    mode: Annotated[SafetyMode, _Choice(SAFETY_MODE_ALIASES)] = Field(
        default="none",
        description="none: no check; fast: key frames; full: every frame (case-insensitive; the seed's "
        "wording is accepted as aliases).",
    )


class SettingsSchema(_Schema):
    """Technical parameters of the inference."""

    model_config = ConfigDict(title="settings")

    audio: bool = Field(
        default=True,
        description="Generate a soundtrack. Default off with a reference-type video, whose audio is carried.",
    )
    prompt_extend: bool = Field(
        default=True, description="Extend the prompt before rendering (reported as extendedPrompt)."
    )
    chunk_mode: (
        Annotated[
            Literal["parallel", "sequential", "codenoise"], _Choice(_lower("parallel", "sequential", "codenoise"))
        ]
        | None
    ) = Field(
        default=None,
        description="Extension: parallel chunks, sequential chunks that continue the previous chunk's "
        "last frames (needs a VACE profile), or codenoise (overlapping windows denoised in lockstep, their "
        "overlaps fused at every step). Default: the model profile's.",
    )


class ReferenceImageSchema(_Schema):
    """One group of inputs.referenceImages."""

    model_config = ConfigDict(title="referenceImage")

    type: Annotated[ReferenceImageType, _Choice(REFERENCE_IMAGE_TYPE_ALIASES)] = Field(
        description="grid: one collage image; image: subject, scene or style references."
    )
    images: list[Media] = Field(min_length=1, max_length=REFERENCE_IMAGES_PER_GROUP_MAX)
    tag: PromptTag = Field(description="Links the group to its mention in positivePrompt.")
    audio: Media | None = Field(default=None, description="Voice timbre reference for lip-sync (at most 15 s).")


class FrameImageSchema(_Schema):
    """An item of inputs.frameImages that places its image at a frame of the video."""

    model_config = ConfigDict(title="frameImage")

    image: Media
    frame: Frame


_STRING_ITEM, _OBJECT_ITEM = FRAME_ITEM_TAGS


def _frame_item_shape(value: Any) -> str | None:
    if isinstance(value, str):
        return _STRING_ITEM
    if isinstance(value, (dict, Mapping)):
        return _OBJECT_ITEM
    return None


FrameImageItem = Annotated[
    Annotated[Media, Tag(_STRING_ITEM)] | Annotated[FrameImageSchema, Tag(_OBJECT_ITEM)],
    Discriminator(
        _frame_item_shape,
        custom_error_type="frame_item_type",
        custom_error_message="must be a string or an object with image and frame",
    ),
]


class ReferenceVideoSchema(_Schema):
    """The item of inputs.referenceVideos."""

    model_config = ConfigDict(title="referenceVideo")

    type: Annotated[ReferenceVideoType, _Choice(REFERENCE_VIDEO_TYPE_ALIASES)] = Field(
        description="reference: motion reference, subject replacement or editing (its audio is carried); "
        "extend: video extension."
    )
    tag: PromptTag = Field(description="Links the video to its mention in positivePrompt.")
    video: Media = Field(description="At most 15 s; at least 1,866,240 pixels per frame (e.g. 1920x972).")


def _rule(loc: tuple[str | int, ...], message: str, *, limit: Any = None, value: Any = None) -> InitErrorDetails:
    return InitErrorDetails(type=_error("rule", message, limit), loc=loc, input=value)


class InputsSchema(_Schema):
    """Media that conditions the render, checked for shape here and decoded when the task starts."""

    model_config = ConfigDict(title="inputs")

    reference_images: list[ReferenceImageSchema] | None = Field(
        default=None,
        min_length=1,
        max_length=REFERENCE_IMAGES_MAX,
        description="All groups share one type; type grid allows one group. Not with referenceVideos.",
    )
    frame_images: list[FrameImageItem] | None = Field(
        default=None,
        min_length=1,
        max_length=FRAME_IMAGES_MAX,
        description="Images placed at frames: a plain media string (positions spread over the clip) or "
        "{image, frame}; no two items on the same frame.",
    )
    reference_videos: list[ReferenceVideoSchema] | None = Field(
        default=None, min_length=REFERENCE_VIDEOS_COUNT, max_length=REFERENCE_VIDEOS_COUNT
    )
    mask: Media | None = Field(
        default=None,
        description="Extension: an image or video (white = regenerate) limiting a reference-type video's "
        "editing to its white area.",
    )

    @model_validator(mode="after")
    def _between_arrays(self) -> Self:
        """The rules between the arrays, each reported at the item it concerns."""
        if self.reference_images is None and self.reference_videos is None and self.mask is None:
            return self  # frame images only, or nothing: no rule applies
        errors = [*self._reference_image_types(), *self._unique_tags(), *self._mask_needs_a_video()]
        if self.reference_videos is not None and self.reference_images is not None:
            errors.append(_rule(("referenceVideos",), "cannot be combined with inputs.referenceImages"))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def _reference_image_types(self) -> list[InitErrorDetails]:
        groups = self.reference_images or []
        if not groups:
            return []
        shared = groups[0].type
        errors = [
            _rule(
                ("referenceImages", index, "type"),
                f"all reference image groups must share the same type ({shared!r})",
                limit=shared,
                value=group.type,
            )
            for index, group in enumerate(groups)
            if group.type != shared
        ]
        if shared == "grid" and len(groups) > 1 and not errors:
            errors.append(_rule(("referenceImages",), "type grid allows only one group", limit=1, value=len(groups)))
        return errors

    def _unique_tags(self) -> list[InitErrorDetails]:
        tagged = [(("referenceImages", i, "tag"), g.tag) for i, g in enumerate(self.reference_images or [])]
        tagged += [(("referenceVideos", i, "tag"), v.tag) for i, v in enumerate(self.reference_videos or [])]
        first_use: dict[str, str] = {}
        errors = []
        for loc, tag in tagged:
            if tag in first_use:
                errors.append(_rule(loc, f"tag must be unique; already used by {first_use[tag]}", value=tag))
            else:
                first_use[tag] = f"inputs.{loc[0]}[{loc[1]}].tag"
        return errors

    def _mask_needs_a_video(self) -> list[InitErrorDetails]:
        if self.mask is None:
            return []
        if not self.reference_videos:
            return [_rule(("mask",), "needs inputs.referenceVideos: the mask marks what to regenerate in that video")]
        if self.reference_videos[0].type != "reference":
            return [_rule(("mask",), "needs a referenceVideos item of type reference (editing), not extend")]
        return []


class TaskSchema(_Schema):
    """A SkyReels-V4-style videoInference task, as the seed API defines it, plus the farm's
    extensions seed, settings.chunkMode and inputs.mask. null for a field means absent;
    enumerations are case-insensitive; integers are JSON integers (not 95.0, not true)."""

    model_config = ConfigDict(title="videoInference task")

    task_type: Annotated[
        Literal["videoInference"], PlainValidator(_task_type), WithJsonSchema({"type": "string", "const": TASK_TYPE})
    ] = Field(description="Identifier of the type of task.")
    task_uuid: TaskUUID = Field(
        alias="taskUUID", description="UUID v4 matching responses to the task; unique per task."
    )
    output_type: Annotated[Literal["URL"], _Choice(_lower("URL"))] = Field(
        default="URL", description="Video output type."
    )
    output_format: Annotated[OutputFormat, _Choice(_lower(*OUTPUT_FORMATS))] = Field(
        default="MP4", description="MP4 (H.264), WEBM or MOV."
    )
    output_quality: int = Field(
        default=OUTPUT_QUALITY_DEFAULT,
        ge=OUTPUT_QUALITY_MIN,
        le=OUTPUT_QUALITY_MAX,
        description="Compression quality; higher keeps more detail in a larger file.",
    )
    webhook_url: HttpURL | None = Field(
        default=None, alias="webhookURL", description="Receives a JSON POST as each result completes."
    )
    delivery_method: Annotated[Literal["async"], _Choice(_lower("async"))] = Field(
        default="async", description="Immediate acknowledgement; poll with getResponse."
    )
    upload_endpoint: HttpURL | None = Field(
        default=None, description="Receives each result's file with HTTP PUT (e.g. a presigned URL)."
    )
    safety: SafetySchema = SafetySchema()
    ttl: int | None = Field(
        default=None, ge=TTL_MIN_S, description="Time-to-live of the generated content in seconds (outputType URL)."
    )
    include_cost: bool = Field(default=False, description="Include the task's cost in the response.")
    inputs: InputsSchema = InputsSchema()
    number_results: int = Field(
        default=NUMBER_RESULTS_MIN,
        ge=NUMBER_RESULTS_MIN,
        le=NUMBER_RESULTS_MAX,
        description="Results to generate; result i uses seed + i.",
    )
    model: NonEmptyText = Field(description="A model the farm serves (the default profile: skywork:skyreels@v4).")
    positive_prompt: Prompt = Field(
        description="What the video shows; mentions every reference's @tag (as a word: @heroes does not mention @hero)."
    )
    width: int | None = Field(
        default=None,
        ge=DIMENSION_MIN,
        le=DIMENSION_MAX,
        multiple_of=2,
        description="Given with height, instead of resolution; width x height at most 1920 x 1080.",
    )
    height: int | None = Field(
        default=None,
        ge=DIMENSION_MIN,
        le=DIMENSION_MAX,
        multiple_of=2,
        description="Given with width, instead of resolution.",
    )
    resolution: Annotated[str, _Choice(_lower(*RESOLUTION_PRESETS))] = Field(
        default=DEFAULT_RESOLUTION,
        description="480p (848x480), 720p (1280x720) or 1080p (1920x1080); not with width/height.",
    )
    duration: float = Field(
        default=DURATION_DEFAULT_S,
        ge=DURATION_MIN_S,
        le=DURATION_MAX_S,
        allow_inf_nan=False,
        description="Seconds; the video has round(duration x 32) frames.",
    )
    settings: SettingsSchema = SettingsSchema()
    seed: int | None = Field(
        default=None,
        ge=0,
        le=SEED_MAX,
        description="Extension: base seed of result 0 (result i uses seed + i, at most 2^63-1). Default: random.",
    )
    priority: int | None = Field(
        default=None,
        ge=PRIORITY_MIN,
        le=PRIORITY_MAX,
        description="Extension: scheduling priority within the API key's share (higher first). Default: 0.",
    )


class _NoFieldTitles(GenerateJsonSchema):
    """Property titles would only repeat the (camelCase) names, capitalised."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def task_json_schema(*, ref_template: str = DEFAULT_REF_TEMPLATE) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a ``videoInference`` task, field names as the seed spells them.

    It states what one task object may hold; the rules between fields (width with height, frames
    within the duration, tags mentioned in the prompt, ...) are in ``docs/task-schema.md``. The
    nested objects are in ``$defs``; for an OpenAPI document pass
    ``ref_template="#/components/schemas/{model}"`` and move ``$defs`` into ``components.schemas``.
    """
    schema = TaskSchema.model_json_schema(
        by_alias=True, mode="validation", ref_template=ref_template, schema_generator=_NoFieldTitles
    )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def main() -> None:
    """``python -m farm.domain.schema``: print the JSON Schema (as committed in docs/task.schema.json)."""
    sys.stdout.write(json.dumps(task_json_schema(), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
