"""The farm's error hierarchy.

    FarmError
    ├── TaskValidationError    the task breaks the API's rules (every violation listed)
    ├── PlanError              the profile cannot plan this clip (window/overlap inconsistent)
    ├── RenderError            rendering a result failed for good
    │   └── WorkerLostError    a worker died and no replacement could finish its chunk
    └── EncodeError            the container or codec refused the frames

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
