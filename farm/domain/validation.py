"""Validate a seed-shaped ``videoInference`` task into a :class:`~farm.domain.task.VideoInferenceTask`.

:func:`parse_task` takes the JSON as ``json.load`` returns it (camelCase field names) and either
returns the frozen dataclasses with every default applied or raises
:class:`~farm.domain.errors.TaskValidationError` listing *every* broken rule at once. Each
:class:`~farm.domain.errors.Violation` names the full path of the field (``outputQuality``,
``settings.audio``, ``inputs.frameImages[2].frame``; the task itself is :data:`ROOT_FIELD`), the
rule in words, the limit (a number, a ``(min, max)`` tuple or a tuple of allowed values) and the
received value (long strings and big containers are shortened so an error never carries a 50 MB
data URI).

General rules
-------------
* ``null`` for an optional field means "absent" (the default applies); ``null`` for a required
  field is reported as missing.
* Fields that are not in the API are violations ("unknown field"), at the top level and inside
  ``safety``, ``settings``, ``inputs`` and the objects of the input arrays. The one documented
  extension is the top-level ``seed``: an integer ``0..2**63-1``, the base seed of result 0
  (result ``i`` uses ``seed + i``).
* Integers are JSON integers: ``true``/``false`` are not integers and neither is ``95.0``.
  ``duration`` is a number (integer or float, finite, not a boolean).
* Enumerated string values are matched case-insensitively and stored in their canonical
  spelling; ``taskType`` (``videoInference``) and ``model`` must match exactly.

Accepted value names (canonical value first, then the aliases taken from the seed's wording)
---------------------------------------------------------------------------------------------
* ``outputType``: ``URL``.  ``deliveryMethod``: ``async``.
* ``outputFormat``: ``MP4``, ``WEBM``, ``MOV`` (stored upper-case).
* ``resolution``: ``480p``, ``720p``, ``1080p`` (stored lower-case).
* ``safety.mode``: ``none`` (``disabled``, ``off``), ``fast`` (``keyframes``, ``key_frames``,
  ``key frames``), ``full`` (``all``, ``all_frames``, ``all frames``).
* ``inputs.referenceImages[].type``: ``grid`` (``collage``), ``image`` (``reference``,
  ``subject``, ``scene``, ``style``).
* ``inputs.referenceVideos[].type``: ``reference`` (``motion``, ``edit``, ``replace``),
  ``extend`` (``extension``).
* ``inputs.frameImages[].frame``: ``first``, ``last`` or a frame index ``0..num_frames-1``.

Media strings (images, audio, video) are only checked for shape here: a non-empty string of at
most :data:`MEDIA_MAX_CHARS` characters; ``data:...`` must be ``data:<type>/<subtype>[;k=v];base64,
<payload>``; anything that looks like a URL (``scheme://``) must be http/https with a host.
UUIDs and bare base64 pass as they are; decoding happens in a later stage.

Cross-field rules: ``width``/``height`` come together and exclude ``resolution`` (the task's
``resolution`` is then None); ``inputs.referenceVideos`` excludes ``inputs.referenceImages``; a
``reference``-type video carries its own audio, so an explicit ``settings.audio: true`` is a
violation and an absent one becomes ``False``; prompt tags are unique across all inputs.
"""

from __future__ import annotations

import math
import re
import reprlib
import uuid
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from farm.domain.constants import (
    DEFAULT_MODEL,
    DEFAULT_RESOLUTION,
    DIMENSION_MAX,
    DIMENSION_MIN,
    DURATION_DEFAULT_S,
    DURATION_MAX_S,
    DURATION_MIN_S,
    MAX_PIXELS,
    NUMBER_RESULTS_MAX,
    NUMBER_RESULTS_MIN,
    OUTPUT_FORMATS,
    OUTPUT_QUALITY_DEFAULT,
    OUTPUT_QUALITY_MAX,
    OUTPUT_QUALITY_MIN,
    POSITIVE_PROMPT_MAX_CHARS,
    RESOLUTION_PRESETS,
    TTL_MIN_S,
    frame_count,
)
from farm.domain.errors import TaskValidationError, Violation
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

#: Longest accepted media string (a data URI or base64 of up to 50 MB of characters).
MEDIA_MAX_CHARS = 50 * 1024 * 1024

#: Largest accepted ``seed`` (the extension field): a signed 64-bit integer.
SEED_MAX = 2**63 - 1

