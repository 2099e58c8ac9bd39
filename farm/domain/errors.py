"""The farm's error hierarchy, and the one table that maps each error onto both faces.

    FarmError                  500 INTERNAL           something went wrong on the farm's side
    ├── TaskValidationError    400 INVALID_ARGUMENT   the task breaks the API's rules (every violation listed)
    ├── InvalidRequestError    400 INVALID_ARGUMENT   the request itself is malformed (not one task)
    │   ├── InvalidJSONError   400 INVALID_ARGUMENT   the body is not acceptable JSON (syntax, depth, duplicate keys)
    │   └── TooManyTasksError  400 INVALID_ARGUMENT   more tasks in one request than the gateway takes
    ├── PayloadTooLargeError   413 RESOURCE_EXHAUSTED a body or an uploaded asset is over its byte limit
    ├── PlanError              400 FAILED_PRECONDITION the profile cannot plan this clip (window/overlap inconsistent)
    ├── RenderError            500 INTERNAL           rendering a result failed for good
    │   └── WorkerLostError    503 UNAVAILABLE        a worker died and no replacement could finish its chunk
    ├── EncodeError            500 INTERNAL           the container or codec refused the frames
    ├── TaskNotFoundError      404 NOT_FOUND          no such task (or not visible to this API key)
    ├── DuplicateTaskError     409 ALREADY_EXISTS     the taskUUID exists with a different body
    ├── QueueFullError         429 RESOURCE_EXHAUSTED the queue is full; retry after ``retry_after_s``
    ├── UnavailableError       503 UNAVAILABLE        the gateway is shutting down; retry elsewhere or later
    ├── TaskCancelledError     409 CANCELLED          the task was cancelled
    ├── UnauthenticatedError   401 UNAUTHENTICATED    missing or unknown API key
    ├── ForbiddenURLError      400 INVALID_ARGUMENT   a URL points at a refused address (loopback, private, ...)
    ├── DeliveryError          503 UNAVAILABLE        upload or webhook delivery failed after every retry
    └── SafetyError            400 FAILED_PRECONDITION the safety checker flagged a result; nothing is delivered

Each class carries, like google-api-core's exceptions, ``code`` (the JSON error code),
``grpc_status`` (a ``grpc.StatusCode`` name: this layer imports no grpc), ``http_status`` and
``retryable`` (whether the same request may succeed later). ``error_info`` reads them for any
exception and ``error_table`` lists every class by its code (subclasses defined in other packages,
``farm.io.artifacts.ArtifactNotFound`` for one, join the table when their module is imported), so
the gRPC face, the JSON face and the webhooks cannot disagree.

Server-side errors (``http_status`` >= 500) may carry text that is for the operator only: worker
tracebacks, host names, data paths. ``public_message`` is what a client may read of an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "FarmError",
    "Violation",
    "TaskValidationError",
    "InvalidRequestError",
    "InvalidJSONError",
    "TooManyTasksError",
    "PayloadTooLargeError",
    "PlanError",
    "RenderError",
    "WorkerLostError",
    "EncodeError",
    "TaskNotFoundError",
    "DuplicateTaskError",
    "QueueFullError",
    "UnavailableError",
    "TaskCancelledError",
    "UnauthenticatedError",
    "ForbiddenURLError",
    "DeliveryError",
    "SafetyError",
    "ErrorInfo",
    "error_info",
    "error_table",
    "info_for_code",
    "public_message",
    "error_message",
    "clip",
    "ECHO_MAX_CHARS",
    "MESSAGE_MAX_CHARS",
]

#: Longest piece of a client's input (a taskUUID, a field name, a value) echoed in an error.
ECHO_MAX_CHARS = 128
#: Longest error message a client is sent.
MESSAGE_MAX_CHARS = 1024


def clip(text: str, limit: int = ECHO_MAX_CHARS) -> str:
    """``text`` cut to ``limit`` characters plus ``"..."`` when longer.

    >>> clip("a" * 200, 8)
    'aaaaaaaa...'
    >>> clip("short")
    'short'
    """
    return text if len(text) <= limit else text[:limit] + "..."


#: Every class with its own ``code`` (filled by ``FarmError.__init_subclass__``).
_BY_CODE: dict[str, type[FarmError]] = {}


class FarmError(Exception):
    """Base of every error the farm raises on purpose."""

    code: ClassVar[str] = "internalError"
    grpc_status: ClassVar[str] = "INTERNAL"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    #: What a client is told when the message itself is for the operator only (5xx errors).
    public_text: ClassVar[str] = "internal error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only classes that name their own code are rows; one that inherits its parent's is the same row.
        if "code" in cls.__dict__:
            existing = _BY_CODE.get(cls.code)
            if existing is not None and existing.__qualname__ != cls.__qualname__:
                raise TypeError(f"error code {cls.code!r} of {cls.__qualname__} is already {existing.__qualname__}'s")
            _BY_CODE[cls.code] = cls


_BY_CODE[FarmError.code] = FarmError


@dataclass(frozen=True, kw_only=True)
class Violation:
    """One broken rule of a task: where, what the rule is, and what was received.

    ``str()`` clips the field path and the value to ``ECHO_MAX_CHARS``: both may be the client's own
    input (an unknown key, a 10 MiB taskUUID), and an error must not echo it whole.
    """

    field: str
    message: str
    code: str = "invalidParameter"
    limit: Any = None
    value: Any = None

    def __str__(self) -> str:
        text = f"{clip(self.field)}: {self.message}"
        if self.limit is not None:
            text += f" (limit: {clip(repr(self.limit) if not isinstance(self.limit, str) else self.limit, 256)})"
        if self.value is not None:
            text += f" (received: {clip(_safe_repr(self.value))})"
        return text


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a huge integer (int max str digits) or a hostile __repr__
        return f"<{type(value).__name__}>"


class TaskValidationError(FarmError):
    """A task breaks one or more rules; ``violations`` lists every one of them."""

    code = "invalidParameter"
    grpc_status = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, violations: list[Violation], task_uuid: str | None = None):
        self.violations = list(violations)
        self.task_uuid = task_uuid
        shown = self.violations[:20]
        lines = "\n".join(f"  - {v}" for v in shown)
        if len(self.violations) > len(shown):
            lines += f"\n  ... and {len(self.violations) - len(shown)} more"
        super().__init__(f"task is invalid ({len(self.violations)} violation(s)):\n{lines}")


class InvalidRequestError(FarmError):
    """The request as a whole is malformed (as opposed to one task in it).

    ``parameter`` names the part of the request at fault where there is one (a protobuf field).
    """

    code = "invalidRequest"
    grpc_status = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, message: str, *, parameter: str = ""):
        super().__init__(message)
        self.parameter = parameter


class InvalidJSONError(InvalidRequestError):
    """The body is not JSON the gateway accepts: bad syntax, not UTF-8, nested too deep, an integer
    of thousands of digits, ``NaN``, or one key twice in an object."""

    code = "invalidJSON"


class TooManyTasksError(InvalidRequestError):
    """One request carries more tasks than ``max_tasks_per_request``."""

    code = "tooManyTasks"

    def __init__(self, count: int, limit: int):
        super().__init__(f"a request may carry at most {limit} tasks, got {count}; send them in several requests")
        self.count = count
        self.limit = limit


class PayloadTooLargeError(FarmError):
    """A request body or an uploaded asset is larger than the gateway's limit."""

    code = "payloadTooLarge"
    grpc_status = "RESOURCE_EXHAUSTED"
    http_status = 413


