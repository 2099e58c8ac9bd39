"""The gateway: one set of handlers behind two faces (gRPC and JSON/REST).

Both faces turn their request into the seed's JSON, call the same ``TaskService`` (validation,
persistence and queueing live there, once) and render answers and errors with the helpers here,
so a task, a result or an error looks the same whichever face carried it. Errors map through the
one table in ``farm.domain.errors``.

Whatever a client sent may come back in an error (a taskUUID, an unknown key, a value), so every
echo is clipped (``farm.domain.errors.clip``), an item lists at most ``MAX_ERRORS_PER_ITEM``
errors, and a request carries at most ``max_tasks_per_request`` tasks: the answer stays small
whatever the request.
"""

from __future__ import annotations

import math
from typing import Any

from farm.domain.errors import (
    MESSAGE_MAX_CHARS,
    FarmError,
    QueueFullError,
    TaskValidationError,
    TooManyTasksError,
    clip,
    error_info,
    error_message,
    public_message,
)
from farm.domain.records import ResultRecord, TaskRecord
from farm.gateway.auth import ApiKeys

__all__ = [
    "TASK_TYPE",
    "PLATFORM_STATUS",
    "MAX_TASKS_PER_REQUEST",
    "MAX_ERRORS_PER_ITEM",
    "ApiKeys",
    "check_task_count",
    "task_message_to_dict",
    "error_items",
    "video_url",
    "result_item",
    "result_error_item",
    "task_answer",
    "ack_item",
]

TASK_TYPE = "videoInference"

#: Default of the ``max_tasks_per_request`` config key: tasks (and getResponse items) in one request.
MAX_TASKS_PER_REQUEST = 100
#: Errors listed for one item; past it one more error says how many were left out.
MAX_ERRORS_PER_ITEM = 20

#: The farm's per-result states as the platform's three: queued and running are "processing",
#: cancelled is an "error" (with code taskCancelled in ``errors``).
PLATFORM_STATUS = {
    "queued": "processing",
    "running": "processing",
    "success": "success",
    "error": "error",
    "cancelled": "error",
}


def check_task_count(count: int, limit: int) -> None:
    """Raise ``TooManyTasksError`` when a request carries more than ``limit`` items."""
    if count > limit:
        raise TooManyTasksError(count, limit)