REFERENCE_IMAGES_MAX = 3
REFERENCE_IMAGES_PER_GROUP_MAX = 5
FRAME_IMAGES_MAX = 8

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

_TOP_LEVEL_FIELDS = frozenset(
    {
        "taskType",
        "taskUUID",
        "outputType",
        "outputFormat",
        "outputQuality",
        "webhookURL",
        "deliveryMethod",
        "uploadEndpoint",
        "safety",
        "ttl",
        "includeCost",
        "inputs",
        "numberResults",
        "model",
        "positivePrompt",
        "width",
        "height",
        "resolution",
        "duration",
        "settings",
        "seed",
    }
)
_SAFETY_FIELDS = frozenset({"checkContent", "mode"})
_SETTINGS_FIELDS = frozenset({"audio", "promptExtend", "chunkMode"})
_INPUTS_FIELDS = frozenset({"referenceImages", "frameImages", "referenceVideos", "mask"})
_REFERENCE_IMAGE_FIELDS = frozenset({"type", "images", "tag", "audio"})
_FRAME_IMAGE_FIELDS = frozenset({"image", "frame"})
_REFERENCE_VIDEO_FIELDS = frozenset({"type", "tag", "video"})

_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_TOKEN = r"[A-Za-z0-9!#$&^_.+\-]+"
_DATA_URI_HEAD = re.compile(rf"data:{_TOKEN}/{_TOKEN}(?:;{_TOKEN}=[^;,]*)*;base64,", re.IGNORECASE)

_SHOWN_MAX_CHARS = 200
_SHOWN_MAX_NODES = 50
_SHOWN_MAX_INT_BITS = 128
_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlevel = 3


# --------------------------------------------------------------------------- reporting helpers


def _json_type(value: object) -> str:
    """The JSON name of ``value``'s type, for messages ("integer", "array", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _is_small_json(value: object) -> bool:
    """Whether ``value`` is plain JSON data small enough to carry in a violation as it is."""
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
        if item is None or isinstance(item, (bool, int, float)):
            continue
        if isinstance(item, str):
            chars -= len(item)
            if chars < 0:
                return False
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return False
            chars -= sum(len(key) for key in item)
            if chars < 0:
                return False
            stack.extend(item.values())
        else:
            return False
    return True


def _shown(value: object) -> object:
    """``value`` as stored in a violation: as is when small, else a shortened text."""
    if isinstance(value, str) and len(value) > _SHOWN_MAX_CHARS:
        return f"{value[:80]}... ({len(value)} characters)"
    if isinstance(value, int) and value.bit_length() > _SHOWN_MAX_INT_BITS:
        return f"<integer of {value.bit_length()} bits>"
    if _is_small_json(value):
        return value
    try:
        return _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ or a huge nested integer
        return f"<{_json_type(value)}>"


class _Report:
    """Collects violations while the task is read."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def add(self, field: str, message: str, *, limit: Any = None, value: Any = None) -> None:
        """Record one violation."""
        self.violations.append(Violation(field=field, message=message, limit=limit, value=_shown(value)))

    def wrong_type(self, field: str, expected: str, value: object) -> None:
        """Record that ``field`` has the wrong JSON type."""
        self.add(field, f"must be {expected}, got {_json_type(value)}", value=value)

    def missing(self, field: str, limit: Any = None) -> None:
        """Record that the required ``field`` is absent (or null)."""
        self.add(field, "is required", limit=limit)

    def mark(self) -> int:
        """A marker to ask later whether anything was reported since."""
        return len(self.violations)

    def clean_since(self, mark: int) -> bool:
        """Whether no violation was reported since ``mark``."""
        return len(self.violations) == mark


def _path(prefix: str, name: str) -> str:
    """``prefix.name``, or ``name`` at the top level."""
    return f"{prefix}.{name}" if prefix else name


def _number_text(number: float) -> str:
    """``number`` for a message: integers in full, floats without a needless ``.0``."""
    return f"{number:g}" if isinstance(number, float) else str(number)


def _range_rule(lo: float | None, hi: float | None) -> tuple[str, Any]:
    """Message and limit of a numeric range."""
    if lo is not None and hi is not None:
        return f"must be between {_number_text(lo)} and {_number_text(hi)}", (lo, hi)
    if lo is not None:
        return f"must be at least {_number_text(lo)}", lo
    return f"must be at most {_number_text(hi)}", hi