class PlanError(FarmError, ValueError):
    """The chunk plan cannot be built from the given window and overlap."""

    code = "invalidProfile"
    grpc_status = "FAILED_PRECONDITION"
    http_status = 400


class RenderError(FarmError):
    """Rendering a result failed for good."""

    code = "renderFailed"
    grpc_status = "INTERNAL"
    http_status = 500
    retryable = True
    public_text = "rendering the result failed"


class WorkerLostError(RenderError):
    """A worker died and its chunk could not be rendered by any other worker."""

    code = "workerLost"
    grpc_status = "UNAVAILABLE"
    http_status = 503
    public_text = "a render worker was lost and no other could finish the result"


class EncodeError(FarmError):
    """The encoder could not write the container."""

    code = "encodeFailed"
    grpc_status = "INTERNAL"
    http_status = 500
    public_text = "encoding the result failed"


class TaskNotFoundError(FarmError, KeyError):
    """No task with that UUID is visible to the caller."""

    code = "taskNotFound"
    grpc_status = "NOT_FOUND"
    http_status = 404

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicateTaskError(FarmError):
    """A task with the same taskUUID but a different body already exists."""

    code = "duplicateTaskUUID"
    grpc_status = "ALREADY_EXISTS"
    http_status = 409


class QueueFullError(FarmError):
    """The farm's queue is full; the client should retry after ``retry_after_s`` seconds."""

    code = "queueFull"
    grpc_status = "RESOURCE_EXHAUSTED"
    http_status = 429
    retryable = True

    def __init__(self, message: str, retry_after_s: float = 5.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnavailableError(FarmError):
    """The gateway does not take new work now (it is shutting down)."""

    code = "unavailable"
    grpc_status = "UNAVAILABLE"
    http_status = 503
    retryable = True
    public_text = "the gateway is shutting down; retry later"


class TaskCancelledError(FarmError):
    """The task was cancelled by its owner."""

    code = "taskCancelled"
    grpc_status = "CANCELLED"
    http_status = 409


class UnauthenticatedError(FarmError):
    """The request carries no API key, or one the farm does not know."""

    code = "unauthenticated"
    grpc_status = "UNAUTHENTICATED"
    http_status = 401


class ForbiddenURLError(FarmError):
    """A URL the farm would call resolves to a refused address (loopback, private, link-local...).

    ``parameter`` is the field that holds the URL, where the raiser knows it.
    """

    code = "forbiddenURL"
    grpc_status = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, message: str, *, parameter: str = "", task_uuid: str | None = None):
        super().__init__(message)
        self.parameter = parameter
        self.task_uuid = task_uuid


