"""The gRPC face: ``farm.v1.VideoInference`` on ``grpc.aio``, plus health and reflection.

Every RPC authenticates the ``authorization: Bearer <key>`` metadata, turns the message into the
seed's JSON (``task_message_to_dict``) and calls the shared ``TaskService``; answers and errors are
built by the helpers in ``farm.gateway`` so the JSON face says the same things. Failures map
through ``farm.domain.errors.error_info``; an invalid single task is ``INVALID_ARGUMENT`` with a
``google.rpc.BadRequest`` listing each field violation, a full queue ``RESOURCE_EXHAUSTED`` with
``google.rpc.RetryInfo``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from farm.domain.errors import FarmError, QueueFullError, TaskValidationError, error_info
from farm.domain.records import ProgressEvent, TaskService
from farm.gateway.wire import TASK_TYPE, ApiKeys, ack_item, error_items, task_answer, task_message_to_dict
from farm.v1 import farm_pb2, farm_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = farm_pb2.DESCRIPTOR.services_by_name["VideoInference"].full_name
#: Largest asset UploadAsset accepts (the validator's media strings top out at 50 MiB too).
MAX_ASSET_BYTES = 50 * 1024 * 1024
#: Submits of tasks up to this size (serialised) are handled on the event loop when the service
#: allows it (``inline_calls``); larger ones carry media whose validation belongs in a thread.
INLINE_SUBMIT_BYTES = 64 * 1024
#: Task fields holding URLs that submission may vet (resolving the host name).
URL_FIELDS = ("webhookURL", "uploadEndpoint")


class RpcFailure(Exception):
    """An RPC ends with ``code``; ``status`` (a ``google.rpc.Status``) carries rich details."""

    def __init__(self, code: grpc.StatusCode, message: str, status: status_pb2.Status | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def failure_for(error: BaseException, task_uuid: str | None = None) -> RpcFailure:
    """The gRPC status for ``error`` from the one error table, with google.rpc details attached:
    ``BadRequest`` (field = the violation's path) for invalid tasks, ``RetryInfo`` for a full
    queue, ``ErrorInfo`` (reason = the JSON code) always."""
    info = error_info(error)
    code = grpc.StatusCode[info.grpc_status]
    items = error_items(error, task_uuid)
    message = (
        "; ".join(item["message"] for item in items) if isinstance(error, TaskValidationError) else items[0]["message"]
    )
    status = status_pb2.Status(code=getattr(code_pb2, info.grpc_status), message=message)
    if isinstance(error, TaskValidationError):
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=str(v)) for v in error.violations
            ]
        )
        status.details.add().Pack(bad)
    elif getattr(error, "parameter", ""):
        # An error about one field (a refused webhookURL, ...) is a field violation too.
        bad = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=error.parameter, description=message)]
        )
        status.details.add().Pack(bad)
    if isinstance(error, QueueFullError):
        delay = Duration()
        delay.FromNanoseconds(int(error.retry_after_s * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(
            reason=info.code,
            domain="farm.v1",
            metadata={"retryable": str(info.retryable).lower()},
        )
    )
    return RpcFailure(code, message, status)


def _error_message(item: dict) -> farm_pb2.TaskError:
    return farm_pb2.TaskError(
        code=item["code"],
        message=item["message"],
        parameter=item.get("parameter", ""),
        task_uuid=item.get("taskUUID", ""),
        retryable=item.get("retryable", False),
        **({"retry_after_s": item["retryAfter"]} if "retryAfter" in item else {}),
    )


#: The answer dicts use the seed's names, which are ``VideoResult``'s json_names.
_RESULT_FIELDS = {field.json_name: field.name for field in farm_pb2.VideoResult.DESCRIPTOR.fields}


def _task_response(data: list[dict], errors: list[dict]) -> farm_pb2.TaskResponse:
    # Keyword construction, not json_format.ParseDict: the same message at a fraction of the cost
    # on the GetResponse path (keys the message lacks, e.g. queuePosition, are left out as before).
    return farm_pb2.TaskResponse(
        data=[
            farm_pb2.VideoResult(**{_RESULT_FIELDS[k]: v for k, v in item.items() if k in _RESULT_FIELDS})
            for item in data
        ],
        errors=[_error_message(e) for e in errors],
    )


def event_message(event: ProgressEvent) -> farm_pb2.ProgressEvent:
    """A ``lifecycle.ProgressEvent`` as its protobuf message."""
    message = farm_pb2.ProgressEvent(
        task_uuid=event.task_uuid,
        kind=event.kind,
        chunks_done=event.chunks_done,
        chunks_total=event.chunks_total,
        frames_encoded=event.frames_encoded,
        frames_total=event.frames_total,
        message=event.message,
    )
    if event.result_index is not None:
        message.result_index = event.result_index
    if event.queue_position is not None:
        message.queue_position = event.queue_position
    if event.extra:
        # Struct holds JSON only; anything else is shown as text rather than failing the stream.
        message.extra.update(json.loads(json.dumps(event.extra, default=str)))
    return message


class AssetSink:
    """Uploaded assets as files under ``root`` (``<uuid>`` + ``<uuid>.json`` with owner and type).

    Media decoding is a later stage; this only stores bytes under an unguessable UUID.
    """

    def __init__(self, root: str | Path, max_bytes: int = MAX_ASSET_BYTES):
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path(self, asset_uuid: str) -> Path:
        """Where the bytes of ``asset_uuid`` live."""
        return self.root / asset_uuid


def _metadata_value(context, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value
    return None


class VideoInferenceServicer(farm_pb2_grpc.VideoInferenceServicer):
    """``farm.v1.VideoInference`` over a ``TaskService``.

    ``metrics`` (optional, a ``FarmMetrics``) counts every call by method and status code;
    ``public_base_url`` completes ``videoURL`` for results whose manager gave none.
    """

    def __init__(
        self,
        service: TaskService,
        *,
        api_keys: ApiKeys | None = None,
        metrics: Any = None,
        public_base_url: str | None = None,
        assets: AssetSink | None = None,
    ):
        self.service = service
        self.api_keys = api_keys or ApiKeys()
        self.metrics = metrics
        self.public_base_url = public_base_url
        self.assets = assets
        #: False once shutdown begins: new submissions are refused with UNAVAILABLE.
        self.admitting = True

    # ---------------------------------------------------------------- plumbing

    def _count(self, method: str, code: grpc.StatusCode) -> None:
        if self.metrics is not None:
            try:
                self.metrics.grpc_request(method, code.name)
            except Exception:  # metrics must never fail a request
                log.exception("metrics.grpc_request failed")

    def _key(self, context) -> str | None:
        return self.api_keys.authenticate(_metadata_value(context, "authorization"))

    async def _fail(self, context, method: str, failure: RpcFailure):
        self._count(method, failure.code)
        if failure.status is not None:
            status = rpc_status.to_status(failure.status)
            await context.abort(status.code, status.details, status.trailing_metadata)
        await context.abort(failure.code, failure.message)

    async def _call(self, fn, *args, inline: bool = False):
        # TaskService methods are synchronous. A service that says its calls never block
        # (``inline_calls``, e.g. TaskManager's get/submit: a short SQLite statement) is called
        # right here on the loop: the hop to a thread and back cost more than the call itself.
        # Anything else runs in a thread, keeping the loop free for other RPCs and Watch streams.
        if inline and getattr(self.service, "inline_calls", False):
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    # ---------------------------------------------------------------- RPCs

    async def Submit(self, request: farm_pb2.SubmitRequest, context) -> farm_pb2.SubmitResponse:
        """Acknowledge or refuse each task; a one-task request fails the RPC with the error's status."""
        try:
            key = self._key(context)
        except FarmError as exc:
            return await self._fail(context, "Submit", failure_for(exc))
        if not self.admitting:
            return await self._fail(
                context, "Submit", RpcFailure(grpc.StatusCode.UNAVAILABLE, "gateway is shutting down")
            )
        if not request.tasks:
            return await self._fail(
                context, "Submit", RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, "no tasks in the request")
            )
        response = farm_pb2.SubmitResponse()
        for message in request.tasks:
            raw = task_message_to_dict(message)
            # The RPC says which task type this is; the seed's JSON requires it, so fill it in.
            raw.setdefault("taskType", TASK_TYPE)
            try:
                # In a thread: large tasks (inline media: validating decodes it) and tasks naming
                # URLs (the gateway may vet their host names, which can wait on DNS).
                inline = message.ByteSize() <= INLINE_SUBMIT_BYTES and not any(
                    isinstance(raw.get(name), str) for name in URL_FIELDS
                )
                record = await self._call(self.service.submit, raw, key, inline=inline)
            except Exception as exc:  # every failure becomes a per-task error
                if not isinstance(exc, FarmError):
                    log.exception("submit failed")
                task_uuid = raw.get("taskUUID") if isinstance(raw.get("taskUUID"), str) else None
                if len(request.tasks) == 1:
                    return await self._fail(context, "Submit", failure_for(exc, task_uuid))
                response.errors.extend(_error_message(item) for item in error_items(exc, task_uuid))
                continue
            ack = ack_item(record)
            response.data.add(task_type=ack["taskType"], task_uuid=ack["taskUUID"])
        self._count("Submit", grpc.StatusCode.OK)
        return response

    async def _task_call(self, method: str, fn, request, context, *, inline: bool = False) -> farm_pb2.TaskResponse:
        try:
            key = self._key(context)
            record = await self._call(fn, request.task_uuid, key, inline=inline)
        except Exception as exc:
            if not isinstance(exc, FarmError):
                log.exception("%s failed", method)
            return await self._fail(context, method, failure_for(exc, request.task_uuid))
        data, errors = task_answer(record, self.public_base_url)
        self._count(method, grpc.StatusCode.OK)
        return _task_response(data, errors)

    async def GetResponse(self, request: farm_pb2.GetResponseRequest, context) -> farm_pb2.TaskResponse:
        """Every result of the task so far; ``NOT_FOUND`` for an unknown (or another key's) task."""
        return await self._task_call("GetResponse", self.service.get, request, context, inline=True)

    async def Cancel(self, request: farm_pb2.CancelRequest, context) -> farm_pb2.TaskResponse:
        """Cancel the task and answer its results."""
        return await self._task_call("Cancel", self.service.cancel, request, context)

    async def Watch(self, request: farm_pb2.WatchRequest, context) -> AsyncIterator[farm_pb2.ProgressEvent]:
        """Stream the task's progress events in order until it ends."""
        try:
            key = self._key(context)
            # Resolve the task first so an unknown UUID fails the call instead of an empty stream.
            await self._call(self.service.get, request.task_uuid, key, inline=True)
            async for event in self.service.watch(request.task_uuid, key):
                yield event_message(event)
        except Exception as exc:
            if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
                raise
            if not isinstance(exc, FarmError):
                log.exception("Watch failed")
            await self._fail(context, "Watch", failure_for(exc, request.task_uuid))
            return
        self._count("Watch", grpc.StatusCode.OK)

    async def UploadAsset(self, request_iterator, context) -> farm_pb2.AssetAck:
        """Store the streamed bytes as an asset and answer its UUID."""
        try:
            key = self._key(context)
        except FarmError as exc:
            return await self._fail(context, "UploadAsset", failure_for(exc))
        if self.assets is None:
            return await self._fail(
                context, "UploadAsset", RpcFailure(grpc.StatusCode.UNIMPLEMENTED, "no asset storage configured")
            )
        asset_uuid = str(uuid.uuid4())
        self.assets.root.mkdir(parents=True, exist_ok=True)
        path = self.assets.path(asset_uuid)
        partial = path.with_suffix(".part")
        size, content_type, filename = 0, "", ""
        try:
            with open(partial, "wb") as fh:
                async for chunk in request_iterator:
                    if not content_type and chunk.content_type:
                        content_type = chunk.content_type
                    if not filename and chunk.filename:
                        filename = chunk.filename
                    size += len(chunk.data)
                    if size > self.assets.max_bytes:
                        raise RpcFailure(
                            grpc.StatusCode.RESOURCE_EXHAUSTED, f"asset larger than {self.assets.max_bytes} bytes"
                        )
                    fh.write(chunk.data)
            meta = {
                "assetUUID": asset_uuid,
                "size": size,
                "contentType": content_type or "application/octet-stream",
                "filename": filename,
                "apiKey": key,
            }
            path.with_suffix(".json").write_text(json.dumps(meta))
            os.replace(partial, path)
        except RpcFailure as failure:
            partial.unlink(missing_ok=True)
            return await self._fail(context, "UploadAsset", failure)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        self._count("UploadAsset", grpc.StatusCode.OK)
        return farm_pb2.AssetAck(asset_uuid=asset_uuid, size=size, content_type=meta["contentType"])


def service_names() -> list[str]:
    """The fully qualified names of the services this server exposes (for reflection)."""
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection

    return [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]


async def add_services(server: grpc.aio.Server, servicer: VideoInferenceServicer):
    """Register the farm service, health (SERVING) and reflection on ``server``.

    Returns the health servicer, so shutdown can flip it to NOT_SERVING first.
    """
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    farm_pb2_grpc.add_VideoInferenceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(service_names(), server)
    return health_servicer


__all__ = [
    "VideoInferenceServicer",
    "AssetSink",
    "RpcFailure",
    "add_services",
    "failure_for",
    "event_message",
    "SERVICE_NAME",
    "service_names",
]