# --------------------------------------------------------------------------- field readers
# Each reader returns the valid value, ``default`` when the field is absent or null, and None
# when the field is invalid (after reporting why).


def _check_object(report: _Report, value: object, field: str, allowed: frozenset[str]) -> Mapping[Any, Any] | None:
    """``value`` if it is an object with only ``allowed`` fields (unknown fields are reported)."""
    if not isinstance(value, Mapping):
        report.wrong_type(field, "an object", value)
        return None
    for key in value:
        if key not in allowed:
            report.add(
                _path(field, str(key)),
                "unknown field",
                limit=tuple(sorted(allowed)),
                value=value[key],
            )
    return value


def _read_int(
    report: _Report,
    obj: Mapping[Any, Any],
    key: str,
    prefix: str,
    *,
    default: int | None = None,
    lo: int | None = None,
    hi: int | None = None,
) -> int | None:
    """An integer (not a boolean, not a float) within ``lo..hi``."""
    field = _path(prefix, key)
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        report.wrong_type(field, "an integer", value)
        return None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        message, limit = _range_rule(lo, hi)
        report.add(field, message, limit=limit, value=value)
        return None
    return value


def _read_bool(report: _Report, obj: Mapping[Any, Any], key: str, prefix: str, *, default: bool) -> bool | None:
    """A JSON boolean."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        report.wrong_type(_path(prefix, key), "a boolean", value)
        return None
    return value


def _read_enum(
    report: _Report,
    obj: Mapping[Any, Any],
    key: str,
    prefix: str,
    *,
    aliases: Mapping[str, str],
    default: str | None,
    required: bool = False,
) -> str | None:
    """A string matched case-insensitively against ``aliases`` (spelling -> canonical value)."""
    field = _path(prefix, key)
    value = obj.get(key)
    allowed = tuple(dict.fromkeys(aliases.values()))
    if value is None:
        if required:
            report.missing(field, limit=allowed)
        return default
    if not isinstance(value, str):
        report.wrong_type(field, "a string", value)
        return None
    canonical = aliases.get(value.lower())
    if canonical is None:
        canonical_names = {name.lower() for name in allowed}
        extra = [name for name in aliases if name not in canonical_names]
        message = "must be one of " + ", ".join(allowed)
        if extra:
            message += " (also accepted: " + ", ".join(extra) + ")"
        report.add(field, message, limit=allowed, value=value)
    return canonical


def _read_required_string(report: _Report, obj: Mapping[Any, Any], key: str, prefix: str) -> str | None:
    """A required, non-empty string."""
    field = _path(prefix, key)
    value = obj.get(key)
    if value is None:
        report.missing(field)
        return None
    if not isinstance(value, str):
        report.wrong_type(field, "a string", value)
        return None
    if not value:
        report.add(field, "must not be empty", value=value)
        return None
    return value


def _url_problem(text: str) -> str | None:
    """Why ``text`` is not an absolute http/https URL with a host, or None when it is one."""
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in text):
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


def _read_url(report: _Report, obj: Mapping[Any, Any], key: str) -> str | None:
    """An optional absolute http/https URL with a host."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        report.wrong_type(key, "a string (an http or https URL)", value)
        return None
    problem = _url_problem(value)
    if problem is not None:
        report.add(key, problem, limit=("http", "https"), value=value)
        return None
    return value


def _check_media(report: _Report, value: object, field: str) -> str | None:
    """A media string (UUID, URL, data URI or base64), checked for shape only."""
    if value is None:
        report.missing(field)
        return None
    if not isinstance(value, str):
        report.wrong_type(field, "a string (UUID, URL, data URI or base64)", value)
        return None
    if not value:
        report.add(field, "must not be empty", value=value)
        return None
    if len(value) > MEDIA_MAX_CHARS:
        report.add(
            field,
            f"must be at most {MEDIA_MAX_CHARS} characters",
            limit=MEDIA_MAX_CHARS,
            value=value,
        )
        return None
    if value[:5].lower() == "data:":
        head = _DATA_URI_HEAD.match(value)
        if head is None or head.end() == len(value):
            report.add(
                field,
                "must be a data URI of the form data:<type>/<subtype>;base64,<data>",
                value=value,
            )
            return None
    elif _URL_LIKE.match(value):
        problem = _url_problem(value)
        if problem is not None:
            report.add(field, problem, limit=("http", "https"), value=value)
            return None
    return value


