"""The JSON/REST face on the HTTP port (aiohttp).

    POST /v1                   array of tasks: videoInference (submit) and getResponse (poll)
    GET  /v1/videos/{videoUUID} the rendered file (HTTP Range, content type; 404 unknown, 410 expired)
    GET  /metrics              Prometheus exposition
    GET  /healthz              liveness

``POST /v1`` speaks the seed platform's shapes, so a client of that platform works by changing its
base URL: ``{"data": [...]}`` and/or ``{"errors": [{"code", "message", "parameter", "taskUUID"}]}``.
It calls the same ``TaskService`` and builds answers with the same helpers as the gRPC face.

Video URLs need no API key: the UUID v4 in the URL is the capability (like the platform's
pre-signed result URLs), so the URL can be handed to a browser or a CDN as is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from farm.domain.errors import FarmError, QueueFullError, UnauthenticatedError, error_info
from farm.domain.records import TaskService
from farm.gateway.wire import TASK_TYPE, ApiKeys, ack_item, error_items, task_answer

log = logging.getLogger(__name__)

#: Largest request body: tasks may carry base64 media (the validator allows 50 MiB per string).
MAX_REQUEST_BYTES = 64 * 1024 * 1024

#: gRPC status name -> HTTP status, for answers where every item failed.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 409,
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
}

SERVICE_KEY = web.AppKey("service", object)
#: Requests up to this size have their tasks validated on the event loop when the service allows
#: it (``inline_calls``); larger ones carry media whose validation belongs in a thread.
INLINE_SUBMIT_BYTES = 64 * 1024
#: Task fields holding URLs that submission may vet (resolving the host name).
URL_FIELDS = ("webhookURL", "uploadEndpoint")


def _json(body: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


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
    ):
        self.service = service
        self.api_keys = api_keys or ApiKeys()
        self.artifacts = artifacts
        self.metrics = metrics
        self.public_base_url = public_base_url
        #: False once shutdown begins: new submissions are refused.
        self.admitting = True

    def _count(self, route: str, status: int) -> None:
        if self.metrics is not None:
            try:
                self.metrics.http_request(route, status)
            except Exception:  # metrics must never fail a request
                log.exception("metrics.http_request failed")

    # ---------------------------------------------------------------- POST /v1

    async def _one(
        self, item: Any, key: str | None, data: list, errors: list, small: bool = True
    ) -> BaseException | None:
        """Handle one array item into ``data``/``errors``; returns the exception when it failed.

        ``small``: the request body is small enough to validate its tasks on the event loop.
        """
        task_type = item.get("taskType") if isinstance(item, dict) else None
        task_uuid = item.get("taskUUID") if isinstance(item, dict) and isinstance(item.get("taskUUID"), str) else None
        try:
            if task_type == "getResponse":
                if not task_uuid:
                    errors.append(
                        {
                            "code": "missingParameter",
                            "message": "getResponse needs a taskUUID",
                            "parameter": "taskUUID",
                            "taskUUID": "",
                            "retryable": False,
                        }
                    )
                    return
                record = await self._call(self.service.get, task_uuid, key)
                d, e = task_answer(record, self.public_base_url)
                data.extend(d)
                errors.extend(e)
            elif task_type == TASK_TYPE or not isinstance(item, dict) or task_type is None:
                # Non-objects and tasks without taskType go to the validator, which names the problem.
                if not self.admitting:
                    errors.append(
                        {
                            "code": "unavailable",
                            "message": "gateway is shutting down",
                            "parameter": "",
                            "taskUUID": task_uuid or "",
                            "retryable": True,
                        }
                    )
                    return
                # URLs may be vetted at submission (a DNS lookup): those tasks go to a thread.
                inline = small and not (
                    isinstance(item, dict) and any(isinstance(item.get(n), str) for n in URL_FIELDS)
                )
                record = await self._call(self.service.submit, item, key, inline=inline)
                data.append(ack_item(record))
            else:
                errors.append(
                    {
                        "code": "invalidTaskType",
                        "message": f"taskType must be videoInference or getResponse, got {task_type!r}",
                        "parameter": "taskType",
                        "taskUUID": task_uuid or "",
                        "retryable": False,
                    }
                )
        except Exception as exc:  # every failure becomes an error item
            if not isinstance(exc, FarmError):
                log.exception("POST /v1 item failed")
            errors.extend(error_items(exc, task_uuid))
            return exc
        return None

    async def _call(self, fn, *args, inline: bool = True):
        # On the loop when the service says its calls never block (``inline_calls``: TaskManager's
        # get/submit are a short SQLite statement), else in a thread; see the gRPC face.
        if inline and getattr(self.service, "inline_calls", False):
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def post_v1(self, request: web.Request) -> web.Response:
        """``POST /v1``: an array of task objects (a single object is taken as an array of one)."""
        try:
            key = self.api_keys.authenticate(request.headers.get("Authorization"))
        except UnauthenticatedError as exc:
            self._count("/v1", 401)
            return _json({"errors": error_items(exc)}, 401, {"WWW-Authenticate": "Bearer"})
        try:
            raw_body = await request.read()
            body = json.loads(raw_body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._count("/v1", 400)
            return _json(
                {
                    "errors": [
                        {
                            "code": "invalidJSON",
                            "message": f"body is not JSON: {exc}",
                            "parameter": "",
                            "taskUUID": "",
                            "retryable": False,
                        }
                    ]
                },
                400,
            )
        items = body if isinstance(body, list) else [body]
        if not items:
            self._count("/v1", 400)
            return _json(
                {
                    "errors": [
                        {
                            "code": "missingParameter",
                            "message": "empty task array",
                            "parameter": "",
                            "taskUUID": "",
                            "retryable": False,
                        }
                    ]
                },
                400,
            )
        data: list[dict] = []
        errors: list[dict] = []
        last_error = None
        for item in items:
            # Kept for the HTTP status of an answer where every item failed.
            last_error = await self._one(item, key, data, errors, len(raw_body) <= INLINE_SUBMIT_BYTES) or last_error
        answer: dict[str, Any] = {}
        if data:
            answer["data"] = data
        if errors:
            answer["errors"] = errors
        status, headers = 200, {}
        if errors and not data:
            exc = last_error
            status = HTTP_STATUS.get(error_info(exc).grpc_status, 500) if exc is not None else 400
            if isinstance(exc, QueueFullError):
                headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        self._count("/v1", status)
        return _json(answer, status, headers)

    # ---------------------------------------------------------------- videos

    async def get_video(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/videos/{videoUUID}``: the file with its content type and Range support."""
        video_uuid = request.match_info["video_uuid"]
        route = "/v1/videos/{videoUUID}"
        if self.artifacts is None:
            self._count(route, 404)
            raise web.HTTPNotFound(text="no artifact store")
        try:
            artifact = await asyncio.to_thread(self.artifacts.get, video_uuid)
        except Exception as exc:  # the artifact store's own error classes, by name
            kind = type(exc).__name__
            if kind == "ArtifactExpired":
                self._count(route, 410)
                raise web.HTTPGone(text=f"video {video_uuid} has expired") from None
            if kind == "ArtifactNotFound" or isinstance(exc, (KeyError, FileNotFoundError)):
                self._count(route, 404)
                raise web.HTTPNotFound(text=f"no video {video_uuid}") from None
            raise
        self._count(route, 200)
        # FileResponse answers Range requests (206 / 416) and conditional GETs itself.
        return web.FileResponse(artifact.path, headers={"Content-Type": artifact.content_type})

    # ---------------------------------------------------------------- ops

    async def metrics_page(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the Prometheus exposition of ``FarmMetrics``."""
        if self.metrics is None:
            raise web.HTTPNotFound(text="metrics are off")
        body, content_type = self.metrics.exposition()
        # content_type carries parameters (version, charset): set the raw header, not content_type=.
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 while admitting, 503 while shutting down."""
        if not self.admitting:
            return _json({"status": "shutting down"}, 503)
        return _json({"status": "ok"})


def make_app(face: RestFace, *, max_request_bytes: int = MAX_REQUEST_BYTES) -> web.Application:
    """The aiohttp application of ``face``."""
    app = web.Application(client_max_size=max_request_bytes)
    app[SERVICE_KEY] = face
    app.router.add_post("/v1", face.post_v1)
    app.router.add_get("/v1/videos/{video_uuid}", face.get_video)
    app.router.add_get("/metrics", face.metrics_page)
    app.router.add_get("/healthz", face.healthz)
    return app