def _whole_numbers_to_int(value: Any) -> Any:
    """Integral floats back to ints inside ``google.protobuf.Value`` trees (JSON numbers are
    doubles there; the validator refuses ``10.0`` where the seed wants an integer frame index)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers_to_int(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers_to_int(v) for k, v in value.items()}
    return value


def _json_value(value) -> Any:
    """A ``google.protobuf.Value`` as plain Python (what ``MessageToDict`` gives, without its refusals).

    ``MessageToDict`` raises on a NaN or infinite ``number_value``; here it stays a float, so the
    validator refuses it naming the field (``inputs.frameImages[0].frame``) instead of the call
    failing as a whole.
    """
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return _json_struct(value.struct_value)
    if kind == "list_value":
        return [_json_value(item) for item in value.list_value.values]
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None  # null_value, or no kind set


def _json_struct(struct) -> dict:
    return {key: _json_value(item) for key, item in struct.fields.items()}


#: Well-known JSON types: their JSON form is not "the message's fields by json_name".
_JSON_VALUE_TYPES = {
    "google.protobuf.Value": _json_value,
    "google.protobuf.Struct": _json_struct,
    "google.protobuf.ListValue": lambda lv: [_json_value(item) for item in lv.values],
}


def _message_json(message) -> dict:
    """The fields that are set, by ``json_name``: what ``MessageToDict`` writes for the farm's
    messages, at a fraction of its cost on the Submit path (``ListFields`` is implemented in C).

    Differences from ``MessageToDict``, all undone by ``task_message_to_dict`` anyway: 64-bit
    integers stay numbers and non-finite doubles stay floats (the validator refuses them either way).
    """
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.message_type is None:
            out[field.json_name] = list(value) if field.is_repeated else value
            continue
        convert = _JSON_VALUE_TYPES.get(field.message_type.full_name, _message_json)
        out[field.json_name] = [convert(v) for v in value] if field.is_repeated else convert(value)
    return out


def task_message_to_dict(message) -> dict:
    """A ``farm.v1.VideoInferenceTask`` as the seed's JSON, ready for ``parse_task``.

    Like ``MessageToDict``, the seed's names (the ``json_name``s) with absent optional fields left
    out; two protobuf JSON conventions are undone so that the same task sent over gRPC and over
    JSON gives the same dict (and so the same stored body): 64-bit integers are numbers, not
    strings, and whole-number doubles (``duration: 5``, ``frame: 10``) are integers. Non-finite
    doubles (``frame: NaN``) stay floats for the validator to refuse by field.
    """
    raw = _message_json(message)
    if "seed" in raw:
        raw["seed"] = int(raw["seed"])
    duration = raw.get("duration")
    if isinstance(duration, float) and math.isfinite(duration) and duration.is_integer():
        raw["duration"] = int(duration)
    frames = raw.get("inputs", {}).get("frameImages")
    if frames is not None:
        raw["inputs"]["frameImages"] = _whole_numbers_to_int(frames)
    return raw


def error_items(error: BaseException, task_uuid: str | None = None) -> list[dict]:
    """The platform's error objects for one failure: one per violation for an invalid task.

    Keys: ``code``, ``message``, ``parameter`` (field path, may be empty), ``taskUUID``,
    ``retryable``, and ``retryAfter`` (seconds) for a full queue. At most ``MAX_ERRORS_PER_ITEM``
    violations are listed (then one error says how many more there were); echoed values are
    clipped; a server-side error gives its short public text (``farm.domain.errors.error_message``),
    never its details.
    """
    info = error_info(error)
    if task_uuid is None:
        task_uuid = getattr(error, "task_uuid", None)
    base = {"taskUUID": clip(task_uuid) if isinstance(task_uuid, str) else "", "retryable": info.retryable}
    if isinstance(error, TaskValidationError):
        shown = error.violations[:MAX_ERRORS_PER_ITEM]
        items = [
            {
                "code": v.code or info.code,
                "message": clip(str(v), MESSAGE_MAX_CHARS),
                "parameter": clip(v.field),
                **base,
            }
            for v in shown
        ]
        hidden = len(error.violations) - len(shown)
        if hidden:
            items.append(
                {
                    "code": info.code,
                    "message": f"and {hidden} more violation(s); only the first {len(shown)} are listed",
                    "parameter": "",
                    **base,
                }
            )
        return items
    # Errors about one field (a refused webhookURL, ...) carry it as ``parameter``.
    parameter = getattr(error, "parameter", "") if isinstance(error, FarmError) else ""
    item = {
        "code": info.code,
        "message": error_message(error),
        "parameter": clip(parameter) if isinstance(parameter, str) else "",
        **base,
    }
    if isinstance(error, QueueFullError):
        item["retryAfter"] = error.retry_after_s
    return [item]


def video_url(result: ResultRecord, public_base_url: str | None) -> str | None:
    """The result's download URL: the manager's own, else ``{public_base_url}/v1/videos/{uuid}``."""
    if result.video_url:
        return result.video_url
    if result.video_uuid and public_base_url:
        return f"{public_base_url.rstrip('/')}/v1/videos/{result.video_uuid}"
    return None


def result_item(result: ResultRecord, public_base_url: str | None = None) -> dict:
    """One result in the platform's shape: taskType, taskUUID, status, videoUUID, videoURL, seed,
    cost (only when asked), extendedPrompt (when the prompt was extended), plus the farm's progress, resultIndex and own state."""
    item: dict[str, Any] = {
        "taskType": TASK_TYPE,
        "taskUUID": result.task_uuid,
        "status": PLATFORM_STATUS.get(result.status, "processing"),
        "resultIndex": result.index,
        "state": result.status,
        "progress": result.progress,
    }
    if result.video_uuid:
        item["videoUUID"] = result.video_uuid
    url = video_url(result, public_base_url)
    if url:
        item["videoURL"] = url
    if result.seed is not None:
        item["seed"] = result.seed
    if result.cost is not None:
        item["cost"] = result.cost
    if result.upload_status:
        item["uploadStatus"] = result.upload_status
    if result.webhook_status:
        item["webhookStatus"] = result.webhook_status
    if result.extended_prompt:
        item["extendedPrompt"] = result.extended_prompt
    return item


def result_error_item(result: ResultRecord) -> dict | None:
    """The ``errors`` entry of a failed or cancelled result, else ``None``.

    The stored message may be a worker's exception text: a server-side error is answered with its
    short public text (``farm.domain.errors.public_message``); the details stay in the server log.
    """
    if result.status == "error":
        code = result.error_code or "renderFailed"
    elif result.status == "cancelled":
        code = result.error_code or "taskCancelled"
    else:
        return None
    return {
        "code": code,
        "message": public_message(code, result.error_message or f"result {result.index} {result.status}"),
        "parameter": clip(result.error_parameter or ""),
        "taskUUID": result.task_uuid,
        "retryable": False,
    }


def task_answer(record: TaskRecord, public_base_url: str | None = None) -> tuple[list[dict], list[dict]]:
    """``(data, errors)`` for GetResponse/Cancel: every result so far, and an error per failed one.

    A task with no result records yet (still queued) answers one ``processing`` item per task so
    pollers see it exists.
    """
    data, errors = [], []
    for result in record.results:
        data.append(result_item(result, public_base_url))
        err = result_error_item(result)
        if err is not None:
            errors.append(err)
    if not record.results:
        data.append(
            {
                "taskType": TASK_TYPE,
                "taskUUID": record.task_uuid,
                "status": PLATFORM_STATUS.get(record.status, "processing"),
                "state": record.status,
                "progress": 0.0,
                **({"queuePosition": record.queue_position} if record.queue_position else {}),
            }
        )
    return data, errors


def ack_item(record: TaskRecord) -> dict:
    """The immediate acknowledgement of an async task."""
    return {"taskType": TASK_TYPE, "taskUUID": record.task_uuid}