def _read_array(report: _Report, value: object, field: str, *, lo: int, hi: int) -> list[Any] | None:
    """An array with ``lo..hi`` items (``value`` is known to be present)."""
    if not isinstance(value, (list, tuple)):
        report.wrong_type(field, "an array", value)
        return None
    if not lo <= len(value) <= hi:
        if lo == hi:
            message, limit = f"must have exactly {lo} item(s)", lo
        else:
            message, limit = f"must have between {lo} and {hi} items", (lo, hi)
        report.add(field, message, limit=limit, value=value)
        return None
    return list(value)


def _read_tag(report: _Report, obj: Mapping[Any, Any], field: str) -> str | None:
    """A required prompt tag: ``@`` followed by at least one character, no whitespace."""
    value = obj.get("tag")
    if value is None:
        report.missing(field)
        return None
    if not isinstance(value, str):
        report.wrong_type(field, "a string starting with @", value)
        return None
    if len(value) < 2 or not value.startswith("@") or any(c.isspace() for c in value):
        report.add(
            field,
            "must start with @ followed by at least one character, without whitespace",
            value=value,
        )
        return None
    return value


# --------------------------------------------------------------------------- sections


def _read_task_uuid(report: _Report, raw: Mapping[Any, Any]) -> str | None:
    """``taskUUID``: a canonical UUID v4 string (upper-case hex accepted, kept as given)."""
    value = raw.get("taskUUID")
    if value is None:
        report.missing("taskUUID")
        return None
    if not isinstance(value, str):
        report.wrong_type("taskUUID", "a string (UUID v4)", value)
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != value.lower() or parsed.version != 4:
        report.add(
            "taskUUID",
            "must be a UUID v4 in canonical form (xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx)",
            value=value,
        )
        return None
    return value


def _read_model(report: _Report, raw: Mapping[Any, Any], known_models: tuple[str, ...]) -> str | None:
    """``model``: a required non-empty string naming a known model."""
    model = _read_required_string(report, raw, "model", "")
    if model is not None and model not in known_models:
        report.add(
            "model",
            "must be one of the known models: " + ", ".join(known_models),
            limit=known_models,
            value=model,
        )
        return None
    return model


def _read_prompt(report: _Report, raw: Mapping[Any, Any]) -> str | None:
    """``positivePrompt``: a required string of 1..5120 characters, not only whitespace."""
    value = raw.get("positivePrompt")
    if value is None:
        report.missing("positivePrompt", limit=(1, POSITIVE_PROMPT_MAX_CHARS))
        return None
    if not isinstance(value, str):
        report.wrong_type("positivePrompt", "a string", value)
        return None
    if not value.strip():
        report.add(
            "positivePrompt",
            "must not be empty or only whitespace",
            limit=(1, POSITIVE_PROMPT_MAX_CHARS),
            value=value,
        )
        return None
    if len(value) > POSITIVE_PROMPT_MAX_CHARS:
        report.add(
            "positivePrompt",
            f"must be at most {POSITIVE_PROMPT_MAX_CHARS} characters (got {len(value)})",
            limit=(1, POSITIVE_PROMPT_MAX_CHARS),
            value=value,
        )
        return None
    return value


def _read_dimension(report: _Report, raw: Mapping[Any, Any], key: str) -> int | None:
    """``width`` or ``height``: an even integer in DIMENSION_MIN..DIMENSION_MAX."""
    value = _read_int(report, raw, key, "", lo=DIMENSION_MIN, hi=DIMENSION_MAX)
    if value is not None and value % 2:
        report.add(key, "must be even", limit=(DIMENSION_MIN, DIMENSION_MAX), value=value)
        return None
    return value


def _read_size(report: _Report, raw: Mapping[Any, Any]) -> tuple[str | None, int | None, int | None]:
    """``resolution`` or ``width``/``height`` -> (resolution, width, height)."""
    width_given = raw.get("width") is not None
    height_given = raw.get("height") is not None
    width = _read_dimension(report, raw, "width")
    height = _read_dimension(report, raw, "height")
    if width_given != height_given:
        missing = "height" if width_given else "width"
        report.add(missing, "width and height must be given together")
    if width is not None and height is not None and width * height > MAX_PIXELS:
        report.add(
            "width",
            f"width x height must be at most {MAX_PIXELS} pixels",
            limit=MAX_PIXELS,
            value=f"{width}x{height}",
        )
    if width_given or height_given:
        if raw.get("resolution") is not None:
            report.add(
                "resolution",
                "cannot be combined with width/height; give one or the other",
                value=raw.get("resolution"),
            )
        return None, width, height
    presets = {name: name for name in RESOLUTION_PRESETS}
    resolution = _read_enum(report, raw, "resolution", "", aliases=presets, default=DEFAULT_RESOLUTION)
    if resolution is None:
        return None, None, None
    preset_width, preset_height = RESOLUTION_PRESETS[resolution]
    return resolution, preset_width, preset_height


