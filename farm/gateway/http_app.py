"""The JSON/REST face on the HTTP port (aiohttp).

    POST /v1                   array of tasks: videoInference (submit) and getResponse (poll)
    GET  /v1/videos/{videoUUID} the rendered file (HTTP Range, content type; 404 unknown, 410 expired)
    GET  /metrics              Prometheus exposition
    GET  /healthz              liveness (503 once shutdown begins)
    GET  /livez                liveness: the process answers (200 until it exits)
    GET  /readyz               readiness: admitting, the scheduler answers, warm pools are up
    GET  /openapi.json         the OpenAPI 3.1 description of this face (built from the task schema)

``POST /v1`` speaks the seed platform's shapes, so a client of that platform works by changing its
base URL: ``{"data": [...]}`` and/or ``{"errors": [{"code", "message", "parameter", "taskUUID"}]}``.
It calls the same ``TaskService`` and builds answers with the same helpers as the gRPC face.
Authentication, metrics and error rendering are middlewares (``farm.gateway.interceptors``): the
handlers raise ``FarmError`` s and the error table gives each its HTTP status.

The body is read strictly (``decode_json_body``): bad UTF-8, ``NaN``, a key twice in one object,
nesting deeper than ``MAX_JSON_DEPTH`` or an integer of more than ``MAX_INT_DIGITS`` digits are a
400 naming the problem, and a request carries at most ``max_tasks_per_request`` items.

Video URLs need no API key: the UUID v4 in the URL is the capability (like the platform's
pre-signed result URLs), so the URL can be handed to a browser or a CDN as is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict

from farm.domain.constants import INLINE_SUBMIT_BYTES, MAX_REQUEST_BYTES, URL_FIELDS
from farm.domain.errors import (
    FarmError,
    InvalidJSONError,
    TaskValidationError,
    UnavailableError,
    Violation,
    clip,
    error_info,
)
from farm.domain.records import TaskService
from farm.gateway.interceptors import (
    CALLER_KEY,
    auth_middleware,
    error_middleware,
    json_error_response,
    metrics_middleware,
)
from farm.gateway.wire import (
    MAX_TASKS_PER_REQUEST,
    TASK_TYPE,
    ApiKeys,
    ack_item,
    check_task_count,
    error_items,
    task_answer,
)

log = logging.getLogger(__name__)

__all__ = [
    "RestFace",
    "make_app",
    "decode_json_body",
    "ReadinessCheck",
    "MAX_REQUEST_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_INT_DIGITS",
]

#: Deepest nesting of arrays and objects in a body; a task needs 5 (the array, the task,
#: ``inputs``, ``frameImages``, an item). Deeper bodies cost the decoder's recursion for nothing.
MAX_JSON_DEPTH = 32
#: Longest integer literal (Python's own ``int`` parsing limit; the validator refuses anything past int64).
MAX_INT_DIGITS = 4300

#: What ``/readyz`` asks the farm: ``(ready, details)``. Ready means a task submitted now waits for
#: nothing to start (the scheduler answers; every pool with ``min_workers`` has them loaded);
#: ``details`` (JSON-able) go into the answer. Runs in a thread; it may block up to its own timeout.
ReadinessCheck = Callable[[], tuple[bool, dict[str, Any]]]
#: How long ``/readyz`` waits for the check before answering 503 (a probe's own timeout is ~1 s+).
READINESS_TIMEOUT_S = 3.0

SERVICE_KEY = web.AppKey("service", object)
#: Routes that need an API key (result downloads carry their capability in the URL).
AUTHENTICATED_ROUTES = ("/v1",)


# ---------------------------------------------------------------- strict JSON


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJSONError(f"body: key {clip(key)!r} appears twice in one object")
            seen.add(key)
    return obj


def _int_within_limit(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise InvalidJSONError(f"body: an integer of {digits} digits is too long (limit: {MAX_INT_DIGITS} digits)")
    return int(text)


def _no_constant(name: str) -> Any:
    raise InvalidJSONError(f"body: {name} is not JSON (numbers must be finite)")


_STRICT = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_int=_int_within_limit, parse_constant=_no_constant
)
#: Counts the items past the cap without keeping them (duplicates are not looked for there).
_COUNTING = json.JSONDecoder(
    object_pairs_hook=lambda pairs: None, parse_int=_int_within_limit, parse_constant=_no_constant
)
_SPACE = re.compile(r"[ \t\n\r]*")


def _too_deep() -> InvalidJSONError:
    return InvalidJSONError(f"body: nested deeper than {MAX_JSON_DEPTH} levels")


def _check_depth(value: Any, depth: int = 1) -> None:
    stack = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if not isinstance(item, dict | list):
            continue
        children = item.values() if isinstance(item, dict) else item
        if level > MAX_JSON_DEPTH:
            raise _too_deep()
        stack.extend((child, level + 1) for child in children)


def decode_json_body(raw: bytes, max_items: int) -> tuple[list[Any], int]:
    """The items of a ``POST /v1`` body (an array, or one object) and how many the body holds.

    At most ``max_items + 1`` items are kept (the caller refuses more, naming the count): the rest
    are only counted, so a body of 100,000 ``{}`` costs a count, not 100,000 dicts. Raises
    ``InvalidJSONError`` for anything but strict JSON within the limits of this module.

        >>> decode_json_body(b'[{"a": 1}, {"b": 2}]', 10)
        ([{'a': 1}, {'b': 2}], 2)
        >>> decode_json_body(b'{"a": 1, "a": 2}', 10)
        Traceback (most recent call last):
        ...
        farm.domain.errors.InvalidJSONError: body: key 'a' appears twice in one object
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJSONError(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        items, count = _decode(text, max_items)
    except RecursionError:
        raise _too_deep() from None
    except json.JSONDecodeError as exc:
        raise InvalidJSONError(f"body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:  # int() and friends past the hooks' checks
        raise InvalidJSONError(f"body is not acceptable JSON: {clip(str(exc))}") from None
    _check_depth(items, 0)
    return items, count


def _decode(text: str, max_items: int) -> tuple[list[Any], int]:
    start = _SPACE.match(text).end()  # type: ignore[union-attr]  # the pattern matches the empty string
    if not text.startswith("[", start):
        value, end = _STRICT.raw_decode(text, start)
        if _SPACE.match(text, end).end() != len(text):  # type: ignore[union-attr]  # as above
            raise json.JSONDecodeError("Extra data", text, end)
        return [value], 1
    items: list[Any] = []
    index = _SPACE.match(text, start + 1).end()  # type: ignore[union-attr]  # as above
    if text.startswith("]", index):
        return items, 0
    while True:
        if len(items) > max_items:
            # Over the cap: count the rest (one array of them) without keeping what they hold.
            rest = _COUNTING.decode("[" + text[index:])
            return items, len(items) + len(rest)
        value, index = _STRICT.raw_decode(text, index)
        items.append(value)
        index = _SPACE.match(text, index).end()  # type: ignore[union-attr]  # as above
        if text.startswith("]", index):
            if _SPACE.match(text, index + 1).end() != len(text):  # type: ignore[union-attr]  # as above
                raise json.JSONDecodeError("Extra data", text, index + 1)
            return items, len(items)
        if not text.startswith(",", index):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
        index = _SPACE.match(text, index + 1).end()  # type: ignore[union-attr]  # as above


# ---------------------------------------------------------------- Range


def _range_decision(header: str | None, size: int) -> Literal["serve", "whole", "unsatisfiable"]:
    """What to do with a ``Range`` header (RFC 9110 section 14.2) for a file of ``size`` bytes.

    ``serve``: one satisfiable byte range, aiohttp answers 206. ``whole``: no header, a unit other
    than bytes, several ranges or a syntax aiohttp cannot serve: the Range is ignored (200, the whole
    file), as the RFC allows. ``unsatisfiable``: 416 (``bytes=-0``, a start past the end).
    """
    if header is None:
        return "whole"
    unit, _, ranges = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in ranges:
        return "whole"
    match = re.fullmatch(r"\s*(\d*)\s*-\s*(\d*)\s*", ranges)
    if match is None or match.group(0).strip() == "-":
        return "whole"
    first, last = match.groups()
    if not first:
        return "unsatisfiable" if int(last) == 0 or size == 0 else "serve"  # suffix range
    if last and int(last) < int(first):
        return "whole"  # invalid range-spec: ignored
    return "unsatisfiable" if int(first) >= size else "serve"


# ---------------------------------------------------------------- the face


class RestFace:
    """The handlers of the HTTP port over a ``TaskService`` (and optional artifacts and metrics)."""

    def __init__(
        self,
        service: TaskService,
        *,
        api_keys: ApiKeys | None = None,
        artifacts: Any = None,
        metrics: Any = None,
        public_base_url: str | None = None,
        max_tasks_per_request: int = MAX_TASKS_PER_REQUEST,
        readiness: ReadinessCheck | None = None,
    ):
        self.service = service
        self.api_keys = api_keys or ApiKeys()
        self.artifacts = artifacts
        self.metrics = metrics
        self.public_base_url = public_base_url
        self.max_tasks_per_request = max_tasks_per_request
        #: ``/readyz``'s check of the farm (None: ready while admitting).
        self.readiness = readiness
        #: False once shutdown begins: new submissions are refused.
        self.admitting = True

    # ---------------------------------------------------------------- POST /v1

    async def _one(self, item: Any, key: str | None, data: list, errors: list, small: bool = True) -> FarmError | None:
        """Handle one array item into ``data``/``errors``; returns the error when it failed.

        ``small``: the request body is small enough to validate its tasks on the event loop.
        """
        task_type = item.get("taskType") if isinstance(item, dict) else None
        task_uuid = item.get("taskUUID") if isinstance(item, dict) and isinstance(item.get("taskUUID"), str) else None
        try:
            if task_type == "getResponse":
                if not task_uuid:
                    raise TaskValidationError(
                        [Violation(field="taskUUID", message="getResponse needs a taskUUID", code="missingParameter")]
                    )
                record = await self._call(self.service.get, task_uuid, key)
                answer_data, answer_errors = task_answer(record, self.public_base_url)
                data.extend(answer_data)
                errors.extend(answer_errors)
            elif task_type == TASK_TYPE or not isinstance(item, dict) or task_type is None:
                # Non-objects and tasks without taskType go to the validator, which names the problem.
                if not self.admitting:
                    raise UnavailableError("gateway is shutting down")
                # URLs may be vetted at submission (a DNS lookup): those tasks go to a thread.
                inline = small and not (
                    isinstance(item, dict) and any(isinstance(item.get(n), str) for n in URL_FIELDS)
                )
                record = await self._call(self.service.submit, item, key, inline=inline)
                data.append(ack_item(record))
            else:
                shown = clip(task_type) if isinstance(task_type, str) else type(task_type).__name__
                raise TaskValidationError(
                    [
                        Violation(
                            field="taskType",
                            message=f"must be {TASK_TYPE} or getResponse, got {shown!r}",
                            code="invalidTaskType",
                        )
                    ]
                )
        except Exception as exc:  # every failure becomes an error item
            failure = exc if isinstance(exc, FarmError) else None
            if failure is None:
                log.exception("POST /v1 item %s failed", clip(task_uuid or "?"))
            elif error_info(failure).server_side:
                log.warning("POST /v1 item %s failed: %s", clip(task_uuid or "?"), failure)
            errors.extend(error_items(exc, task_uuid))
            return failure or FarmError("internal error")
        return None

    async def _call(self, fn, *args, inline: bool = True):
        # On the loop when the service says its calls never block (``inline_calls``: TaskManager's
        # get/submit are a short SQLite statement), else in a thread; see the gRPC face.
        if inline and getattr(self.service, "inline_calls", False):
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def post_v1(self, request: web.Request) -> web.Response:
        """``POST /v1``: an array of task objects (a single object is taken as an array of one)."""
        key = request[CALLER_KEY]  # set by auth_middleware
        raw_body = await request.read()
        small = len(raw_body) <= INLINE_SUBMIT_BYTES
        if small:
            items, count = decode_json_body(raw_body, self.max_tasks_per_request)
        else:
            items, count = await asyncio.to_thread(decode_json_body, raw_body, self.max_tasks_per_request)
        if not count:
            raise TaskValidationError(
                [Violation(field="body", message="empty task array: send at least one task", code="missingParameter")]
            )
        check_task_count(count, self.max_tasks_per_request)
        data: list[dict] = []
        errors: list[dict] = []
        last_error: FarmError | None = None
        for item in items:
            # Kept for the HTTP status of an answer where every item failed.
            last_error = await self._one(item, key, data, errors, small) or last_error
        if errors and not data and last_error is not None:
            # Every item failed: the status (and Retry-After) of the last failure, with every error.
            return json_error_response(last_error, items=errors)
        answer: dict[str, Any] = {}
        if data:
            answer["data"] = data
        if errors:
            answer["errors"] = errors
        return web.json_response(answer)

    # ---------------------------------------------------------------- videos

    async def get_video(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/videos/{videoUUID}``: the file with its content type and Range support.

        Unknown and expired videos are the artifact store's ``ArtifactNotFound`` (404) and
        ``ArtifactExpired`` (410), rendered by the error middleware from their classes.
        """
        if self.artifacts is None:
            raise web.HTTPNotFound(reason="no artifact store")
        video_uuid = request.match_info["videoUUID"]
        artifact = await asyncio.to_thread(self.artifacts.get, video_uuid)
        headers = {"Content-Type": artifact.content_type}
        decision = _range_decision(request.headers.get("Range"), artifact.size)
        if decision == "unsatisfiable":
            return web.Response(
                status=416, headers={"Content-Range": f"bytes */{artifact.size}", "Accept-Ranges": "bytes"}
            )
        response = web.FileResponse(artifact.path, headers=headers)
        if decision == "whole" and "Range" in request.headers:
            # aiohttp would answer 416 (unknown unit, several ranges) or mis-serve it: prepare the
            # response for the same request without its Range header, i.e. 200 and the whole file.
            without_range = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() != "range")
            await response.prepare(request.clone(headers=without_range))
        # FileResponse answers Range requests (206) and conditional GETs itself.
        return response

    # ---------------------------------------------------------------- ops

    async def metrics_page(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the Prometheus exposition of ``FarmMetrics``."""
        if self.metrics is None:
            raise web.HTTPNotFound(reason="metrics are off")
        body, content_type = self.metrics.exposition()
        # content_type carries parameters (version, charset): set the raw header, not content_type=.
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        """``GET /openapi.json``: the OpenAPI 3.1 description of this JSON face."""
        from farm.gateway.openapi import openapi_document

        return web.json_response(openapi_document())

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 while admitting, 503 while shutting down."""
        if not self.admitting:
            return web.json_response({"status": "shutting down"}, status=503)
        return web.json_response({"status": "ok"})

    async def livez(self, request: web.Request) -> web.Response:
        """``GET /livez``: 200 while the process answers, draining included (a liveness probe that
        failed during a graceful shutdown would get the pod killed before its tasks are handed on)."""
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """``GET /readyz``: 200 when a task submitted now would wait for nothing to start, else 503
        with the reason (shutting down, the scheduler not answering, warm pools still loading)."""
        if not self.admitting:
            return web.json_response({"status": "shutting down"}, status=503)
        if self.readiness is None:
            return web.json_response({"status": "ready"})
        try:
            ready, details = await asyncio.wait_for(asyncio.to_thread(self.readiness), READINESS_TIMEOUT_S)
        except TimeoutError:
            ready, details = False, {"reason": f"the scheduler did not answer within {READINESS_TIMEOUT_S:g}s"}
        except Exception as exc:  # noqa: BLE001 - an unreachable scheduler is an answer: not ready
            ready, details = False, {"reason": f"the scheduler did not answer: {clip(str(exc) or type(exc).__name__)}"}
        body = {"status": "ready" if ready else "not ready", **details}
        return web.json_response(body, status=200 if ready else 503)


def make_app(face: RestFace, *, max_request_bytes: int = MAX_REQUEST_BYTES) -> web.Application:
    """The aiohttp application of ``face``, with its middlewares (metrics, errors, auth)."""
    app = web.Application(
        client_max_size=max_request_bytes,
        middlewares=[
            metrics_middleware(lambda: face.metrics),
            error_middleware,
            auth_middleware(face.api_keys, AUTHENTICATED_ROUTES),
        ],
    )
    app[SERVICE_KEY] = face
    app.router.add_post("/v1", face.post_v1)
    app.router.add_get("/v1/videos/{videoUUID}", face.get_video)
    app.router.add_get("/metrics", face.metrics_page)
    app.router.add_get("/healthz", face.healthz)
    app.router.add_get("/livez", face.livez)
    app.router.add_get("/readyz", face.readyz)
    app.router.add_get("/openapi.json", face.openapi)
    return app
