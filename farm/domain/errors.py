"""The farm's error hierarchy.

    FarmError
    ├── TaskValidationError    the task breaks the API's rules (every violation listed)
    ├── PlanError              the profile cannot plan this clip (window/overlap inconsistent)
    ├── RenderError            rendering a result failed for good
    │   └── WorkerLostError    a worker died and no replacement could finish its chunk
    ├── EncodeError            the container or codec refused the frames
    ├── TaskNotFoundError      no such task (or not visible to this API key)
    ├── DuplicateTaskError     the taskUUID exists with a different body
    ├── QueueFullError         the queue is full; retry after ``retry_after_s``
    ├── TaskCancelledError     the task was cancelled
    ├── UnauthenticatedError   missing or unknown API key
    ├── ForbiddenURLError      a URL points at a refused address (loopback, private, ...)
    ├── DeliveryError          upload or webhook delivery failed after every retry
    └── SafetyError            the safety checker flagged a result; nothing is delivered

Each class carries ``code`` (the JSON error code), ``grpc_status`` (a ``grpc.StatusCode`` name)
and ``retryable`` (whether the same request may succeed later), so the gateway maps errors with
one table instead of scattered ``isinstance`` checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class FarmError(Exception):
    """Base of every error the farm raises on purpose."""

    code = "internalError"
    grpc_status = "INTERNAL"
    retryable = False


@dataclass(frozen=True, kw_only=True)
class Violation:
    """One broken rule of a task: where, what the rule is, and what was received."""

    field: str
    message: str
    code: str = "invalidParameter"
    limit: Any = None
    value: Any = None

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}"
        if self.limit is not None:
            text += f" (limit: {self.limit})"
        if self.value is not None:
            text += f" (received: {self.value!r})"
        return text


class TaskValidationError(FarmError):
    """A task breaks one or more rules; ``violations`` lists every one of them."""

    code = "invalidParameter"
    grpc_status = "INVALID_ARGUMENT"
    retryable = False

    def __init__(self, violations: list[Violation], task_uuid: str | None = None):
        self.violations = list(violations)
        self.task_uuid = task_uuid
        lines = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(f"task is invalid ({len(self.violations)} violation(s)):\n{lines}")


class PlanError(FarmError, ValueError):
    """The chunk plan cannot be built from the given window and overlap."""

    code = "invalidProfile"
    grpc_status = "FAILED_PRECONDITION"


class RenderError(FarmError):
    """Rendering a result failed for good."""

    code = "renderFailed"
    grpc_status = "INTERNAL"
    retryable = True


class WorkerLostError(RenderError):
    """A worker died and its chunk could not be rendered by any other worker."""

    code = "workerLost"
    grpc_status = "UNAVAILABLE"


class EncodeError(FarmError):
    """The encoder could not write the container."""

    code = "encodeFailed"
    grpc_status = "INTERNAL"


class TaskNotFoundError(FarmError, KeyError):
    """No task with that UUID is visible to the caller."""

    code = "taskNotFound"
    grpc_status = "NOT_FOUND"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicateTaskError(FarmError):
    """A task with the same taskUUID but a different body already exists."""

    code = "duplicateTaskUUID"
    grpc_status = "ALREADY_EXISTS"


class QueueFullError(FarmError):
    """The farm's queue is full; the client should retry after ``retry_after_s`` seconds."""

    code = "queueFull"
    grpc_status = "RESOURCE_EXHAUSTED"
    retryable = True

    def __init__(self, message: str, retry_after_s: float = 5.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TaskCancelledError(FarmError):
    """The task was cancelled by its owner."""

    code = "taskCancelled"
    grpc_status = "CANCELLED"


class UnauthenticatedError(FarmError):
    """The request carries no API key, or one the farm does not know."""

    code = "unauthenticated"
    grpc_status = "UNAUTHENTICATED"


class ForbiddenURLError(FarmError):
    """A URL the farm would call resolves to a refused address (loopback, private, link-local...)."""

    code = "forbiddenURL"
    grpc_status = "INVALID_ARGUMENT"


class DeliveryError(FarmError):
    """An upload or webhook could not be delivered after every retry."""

    code = "deliveryFailed"
    grpc_status = "UNAVAILABLE"
    retryable = True


class SafetyError(FarmError):
    """``safety.checkContent`` flagged a result: it is an error and its file is never delivered."""

    code = "safety"
    grpc_status = "FAILED_PRECONDITION"
    retryable = False


@dataclass(frozen=True)
class ErrorInfo:
    """How one error class appears on the wire."""

    grpc_status: str
    code: str
    retryable: bool


def error_info(error: BaseException) -> ErrorInfo:
    """The one table: gRPC status name, JSON error code and retryable flag for ``error``.

    Farm errors carry their own row; anything else is an internal, non-retryable error.
    """
    if isinstance(error, FarmError):
        return ErrorInfo(error.grpc_status, error.code, error.retryable)
    return ErrorInfo(FarmError.grpc_status, FarmError.code, FarmError.retryable)