def _read_duration(report: _Report, raw: Mapping[Any, Any]) -> float | None:
    """``duration``: a finite number of seconds in DURATION_MIN_S..DURATION_MAX_S."""
    value = raw.get("duration")
    if value is None:
        return DURATION_DEFAULT_S
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        report.wrong_type("duration", "a number (seconds)", value)
        return None
    if (isinstance(value, float) and not math.isfinite(value)) or not (DURATION_MIN_S <= value <= DURATION_MAX_S):
        message, limit = _range_rule(DURATION_MIN_S, DURATION_MAX_S)
        report.add("duration", message + " seconds", limit=limit, value=value)
        return None
    return float(value)


def _read_safety(report: _Report, raw: Mapping[Any, Any]) -> Safety | None:
    """``safety``: ``checkContent`` and ``mode`` (aliases normalised)."""
    value = raw.get("safety")
    if value is None:
        return Safety()
    mark = report.mark()
    obj = _check_object(report, value, "safety", _SAFETY_FIELDS)
    if obj is None:
        return None
    check = _read_bool(report, obj, "checkContent", "safety", default=False)
    mode = _read_enum(report, obj, "mode", "safety", aliases=SAFETY_MODE_ALIASES, default="none")
    if not report.clean_since(mark) or check is None or mode is None:
        return None
    return Safety(check_content=check, mode=mode)  # type: ignore[arg-type]


def _read_settings(report: _Report, raw: Mapping[Any, Any]) -> tuple[Settings | None, bool]:
    """``settings`` -> (settings, whether ``audio`` was given explicitly)."""
    value = raw.get("settings")
    if value is None:
        return Settings(), False
    mark = report.mark()
    obj = _check_object(report, value, "settings", _SETTINGS_FIELDS)
    if obj is None:
        return None, False
    audio = _read_bool(report, obj, "audio", "settings", default=True)
    extend = _read_bool(report, obj, "promptExtend", "settings", default=True)
    chunk_mode = _read_enum(
        report, obj, "chunkMode", "settings", aliases={"parallel": "parallel", "sequential": "sequential"}, default=None
    )
    audio_given = obj.get("audio") is not None
    if not report.clean_since(mark) or audio is None or extend is None:
        return None, audio_given
    return Settings(audio=audio, prompt_extend=extend, chunk_mode=chunk_mode), audio_given


def _read_reference_images(
    report: _Report, value: object, tags: list[tuple[str, str]]
) -> tuple[ReferenceImageGroup, ...] | None:
    """``inputs.referenceImages``: 1..3 groups of one shared type (grid: one group only)."""
    base = "inputs.referenceImages"
    items = _read_array(report, value, base, lo=1, hi=REFERENCE_IMAGES_MAX)
    if items is None:
        return None
    mark = report.mark()
    groups: list[ReferenceImageGroup] = []
    types: list[tuple[int, str]] = []
    for index, item in enumerate(items):
        field = f"{base}[{index}]"
        item_mark = report.mark()
        obj = _check_object(report, item, field, _REFERENCE_IMAGE_FIELDS)
        if obj is None:
            continue
        group_type = _read_enum(
            report,
            obj,
            "type",
            field,
            aliases=REFERENCE_IMAGE_TYPE_ALIASES,
            default=None,
            required=True,
        )
        if group_type is not None:
            types.append((index, group_type))
        images: list[str] = []
        images_value = obj.get("images")
        if images_value is None:
            report.missing(f"{field}.images")
        else:
            image_items = _read_array(report, images_value, f"{field}.images", lo=1, hi=REFERENCE_IMAGES_PER_GROUP_MAX)
            for image_index, image in enumerate(image_items or ()):
                checked = _check_media(report, image, f"{field}.images[{image_index}]")
                if checked is not None:
                    images.append(checked)
        tag = _read_tag(report, obj, f"{field}.tag")
        if tag is not None:
            tags.append((tag, f"{field}.tag"))
        audio = None
        if obj.get("audio") is not None:
            audio = _check_media(report, obj.get("audio"), f"{field}.audio")
        if report.clean_since(item_mark) and group_type is not None and tag is not None:
            groups.append(
                ReferenceImageGroup(
                    type=group_type,  # type: ignore[arg-type]
                    images=tuple(images),
                    tag=tag,
                    audio=audio,
                )
            )
    if types:
        shared = types[0][1]
        mixed = False
        for index, group_type in types[1:]:
            if group_type != shared:
                mixed = True
                report.add(
                    f"{base}[{index}].type",
                    f"all reference image groups must share the same type ({shared!r})",
                    limit=shared,
                    value=group_type,
                )
        if shared == "grid" and len(items) > 1 and not mixed:
            report.add(base, "type grid allows only one group", limit=1, value=len(items))
    if not report.clean_since(mark):
        return None
    return tuple(groups)


