"""One error table for both faces: every class's gRPC status, HTTP status and JSON code, as the faces render them."""

from __future__ import annotations

import doctest
import json

import grpc
import pytest

import farm.domain.errors
import farm.domain.records
import farm.io.artifacts  # its error classes join the table
from farm.domain.errors import (
    FarmError,
    QueueFullError,
    TaskValidationError,
    Violation,
    error_info,
    error_table,
    info_for_code,
    public_message,
)
from farm.gateway.interceptors import failure_for, json_error_response
from farm.gateway.wire import MAX_ERRORS_PER_ITEM, error_items, result_error_item


def _classes(root: type[FarmError] = FarmError) -> list[type[FarmError]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_classes(sub))
    return found


def _instance(cls: type[FarmError]) -> FarmError:
    if issubclass(cls, TaskValidationError):
        return cls([Violation(field="duration", message="must be between 3 and 15 seconds", value=99)])
    if cls.__name__ == "TooManyTasksError":
        return cls(101, 100)  # type: ignore[call-arg]  # a deliberately wrong call
    return cls("something went wrong")


def test_every_class_is_a_row_with_both_statuses():
    table = error_table()
    for cls in _classes():
        if "code" not in cls.__dict__ and cls is not FarmError:
            continue
        row = table[cls.code]
        assert (row.grpc_status, row.http_status, row.retryable) == (cls.grpc_status, cls.http_status, cls.retryable)
        assert grpc.StatusCode[row.grpc_status]
        assert 400 <= row.http_status <= 599
    assert table["videoNotFound"].http_status == 404 and table["videoExpired"].http_status == 410
    assert table["queueFull"].http_status == 429 and table["unauthenticated"].http_status == 401


@pytest.mark.parametrize("cls", _classes(), ids=lambda cls: cls.__name__)
def test_both_faces_render_a_class_the_same_way(cls):
    error = _instance(cls)
    items = error_items(error, "t-1")
    failure = failure_for(error, "t-1")
    response = json_error_response(error)
    assert {item["code"] for item in items} <= {cls.code, "invalidParameter"}
    assert failure.code == grpc.StatusCode[cls.grpc_status]
    assert response.status == cls.http_status
    assert json.loads(response.text)["errors"][0]["code"] == items[0]["code"]
    if cls.http_status >= 500:
        # A server-side error's own words stay in the server log.
        assert items[0]["message"] == cls.public_text and failure.message == cls.public_text
    else:
        assert any(text in items[0]["message"] for text in ("something went wrong", "duration", "got 101"))


def test_unknown_exceptions_are_internal_and_say_nothing():
    error = RuntimeError("/srv/farm/secret.py line 3")
    assert error_info(error).grpc_status == "INTERNAL" and error_info(error).http_status == 500
    assert error_items(error)[0]["message"] == "internal error"
    assert failure_for(error).message == "internal error"


def test_a_full_queue_carries_retry_after_on_both_faces():
    error = QueueFullError("queue is full", retry_after_s=2.5)
    assert json_error_response(error).headers["Retry-After"] == "2"
    assert error_items(error)[0]["retryAfter"] == 2.5


def test_violations_are_capped_and_echoes_clipped():
    violations = [Violation(field=f"{'k' * 500}{i}", message="unknown field", value="v" * 10_000) for i in range(50)]
    items = error_items(TaskValidationError(violations), "u" * 1000)
    assert len(items) == MAX_ERRORS_PER_ITEM + 1 and "and 30 more" in items[-1]["message"]
    for item in items:
        assert len(item["parameter"]) <= 131 and len(item["taskUUID"]) <= 131 and len(item["message"]) <= 1027
    assert len(str(TaskValidationError(violations))) < 20_000


@pytest.mark.parametrize(
    ("code", "message", "shown"),
    [
        ("encodeFailed", "[Errno 28] No space left on device: '/data/out/x.mp4'", "encoding the result failed"),
        ("renderFailed", "\x1b[31mRayTaskError\x1b[0m pid=123 ip=10.0.0.7", "rendering the result failed"),
        ("workerLost", "actor died", "a render worker was lost and no other could finish the result"),
        ("internalError", "anything", "internal error"),
        ("madeUpCode", "who knows", "internal error"),
        ("invalidParameter", "inputs.mask: does not decode", "inputs.mask: does not decode"),
        ("safety", "result 0 was flagged", "result 0 was flagged"),
        ("invalidParameter", 'Traceback (most recent call last):\n  File "/x.py"', "the request was refused (invalidParameter)"),
        ("taskCancelled", None, "the request was refused (taskCancelled)"),
    ],
)  # fmt: skip
def test_public_messages(code, message, shown):
    assert public_message(code, message) == shown


def test_a_failed_results_error_item_is_public():
    from farm.domain.records import ResultRecord

    record = ResultRecord(task_uuid="t", index=0, status="error", error_code="encodeFailed", error_message="/data/x")
    assert result_error_item(record)["message"] == "encoding the result failed"
    assert info_for_code("encodeFailed").server_side


def test_all_names_are_exported():
    public = {name for name in vars(farm.domain.errors) if not name.startswith("_") and name[0].isupper()}
    public -= {"Any", "ClassVar", "Mapping"}
    assert public <= set(farm.domain.errors.__all__)


@pytest.mark.parametrize("module", [farm.domain.errors, farm.domain.records], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0
