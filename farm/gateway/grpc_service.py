"""The gRPC face: ``farm.v1.VideoInference`` on ``grpc.aio``, plus health and reflection.

The servicer holds domain logic only: authentication, metrics and refusing undecodable requests
wrap every call once (``farm.gateway.interceptors``; ``create_server`` installs them). Each RPC
turns the message into the seed's JSON (``task_message_to_dict``) and calls the shared
``TaskService``; answers and errors are built by the helpers in ``farm.gateway.wire`` so the JSON
face says the same things. Failures map through ``farm.domain.errors``; an invalid single task is
``INVALID_ARGUMENT`` with a ``google.rpc.BadRequest`` listing each field violation, a full queue
``RESOURCE_EXHAUSTED`` with ``google.rpc.RetryInfo``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from farm.domain.constants import INLINE_SUBMIT_BYTES, MAX_MEDIA_BYTES, URL_FIELDS
from farm.domain.errors import (
    FarmError,
    InvalidRequestError,
    PayloadTooLargeError,
    UnavailableError,
    clip,
    public_message,
)
from farm.domain.records import ProgressEvent, TaskService
from farm.gateway.interceptors import (
    RpcFailure,
    abort,
    caller_key,
    failure_for,
    metadata_value,
    server_interceptors,
)
from farm.gateway.wire import (
    MAX_TASKS_PER_REQUEST,
    TASK_TYPE,
    ApiKeys,
    ack_item,
    check_task_count,
    error_items,
    task_answer,
    task_message_to_dict,
)
from farm.v1 import farm_pb2, farm_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = farm_pb2.DESCRIPTOR.services_by_name["VideoInference"].full_name
#: Largest asset UploadAsset accepts (the validator's media strings top out at the same size).
MAX_ASSET_BYTES = MAX_MEDIA_BYTES
#: An uploaded asset's content type: ``type/subtype`` (RFC 6838 names), optional parameters.
CONTENT_TYPE_MAX_CHARS = 255
_CONTENT_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[\x20-\x21\x23-\x7e]*\"|[A-Za-z0-9!#$&^_.+-]+))*"
)
FILENAME_MAX_CHARS = 255


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
    """A ``ProgressEvent`` as its protobuf message; ``extra`` keeps its wire names (``ProgressExtra``).

    The message of a failure (``error``, a failed ``result``) is what a client may read of it
    (``public_message``): a worker's traceback or a server path stays in the server log.
    """
    text = event.message
    if text and event.kind in ("error", "result"):
        text = public_message(event.extra.get("code"), text)
    message = farm_pb2.ProgressEvent(
        task_uuid=event.task_uuid,
        kind=event.kind,
        chunks_done=event.chunks_done,
        chunks_total=event.chunks_total,
        frames_encoded=event.frames_encoded,
        frames_total=event.frames_total,
        message=text,
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


def checked_content_type(value: str) -> str:
    """``value`` if it is a plausible content type (``image/png``), else ``InvalidRequestError``."""
    if len(value) > CONTENT_TYPE_MAX_CHARS:
        raise InvalidRequestError(
            f"contentType: must be at most {CONTENT_TYPE_MAX_CHARS} characters, got {len(value)}",
            parameter="contentType",
        )
    if not _CONTENT_TYPE.fullmatch(value):
        raise InvalidRequestError(
            f"contentType: must be a media type such as image/png, got {clip(value)!r}", parameter="contentType"
        )
    return value


def checked_filename(value: str) -> str:
    """``value`` if it is a short, printable file name, else ``InvalidRequestError``."""
    if len(value) > FILENAME_MAX_CHARS or not value.isprintable():
        raise InvalidRequestError(
            f"filename: must be at most {FILENAME_MAX_CHARS} printable characters, got {clip(value)!r}",
            parameter="filename",
        )
    return value


class VideoInferenceServicer(farm_pb2_grpc.VideoInferenceServicer):
    """``farm.v1.VideoInference`` over a ``TaskService``.

    ``api_keys`` and ``metrics`` are what ``create_server`` hands to the interceptors;
    ``public_base_url`` completes ``videoURL`` for results whose manager gave none;
    ``max_tasks_per_request`` bounds ``Submit``.
    """

    def __init__(
        self,
        service: TaskService,
        *,
        api_keys: ApiKeys | None = None,
        metrics: Any = None,
        public_base_url: str | None = None,
        assets: AssetSink | None = None,
        max_tasks_per_request: int = MAX_TASKS_PER_REQUEST,
    ):
        self.service = service
        self.api_keys = api_keys or ApiKeys()
        self.metrics = metrics
        self.public_base_url = public_base_url
        self.assets = assets
        self.max_tasks_per_request = max_tasks_per_request
        #: False once shutdown begins: new submissions are refused with UNAVAILABLE.
        self.admitting = True

    # ---------------------------------------------------------------- plumbing

    async def _caller(self, context: grpc.aio.ServicerContext) -> str | None:
        """The key ``AuthInterceptor`` settled on for this call.

        A server built without ``create_server`` (no interceptors) still never lets a call in
        unchecked: the key is then checked here, against the same ``api_keys``.
        """
        try:
            return caller_key()
        except LookupError:
            try:
                return self.api_keys.authenticate(metadata_value(context, "authorization"))
            except FarmError as exc:
                await abort(context, exc)

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
        key = await self._caller(context)
        if not self.admitting:
            await abort(context, UnavailableError("gateway is shutting down"))
        if not request.tasks:
            await abort(context, InvalidRequestError("no tasks in the request", parameter="tasks"))
        try:
            check_task_count(len(request.tasks), self.max_tasks_per_request)
        except FarmError as exc:
            await abort(context, exc)
        response = farm_pb2.SubmitResponse()
        for message in request.tasks:
            task_uuid = message.task_uuid or None
            try:
                raw = task_message_to_dict(message)
                # The RPC says which task type this is; the seed's JSON requires it, so fill it in.
                raw.setdefault("taskType", TASK_TYPE)
                # In a thread: large tasks (inline media: validating decodes it) and tasks naming
                # URLs (the gateway may vet their host names, which can wait on DNS).
                inline = message.ByteSize() <= INLINE_SUBMIT_BYTES and not any(
                    isinstance(raw.get(name), str) for name in URL_FIELDS
                )
                record = await self._call(self.service.submit, raw, key, inline=inline)
            except Exception as exc:  # every failure becomes a per-task error
                if not isinstance(exc, FarmError):
                    log.exception("submit of task %s failed", clip(task_uuid or "?"))
                if len(request.tasks) == 1:
                    await abort(context, failure_for(exc, task_uuid))
                response.errors.extend(_error_message(item) for item in error_items(exc, task_uuid))
                continue
            ack = ack_item(record)
            response.data.add(task_type=ack["taskType"], task_uuid=ack["taskUUID"])
        return response

    async def _task_call(self, method: str, fn, request, context, *, inline: bool = False) -> farm_pb2.TaskResponse:
        key = await self._caller(context)
        try:
            record = await self._call(fn, request.task_uuid, key, inline=inline)
        except Exception as exc:
            if not isinstance(exc, FarmError):
                log.exception("%s failed", method)
            await abort(context, failure_for(exc, request.task_uuid))
        data, errors = task_answer(record, self.public_base_url)
        return _task_response(data, errors)

    async def GetResponse(self, request: farm_pb2.GetResponseRequest, context) -> farm_pb2.TaskResponse:
        """Every result of the task so far; ``NOT_FOUND`` for an unknown (or another key's) task."""
        return await self._task_call("GetResponse", self.service.get, request, context, inline=True)

    async def Cancel(self, request: farm_pb2.CancelRequest, context) -> farm_pb2.TaskResponse:
        """Cancel the task and answer its results."""
        return await self._task_call("Cancel", self.service.cancel, request, context)

    async def Watch(self, request: farm_pb2.WatchRequest, context) -> AsyncIterator[farm_pb2.ProgressEvent]:
        """Stream the task's progress events in order until it ends."""
        key = await self._caller(context)
        try:
            # Resolve the task first so an unknown UUID fails the call instead of an empty stream.
            await self._call(self.service.get, request.task_uuid, key, inline=True)
            events = self.service.watch(request.task_uuid, key)
            async for event in events:
                yield event_message(event)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            if not isinstance(exc, FarmError):
                log.exception("Watch failed")
            await abort(context, failure_for(exc, request.task_uuid))

    async def UploadAsset(self, request_iterator, context) -> farm_pb2.AssetAck:
        """Store the streamed bytes as an asset and answer its UUID.

        Refused: an empty stream, a content type that is not ``type/subtype`` or longer than
        ``CONTENT_TYPE_MAX_CHARS``, a file name over ``FILENAME_MAX_CHARS``, more bytes than the sink takes.
        """
        key = await self._caller(context)
        if self.assets is None:
            await abort(context, RpcFailure(grpc.StatusCode.UNIMPLEMENTED, "no asset storage configured"))
        assets = self.assets
        asset_uuid = str(uuid.uuid4())
        assets.root.mkdir(parents=True, exist_ok=True)
        path = assets.path(asset_uuid)
        partial = path.with_suffix(".part")
        size, content_type, filename = 0, "", ""
        try:
            with open(partial, "wb") as fh:
                async for chunk in request_iterator:
                    if not content_type and chunk.content_type:
                        content_type = checked_content_type(chunk.content_type)
                    if not filename and chunk.filename:
                        filename = checked_filename(chunk.filename)
                    size += len(chunk.data)
                    if size > assets.max_bytes:
                        raise PayloadTooLargeError(f"asset larger than {assets.max_bytes} bytes")
                    fh.write(chunk.data)
            if size == 0:
                raise InvalidRequestError("the asset is empty: send its bytes in AssetChunk.data", parameter="data")
            meta = {
                "assetUUID": asset_uuid,
                "size": size,
                "contentType": content_type or "application/octet-stream",
                "filename": filename,
                "apiKey": key,
            }
            path.with_suffix(".json").write_text(json.dumps(meta))
            os.replace(partial, path)
        except FarmError as exc:
            partial.unlink(missing_ok=True)
            await abort(context, exc)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return farm_pb2.AssetAck(asset_uuid=asset_uuid, size=size, content_type=str(meta["contentType"]))


def create_server(
    servicer: VideoInferenceServicer, *, options: Sequence[tuple[str, Any]] = (), **kwargs: Any
) -> grpc.aio.Server:
    """A ``grpc.aio`` server with the gateway's interceptors (metrics, auth, decoding) over
    ``servicer``'s ``api_keys`` and ``metrics``; then ``add_services(server, servicer)``.

    ``metrics`` is read per call, so it may be attached to the servicer after this.
    """
    interceptors = server_interceptors(servicer.api_keys, lambda: servicer.metrics)
    return grpc.aio.server(options=list(options), interceptors=interceptors, **kwargs)


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
    "create_server",
    "checked_content_type",
    "AssetSink",
    "RpcFailure",
    "add_services",
    "failure_for",
    "event_message",
    "SERVICE_NAME",
    "service_names",
]