def _frame_position(frame: int | str, num_frames: int | None) -> int | str:
    """The frame index a ``frame`` value targets (``"last"`` stays symbolic without a length)."""
    if frame == "first":
        return 0
    if frame == "last":
        return num_frames - 1 if num_frames is not None else "last"
    return frame


def _read_frame(report: _Report, obj: Mapping[Any, Any], field: str, num_frames: int | None) -> int | str | None:
    """``frame`` of a frame image: ``"first"``, ``"last"`` or an index below ``num_frames``."""
    value = obj.get("frame")
    if value is None:
        report.missing(field, limit=("first", "last", "0..num_frames-1"))
        return None
    if isinstance(value, str):
        if value.lower() in ("first", "last"):
            return value.lower()
        report.add(field, 'must be "first", "last" or a frame index', value=value)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        report.wrong_type(field, '"first", "last" or an integer frame index', value)
        return None
    if value < 0:
        report.add(field, "must be at least 0", limit=0, value=value)
        return None
    if num_frames is not None and value >= num_frames:
        report.add(
            field,
            f"must be a frame index below the clip's {num_frames} frames",
            limit=num_frames - 1,
            value=value,
        )
        return None
    return value


def _read_frame_images(report: _Report, value: object, num_frames: int | None) -> tuple[FrameImage, ...] | None:
    """``inputs.frameImages``: 1..8 strings or {image, frame} objects, positions distinct."""
    base = "inputs.frameImages"
    items = _read_array(report, value, base, lo=1, hi=FRAME_IMAGES_MAX)
    if items is None:
        return None
    mark = report.mark()
    frames: list[FrameImage] = []
    taken: dict[int | str, int] = {}
    for index, item in enumerate(items):
        field = f"{base}[{index}]"
        if isinstance(item, str):
            image = _check_media(report, item, field)
            if image is not None:
                frames.append(FrameImage(image=image))
            continue
        if not isinstance(item, Mapping):
            report.wrong_type(field, "a string or an object with image and frame", item)
            continue
        item_mark = report.mark()
        _check_object(report, item, field, _FRAME_IMAGE_FIELDS)
        image = _check_media(report, item.get("image"), f"{field}.image")
        frame = _read_frame(report, item, f"{field}.frame", num_frames)
        if frame is not None:
            position = _frame_position(frame, num_frames)
            if position in taken:
                report.add(
                    f"{field}.frame",
                    f"targets the same frame as {base}[{taken[position]}]",
                    value=item.get("frame"),
                )
            else:
                taken[position] = index
        if report.clean_since(item_mark) and image is not None and frame is not None:
            frames.append(FrameImage(image=image, frame=frame))
    if not report.clean_since(mark):
        return None
    return tuple(frames)


def _read_reference_videos(
    report: _Report, value: object, tags: list[tuple[str, str]]
) -> tuple[ReferenceVideo, ...] | None:
    """``inputs.referenceVideos``: exactly one {type, tag, video} object."""
    base = "inputs.referenceVideos"
    if not isinstance(value, (list, tuple)):
        report.wrong_type(base, "an array", value)
        return None
    mark = report.mark()
    if len(value) != 1:
        report.add(base, "must have exactly 1 item", limit=1, value=value)
    videos: list[ReferenceVideo] = []
    for index, item in enumerate(value):
        field = f"{base}[{index}]"
        obj = _check_object(report, item, field, _REFERENCE_VIDEO_FIELDS)
        if obj is None:
            continue
        video_type = _read_enum(
            report,
            obj,
            "type",
            field,
            aliases=REFERENCE_VIDEO_TYPE_ALIASES,
            default=None,
            required=True,
        )
        tag = _read_tag(report, obj, f"{field}.tag")
        if tag is not None:
            tags.append((tag, f"{field}.tag"))
        video = _check_media(report, obj.get("video"), f"{field}.video")
        if video_type is not None and tag is not None and video is not None:
            videos.append(
                ReferenceVideo(type=video_type, tag=tag, video=video)  # type: ignore[arg-type]
            )
    if not report.clean_since(mark):
        return None
    return tuple(videos)


