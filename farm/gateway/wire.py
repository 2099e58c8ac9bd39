"""The gateway: one set of handlers behind two faces (gRPC and JSON/REST).

Both faces turn their request into the seed's JSON, call the same ``TaskService`` (validation,
persistence and queueing live there, once) and render answers and errors with the helpers here,
so a task, a result or an error looks the same whichever face carried it. Errors map through the
one table in ``farm.domain.errors.error_info``.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from typing import Any

from farm.domain.errors import FarmError, QueueFullError, TaskValidationError, UnauthenticatedError, error_info
from farm.domain.records import ResultRecord, TaskRecord

TASK_TYPE = "videoInference"

#: The farm's per-result states as the platform's three: queued and running are "processing",
#: cancelled is an "error" (with code taskCancelled in ``errors``).
PLATFORM_STATUS = {
    "queued": "processing",
    "running": "processing",
    "success": "success",
    "error": "error",
    "cancelled": "error",
}


class ApiKeys:
    """Optional API keys: with none configured every caller is anonymous (``None``).

    ``authenticate`` takes the raw ``authorization`` value (``Bearer <key>``) from gRPC metadata
    or the HTTP header and returns the key to hand to the ``TaskService`` (which isolates tasks
    per key), or raises ``UnauthenticatedError``.
    """

    def __init__(self, keys: Collection[str] | None = None):
        self._keys = tuple(k for k in (keys or ()) if k)

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a known key."""
        return bool(self._keys)

    def authenticate(self, authorization: str | None) -> str | None:
        """The caller's key, ``None`` when keys are off; raises ``UnauthenticatedError``."""
        if not self._keys:
            return None
        if not authorization:
            raise UnauthenticatedError("missing API key: send 'authorization: Bearer <key>'")
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise UnauthenticatedError("malformed authorization: expected 'Bearer <key>'")
        # Constant-time comparison against every key: timing does not reveal a key's prefix.
        found = None
        for known in self._keys:
            if hmac.compare_digest(known.encode(), key.encode()):
                found = known
        if found is None:
            raise UnauthenticatedError("unknown API key")
        return found


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


#: Well-known types whose JSON form is not "the message's fields by json_name".
_JSON_VALUE_TYPES = ("google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue")


def _message_json(message) -> dict:
    """The fields that are set, by ``json_name``: what ``MessageToDict`` writes for the farm's
    messages, at a fraction of its cost on the Submit path (``ListFields`` is implemented in C).

    Differences from ``MessageToDict``, all undone by ``task_message_to_dict`` anyway: 64-bit
    integers stay numbers and non-finite doubles stay floats (the validator refuses them either way).
    """
    out = {}
    for field, value in message.ListFields():
        if field.message_type is None:
            out[field.json_name] = list(value) if field.is_repeated else value
        elif field.message_type.full_name in _JSON_VALUE_TYPES:
            from google.protobuf import json_format

            out[field.json_name] = (
                [json_format.MessageToDict(v) for v in value] if field.is_repeated else json_format.MessageToDict(value)
            )
        else:
            out[field.json_name] = [_message_json(v) for v in value] if field.is_repeated else _message_json(value)
    return out


def task_message_to_dict(message) -> dict:
    """A ``farm.v1.VideoInferenceTask`` as the seed's JSON, ready for ``parse_task``.

    Like ``MessageToDict``, the seed's names (the ``json_name``s) with absent optional fields left
    out; two protobuf JSON conventions are undone so that the same task sent over gRPC and over
    JSON gives the same dict (and so the same stored body): 64-bit integers are numbers, not
    strings, and whole-number doubles (``duration: 5``, ``frame: 10``) are integers.
    """
    raw = _message_json(message)
    if "seed" in raw:
        raw["seed"] = int(raw["seed"])
    if isinstance(raw.get("duration"), float) and raw["duration"].is_integer():
        raw["duration"] = int(raw["duration"])
    frames = raw.get("inputs", {}).get("frameImages")
    if frames is not None:
        raw["inputs"]["frameImages"] = _whole_numbers_to_int(frames)
    return raw


def error_items(error: BaseException, task_uuid: str | None = None) -> list[dict]:
    """The platform's error objects for one failure: one per violation for an invalid task.

    Keys: ``code``, ``message``, ``parameter`` (field path, may be empty), ``taskUUID``,
    ``retryable``, and ``retryAfter`` (seconds) for a full queue.
    """
    info = error_info(error)
    if task_uuid is None:
        task_uuid = getattr(error, "task_uuid", None)
    base = {"taskUUID": task_uuid or "", "retryable": info.retryable}
    if isinstance(error, TaskValidationError):
        return [
            {"code": v.code or info.code, "message": str(v), "parameter": v.field, **base} for v in error.violations
        ]
    message = str(error) if isinstance(error, FarmError) else "internal error"
    # Errors about one field (a refused webhookURL, ...) carry it as ``parameter``.
    parameter = getattr(error, "parameter", "") or ""
    item = {"code": info.code, "message": message or info.code, "parameter": parameter, **base}
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
    """The ``errors`` entry of a failed or cancelled result, else ``None``."""
    if result.status == "error":
        code = result.error_code or "renderFailed"
    elif result.status == "cancelled":
        code = result.error_code or "taskCancelled"
    else:
        return None
    return {
        "code": code,
        "message": result.error_message or f"result {result.index} {result.status}",
        "parameter": result.error_parameter or "",
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