class DeliveryError(FarmError):
    """An upload or webhook could not be delivered after every retry."""

    code = "deliveryFailed"
    grpc_status = "UNAVAILABLE"
    http_status = 503
    retryable = True
    public_text = "delivery failed"


class SafetyError(FarmError):
    """``safety.checkContent`` flagged a result: it is an error and its file is never delivered."""

    code = "safety"
    grpc_status = "FAILED_PRECONDITION"
    http_status = 400
    retryable = False


@dataclass(frozen=True)
class ErrorInfo:
    """How one error class appears on the wire."""

    grpc_status: str
    code: str
    retryable: bool
    http_status: int = 500
    #: What a client may read when the error's own message is for the operator only.
    public_text: str = FarmError.public_text

    @property
    def server_side(self) -> bool:
        """Whether the farm is at fault (5xx): its message is then not for the client."""
        return self.http_status >= 500


def _info(cls: type[FarmError]) -> ErrorInfo:
    return ErrorInfo(cls.grpc_status, cls.code, cls.retryable, cls.http_status, cls.public_text)


def error_info(error: BaseException) -> ErrorInfo:
    """The row of ``error``: gRPC status name, JSON code, retryable flag, HTTP status.

    Farm errors carry their own row; anything else is an internal, non-retryable error.

        >>> error_info(QueueFullError("full")).http_status, error_info(KeyError("x")).grpc_status
        (429, 'INTERNAL')
    """
    return _info(type(error) if isinstance(error, FarmError) else FarmError)


def error_table() -> Mapping[str, ErrorInfo]:
    """Every known error code and its row (the classes imported so far)."""
    return {code: _info(cls) for code, cls in sorted(_BY_CODE.items())}


def info_for_code(code: str | None) -> ErrorInfo:
    """The row of a stored error ``code`` (a result's ``error_code``); unknown codes are internal."""
    cls = _BY_CODE.get(code or "", FarmError)
    return _info(cls)


#: Text that shows a message was not meant for a client: a Python traceback or terminal colours.
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\x1b\[|File \"/")


def public_message(code: str | None, message: str | None) -> str:
    """What a client may read of an error with ``code`` and ``message`` (a stored result's error).

    A server-side error (5xx, or a code the table does not know) gives its class's short
    ``public_text``: its message may carry a worker's traceback, host names or data paths, which
    belong in the server's log. A client error keeps its message (it names the client's own field
    and value), clipped, unless it still looks like a traceback.

        >>> public_message("encodeFailed", "[Errno 28] No space left on device: '/data/out/x.mp4'")
        'encoding the result failed'
        >>> public_message("invalidParameter", "inputs.frameImages[0].image: does not decode")
        'inputs.frameImages[0].image: does not decode'
    """
    return _public(info_for_code(code), message)


def error_message(error: BaseException) -> str:
    """What a client may read of ``error`` (``public_message`` for an exception in hand).

    Exceptions that are not ``FarmError`` s are bugs: the client reads "internal error".
    """
    return _public(error_info(error), str(error) if isinstance(error, FarmError) else "")


def _public(info: ErrorInfo, message: str | None) -> str:
    if info.server_side:
        return info.public_text
    if not message or _TRACEBACK.search(message):
        return f"the request was refused ({info.code})"
    return clip(message, MESSAGE_MAX_CHARS)