def _read_inputs(report: _Report, raw: Mapping[Any, Any], num_frames: int | None) -> Inputs | None:
    """``inputs``: reference images, frame images and the reference video."""
    value = raw.get("inputs")
    if value is None:
        return Inputs()
    mark = report.mark()
    obj = _check_object(report, value, "inputs", _INPUTS_FIELDS)
    if obj is None:
        return None
    tags: list[tuple[str, str]] = []
    reference_images: tuple[ReferenceImageGroup, ...] | None = ()
    frame_images: tuple[FrameImage, ...] | None = ()
    reference_videos: tuple[ReferenceVideo, ...] | None = ()
    if obj.get("referenceImages") is not None:
        reference_images = _read_reference_images(report, obj["referenceImages"], tags)
    if obj.get("frameImages") is not None:
        frame_images = _read_frame_images(report, obj["frameImages"], num_frames)
    if obj.get("referenceVideos") is not None:
        reference_videos = _read_reference_videos(report, obj["referenceVideos"], tags)
        if obj.get("referenceImages") is not None:
            report.add(
                "inputs.referenceVideos",
                "cannot be combined with inputs.referenceImages",
            )
    mask = None
    if obj.get("mask") is not None:
        mask = _check_media(report, obj["mask"], "inputs.mask")
        if not obj.get("referenceVideos"):
            report.add("inputs.mask", "needs inputs.referenceVideos: the mask marks what to regenerate in that video")
        elif reference_videos and reference_videos[0].type != "reference":
            report.add("inputs.mask", "needs a referenceVideos item of type reference (editing), not extend")
    first_use: dict[str, str] = {}
    for tag, field in tags:
        if tag in first_use:
            report.add(field, f"tag must be unique; already used by {first_use[tag]}", value=tag)
        else:
            first_use[tag] = field
    if not report.clean_since(mark) or None in (reference_images, frame_images, reference_videos):
        return None
    return Inputs(
        reference_images=reference_images,  # type: ignore[arg-type]
        frame_images=frame_images,  # type: ignore[arg-type]
        reference_videos=reference_videos,  # type: ignore[arg-type]
        mask=mask,
    )


def _check_tags_mentioned(report: _Report, inputs: Inputs, prompt: str) -> None:
    """Every reference's ``@tag`` must be mentioned in ``positivePrompt`` (that is what links them)."""
    tagged = [(f"inputs.referenceImages[{i}].tag", g.tag) for i, g in enumerate(inputs.reference_images)]
    tagged += [(f"inputs.referenceVideos[{i}].tag", v.tag) for i, v in enumerate(inputs.reference_videos)]
    for field, tag in tagged:
        if not re.search(re.escape(tag) + r"(?![\w-])", prompt):
            report.add(field, f"tag {tag} must be mentioned in positivePrompt", value=tag)


def _has_reference_type_video(raw: Mapping[Any, Any]) -> bool:
    """Whether ``inputs.referenceVideos`` holds a video of type ``reference`` (or an alias)."""
    inputs = raw.get("inputs")
    if not isinstance(inputs, Mapping):
        return False
    videos = inputs.get("referenceVideos")
    if not isinstance(videos, (list, tuple)):
        return False
    for video in videos:
        if isinstance(video, Mapping) and isinstance(video.get("type"), str):
            if REFERENCE_VIDEO_TYPE_ALIASES.get(video["type"].lower()) == "reference":
                return True
    return False


# --------------------------------------------------------------------------- entry point


def parse_task(raw: object, *, known_models: Collection[str] = (DEFAULT_MODEL,)) -> VideoInferenceTask:
    """Validate a seed-shaped ``videoInference`` task and return it with every default applied.

    ``raw`` is the JSON as ``json.load`` returns it. ``known_models`` lists the model identifiers
    the farm serves (by default only ``skywork:skyreels@v4``). Raises ``TaskValidationError``
    listing every violation (``task_uuid`` set when ``taskUUID`` was a string); never raises
    anything else, whatever ``raw`` holds.
    """
    if isinstance(known_models, str):
        known_models = (known_models,)
    models = tuple(known_models)
    report = _Report()
    if not isinstance(raw, Mapping):
        report.wrong_type(ROOT_FIELD, "a JSON object", raw)
        raise TaskValidationError(report.violations)
    _check_object(report, raw, "", _TOP_LEVEL_FIELDS)

    task_type = raw.get("taskType")
    if task_type is None:
        report.missing("taskType", limit="videoInference")
    elif task_type != "videoInference":
        report.add("taskType", 'must be "videoInference"', limit="videoInference", value=task_type)
    task_uuid = _read_task_uuid(report, raw)

    output_type = _read_enum(report, raw, "outputType", "", aliases={"url": "URL"}, default="URL")
    output_format = _read_enum(
        report,
        raw,
        "outputFormat",
        "",
        aliases={name.lower(): name for name in OUTPUT_FORMATS},
        default="MP4",
    )
    output_quality = _read_int(
        report,
        raw,
        "outputQuality",
        "",
        default=OUTPUT_QUALITY_DEFAULT,
        lo=OUTPUT_QUALITY_MIN,
        hi=OUTPUT_QUALITY_MAX,
    )
    webhook_url = _read_url(report, raw, "webhookURL")
    delivery_method = _read_enum(report, raw, "deliveryMethod", "", aliases={"async": "async"}, default="async")
    upload_endpoint = _read_url(report, raw, "uploadEndpoint")
    safety = _read_safety(report, raw)
    ttl = _read_int(report, raw, "ttl", "", default=None, lo=TTL_MIN_S)
    include_cost = _read_bool(report, raw, "includeCost", "", default=False)

    number_results = _read_int(
        report,
        raw,
        "numberResults",
        "",
        default=NUMBER_RESULTS_MIN,
        lo=NUMBER_RESULTS_MIN,
        hi=NUMBER_RESULTS_MAX,
    )
    model = _read_model(report, raw, models)
    prompt = _read_prompt(report, raw)
    resolution, width, height = _read_size(report, raw)
    duration = _read_duration(report, raw)
    num_frames = frame_count(duration) if duration is not None else None
    settings, audio_given = _read_settings(report, raw)
    inputs = _read_inputs(report, raw, num_frames)
    seed = _read_int(report, raw, "seed", "", default=None, lo=0, hi=SEED_MAX)

    if inputs is not None and prompt is not None:
        _check_tags_mentioned(report, inputs, prompt)

    if _has_reference_type_video(raw):
        raw_settings = raw.get("settings")
        if audio_given and isinstance(raw_settings, Mapping) and raw_settings.get("audio") is True:
            report.add(
                "settings.audio",
                "must not be true with a reference-type video: the input video's audio is carried to the output",
                limit=False,
                value=True,
            )
        elif not audio_given and settings is not None:
            settings = Settings(audio=False, prompt_extend=settings.prompt_extend, chunk_mode=settings.chunk_mode)

    if report.violations:
        given_uuid = raw.get("taskUUID")
        raise TaskValidationError(report.violations, task_uuid=given_uuid if isinstance(given_uuid, str) else None)
    return VideoInferenceTask(
        task_uuid=task_uuid,  # type: ignore[arg-type]
        model=model,  # type: ignore[arg-type]
        positive_prompt=prompt,  # type: ignore[arg-type]
        output_type=output_type,  # type: ignore[arg-type]
        output_format=output_format,  # type: ignore[arg-type]
        output_quality=output_quality,  # type: ignore[arg-type]
        webhook_url=webhook_url,
        delivery_method=delivery_method,  # type: ignore[arg-type]
        upload_endpoint=upload_endpoint,
        safety=safety,  # type: ignore[arg-type]
        ttl=ttl,
        include_cost=include_cost,  # type: ignore[arg-type]
        inputs=inputs,  # type: ignore[arg-type]
        number_results=number_results,  # type: ignore[arg-type]
        resolution=resolution,
        width=width,  # type: ignore[arg-type]
        height=height,  # type: ignore[arg-type]
        duration=duration,  # type: ignore[arg-type]
        num_frames=num_frames,  # type: ignore[arg-type]
        settings=settings,  # type: ignore[arg-type]
        seed=seed,
    )
