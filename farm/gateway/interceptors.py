"""What every call goes through, once, on both faces: authentication, metrics, decoding, errors.

gRPC (``grpc.aio.ServerInterceptor`` s, in this order around each ``farm.v1.VideoInference`` call):

    MetricsInterceptor   counts the call by method and final status code
    └── AuthInterceptor  settles the caller's API key (``caller_key``) or ends the call UNAUTHENTICATED
        └── DecodeInterceptor  a request that does not decode ends INVALID_ARGUMENT (naming the
            field where it can), never UNKNOWN with a Python exception class
            └── the servicer (domain logic only)

``server_interceptors(api_keys, metrics)`` builds the chain for ``grpc.aio.server(interceptors=...)``;
health and reflection pass through untouched (probes need no key). ``failure_for`` and ``abort``
are the gRPC face's one error path: the status from ``farm.domain.errors``, with
``google.rpc`` details, sized to fit a client's metadata limit whatever the request echoed.

aiohttp (middlewares of the JSON face, outermost first): ``metrics_middleware`` (route template and
status of every answer), ``error_middleware`` (a ``FarmError`` becomes the platform's
``{"errors": [...]}`` with the class's HTTP status; anything else a short 500, details logged),
``auth_middleware`` (the routes that need a key; the key is ``request[CALLER_KEY]``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import grpc
from aiohttp import web
from google.protobuf import descriptor as _descriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from farm.domain.errors import (
    ECHO_MAX_CHARS,
    FarmError,
    InvalidRequestError,
    QueueFullError,
    TaskValidationError,
    UnauthenticatedError,
    clip,
    error_info,
)
from farm.gateway.auth import ApiKeys
from farm.gateway.wire import error_items

log = logging.getLogger(__name__)

__all__ = [
    "RpcFailure",
    "failure_for",
    "abort",
    "caller_key",
    "metadata_value",
    "MetricsInterceptor",
    "AuthInterceptor",
    "DecodeInterceptor",
    "server_interceptors",
    "CALLER_KEY",
    "metrics_middleware",
    "error_middleware",
    "auth_middleware",
    "json_error_response",
]

#: The farm's own service; interceptors leave every other service (health, reflection) alone.
SERVICE_PREFIX = "/farm.v1.VideoInference/"

# ---------------------------------------------------------------- gRPC statuses

#: A status travels in trailers, twice (``grpc-message`` percent-encoded, and inside
#: ``grpc-status-details-bin`` base64-encoded); a client drops trailers over its metadata limit
#: (8 KiB by default) and sees RESOURCE_EXHAUSTED instead. These budgets keep both under ~5 KiB.
STATUS_MESSAGE_MAX_BYTES = 512
STATUS_DETAILS_MAX_BYTES = 2048
#: Longest description of one field violation in ``google.rpc.BadRequest``.
VIOLATION_MAX_CHARS = 256


class RpcFailure(Exception):
    """An RPC ends with ``code``; ``status`` (a ``google.rpc.Status``) carries rich details."""

    def __init__(self, code: grpc.StatusCode, message: str, status: status_pb2.Status | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _clip_bytes(text: str, limit: int) -> str:
    """``text`` whose UTF-8 form is at most ``limit`` bytes (cut on a character, ``...`` added)."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


def failure_for(error: BaseException, task_uuid: str | None = None) -> RpcFailure:
    """The gRPC status for ``error`` from the one error table, with google.rpc details attached:
    ``BadRequest`` (field = the violation's path) for invalid tasks and one-field errors,
    ``RetryInfo`` for a full queue, ``ErrorInfo`` (reason = the JSON code) always.

    Messages and details are clipped to the budgets above, so an echoed 10 MiB taskUUID or ten
    thousand unknown keys still give the client a status it can read.
    """
    info = error_info(error)
    code = grpc.StatusCode[info.grpc_status]
    items = error_items(error, task_uuid)
    message = _clip_bytes("; ".join(item["message"] for item in items), STATUS_MESSAGE_MAX_BYTES)
    status = status_pb2.Status(code=getattr(code_pb2, info.grpc_status), message=message)
    violations = [(v.field, str(v)) for v in error.violations] if isinstance(error, TaskValidationError) else []
    parameter = getattr(error, "parameter", "") if isinstance(error, FarmError) else ""
    if not violations and isinstance(parameter, str) and parameter:
        # An error about one field (a refused webhookURL, an undecodable field) is a field violation too.
        violations = [(parameter, message)]
    if violations:
        bad = error_details_pb2.BadRequest()
        for index, (field, description) in enumerate(violations):
            bad.field_violations.add(field=clip(field), description=clip(description, VIOLATION_MAX_CHARS))
            if bad.ByteSize() > STATUS_DETAILS_MAX_BYTES:
                del bad.field_violations[-1]
                bad.field_violations.add(
                    field="", description=f"and {len(violations) - index} more violation(s) not listed"
                )
                break
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


async def abort(context: grpc.aio.ServicerContext, failure: RpcFailure | BaseException) -> NoReturn:
    """End the call with ``failure`` (an ``RpcFailure``, or any error: mapped by ``failure_for``)."""
    if not isinstance(failure, RpcFailure):
        failure = failure_for(failure)
    if failure.status is not None:
        status = rpc_status.to_status(failure.status)
        await context.abort(status.code, status.details, status.trailing_metadata)
    await context.abort(failure.code, failure.message)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


# ---------------------------------------------------------------- wrapping handlers

Behavior = Callable[..., Any]


def _behavior_of(handler: grpc.RpcMethodHandler) -> tuple[str, Behavior]:
    for name in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behavior = getattr(handler, name)
        if behavior is not None:
            return name, behavior
    raise ValueError("RPC method handler without a behavior")


def _replace(handler: grpc.RpcMethodHandler, **fields: Any) -> grpc.RpcMethodHandler:
    # grpc's handlers are namedtuples (grpc._utilities.RpcMethodHandler).
    return handler._replace(**fields)


def _scoped(handler: grpc.RpcMethodHandler, scope: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    """``handler`` whose behavior runs inside ``async with scope(context)`` (any of the four shapes)."""
    name, behavior = _behavior_of(handler)
    if handler.response_streaming:

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with scope(context):
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:  # a behavior that writes with context.write() and returns None
                    await result

        return _replace(handler, **{name: streaming})

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with scope(context):
            return await behavior(request, context)

    return _replace(handler, **{name: unary})


class _WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each of the farm's method handlers once (``_wrap``) and hands out the same wrapper
    on every later call: grpc.aio asks the interceptors for every RPC, and building closures and
    handler tuples per call cost more than the checks they run."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or not _ours(handler_call_details):
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method[len(SERVICE_PREFIX) :])
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError


def _ours(details: grpc.HandlerCallDetails) -> bool:
    method = getattr(details, "method", "")
    return isinstance(method, str) and method.startswith(SERVICE_PREFIX)


def metadata_value(context: grpc.aio.ServicerContext, name: str) -> str | None:
    """The first value of the call's metadata key ``name`` (a text value), or None."""
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else None
    return None


# ---------------------------------------------------------------- metrics

MetricsSource = Callable[[], Any]


class MetricsInterceptor(_WrappingInterceptor):
    """Counts every call of the farm's service by short method name and final status code.

    ``metrics`` is a ``FarmMetrics`` (or a callable returning one, read per call, so a gateway may
    attach its metrics after building the server); None counts nothing.
    """

    def __init__(self, metrics: Any):
        super().__init__()
        self._metrics: MetricsSource = metrics if callable(metrics) else (lambda: metrics)

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return _scoped(handler, lambda context: self._counted(method, context))

    @asynccontextmanager
    async def _counted(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        code = "UNKNOWN"
        try:
            yield
            code = _code_name(context.code()) or "OK"
        except grpc.aio.AbortError:
            code = _code_name(context.code()) or "UNKNOWN"
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = "CANCELLED"
            raise
        finally:
            metrics = self._metrics()
            if metrics is not None:
                try:
                    metrics.grpc_request(method, code)
                except Exception:  # metrics must never fail a call
                    log.exception("metrics.grpc_request failed")


def _code_name(code: Any) -> str | None:
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for member in grpc.StatusCode:
            if member.value[0] == code:
                return member.name
    return None


# ---------------------------------------------------------------- authentication

_UNSET: Any = object()
_CALLER: contextvars.ContextVar[Any] = contextvars.ContextVar("farm_caller_key", default=_UNSET)


def caller_key() -> str | None:
    """The API key ``AuthInterceptor`` settled on for the current call (None: keys are off).

    Raises ``LookupError`` when no ``AuthInterceptor`` ran for this call.
    """
    key = _CALLER.get()
    if key is _UNSET:
        raise LookupError("no AuthInterceptor ran for this call")
    return key


class AuthInterceptor(_WrappingInterceptor):
    """Checks ``authorization: Bearer <key>`` once per call; the servicer reads ``caller_key()``.

    Each gRPC call runs in its own asyncio task, so the key set here is seen by that call only.
    """

    def __init__(self, api_keys: ApiKeys):
        super().__init__()
        self.api_keys = api_keys

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return _scoped(handler, self._authenticated)

    @asynccontextmanager
    async def _authenticated(self, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        try:
            key = self.api_keys.authenticate(metadata_value(context, "authorization"))
        except UnauthenticatedError as exc:
            await abort(context, exc)
        _CALLER.set(key)
        yield


# ---------------------------------------------------------------- decoding


class _Undecodable:
    """What the safe deserializer hands on instead of raising (grpc.aio would answer UNKNOWN)."""

    def __init__(self, raw: bytes, error: Exception, message_type: Any):
        self.raw = raw
        self.error = error
        self.message_type = message_type

    def failure(self) -> RpcFailure:
        name = getattr(getattr(self.message_type, "DESCRIPTOR", None), "full_name", "the request message")
        field = (
            _bad_utf8_field(self.message_type.DESCRIPTOR, self.raw)
            if hasattr(self.message_type, "DESCRIPTOR")
            else None
        )
        if field is not None:
            error = InvalidRequestError(f"{field}: string is not valid UTF-8", parameter=field)
        else:
            text = str(self.error)
            # "Error parsing message with type 'farm.v1.SubmitRequest': Wire format was corrupt"
            reason = text.rsplit("': ", 1)[-1] if isinstance(self.error, DecodeError) and "': " in text else ""
            reason = reason[:1].lower() + reason[1:] if reason else "corrupt, truncated or nested too deep"
            error = InvalidRequestError(f"the request does not decode as {name}: {clip(reason)}")
        return failure_for(error)


def _safe_deserializer(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    message_type = getattr(deserialize, "__self__", None)

    def safe(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception as exc:  # noqa: BLE001 - DecodeError, RecursionError...: refused later, by status
            return _Undecodable(raw, exc, message_type)

    return safe


class DecodeInterceptor(_WrappingInterceptor):
    """Requests that do not decode end INVALID_ARGUMENT instead of UNKNOWN.

    grpc.aio deserializes before any handler runs and answers UNKNOWN ("Unexpected <class
    'google.protobuf.message.DecodeError'>") when the deserializer raises. This interceptor gives
    the farm's methods a deserializer that never raises; the behavior then refuses the request by
    status, naming the field for a string that is not UTF-8.
    """

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.request_deserializer is None:
            return handler
        name, behavior = _behavior_of(handler)
        return _replace(
            handler,
            request_deserializer=_safe_deserializer(handler.request_deserializer),
            **{name: _checked(behavior, handler.request_streaming, handler.response_streaming)},
        )


def _checked(behavior: Behavior, request_streaming: bool, response_streaming: bool) -> Behavior:
    """``behavior`` that refuses an ``_Undecodable`` request (or stream message) by status first."""

    async def messages(iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for message in iterator:
            if isinstance(message, _Undecodable):
                await abort(context, message.failure())
            yield message

    async def checked_request(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request_streaming:
            return messages(request, context)
        if isinstance(request, _Undecodable):
            await abort(context, request.failure())
        return request

    if response_streaming:

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            result = behavior(await checked_request(request, context), context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:  # a behavior that writes with context.write() and returns None
                await result

        return streaming

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await behavior(await checked_request(request, context), context)

    return unary


def _varint(data: bytes, index: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[index]  # IndexError on truncation: the caller gives up
        index += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _bad_utf8_field(message: _descriptor.Descriptor, data: bytes, path: str = "", depth: int = 0) -> str | None:
    """The field path (by json_name: ``tasks[0].positivePrompt``) of the first string in ``data``
    that is not UTF-8, or None when there is none or the bytes are too broken to walk.

    Inside well-known types (``Struct``, ``Value``) the path stops at the field that holds them.
    """
    if depth > 64:
        return None
    seen: dict[int, int] = {}
    index = 0
    try:
        while index < len(data):
            key, index = _varint(data, index)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                _, index = _varint(data, index)
                continue
            if wire_type in (1, 5):
                index += 8 if wire_type == 1 else 4
                continue
            if wire_type != 2:
                return None
            length, index = _varint(data, index)
            chunk, index = data[index : index + length], index + length
            field = message.fields_by_number.get(number)
            if field is None or field.type not in (field.TYPE_STRING, field.TYPE_MESSAGE):
                continue
            position = seen.get(number, 0)
            seen[number] = position + 1
            name = field.json_name + (f"[{position}]" if field.is_repeated else "")
            full = f"{path}.{name}" if path else name
            if field.type == field.TYPE_STRING:
                try:
                    chunk.decode("utf-8")
                except UnicodeDecodeError:
                    return full
            elif field.message_type.full_name.startswith("google.protobuf."):
                if _bad_utf8_field(field.message_type, chunk, "", depth + 1) is not None:
                    return full
            else:
                found = _bad_utf8_field(field.message_type, chunk, full, depth + 1)
                if found is not None:
                    return found
    except (IndexError, ValueError):
        return None
    return None


def server_interceptors(api_keys: ApiKeys, metrics: Any = None) -> list[grpc.aio.ServerInterceptor]:
    """The interceptor chain of the gateway's gRPC server: metrics, then auth, then decoding."""
    return [MetricsInterceptor(metrics), AuthInterceptor(api_keys), DecodeInterceptor()]


# ---------------------------------------------------------------- aiohttp middlewares

#: The caller's API key on a request that passed ``auth_middleware`` (None: keys are off).
CALLER_KEY: web.RequestKey[str | None] = web.RequestKey("farm_caller_key")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(request: web.Request) -> str | None:
    """The matched route's template (``/v1/videos/{videoUUID}``), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def json_error_response(error: BaseException, *, items: list[dict] | None = None) -> web.Response:
    """The platform's ``{"errors": [...]}`` for ``error``, with its HTTP status (and headers:
    ``Retry-After`` for a full queue, ``WWW-Authenticate`` for a missing key).

    ``items`` replaces the error objects of ``error`` (an answer where every task failed lists
    them all, under the status of the last).
    """
    info = error_info(error)
    headers: dict[str, str] = {}
    if isinstance(error, QueueFullError):
        headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
    if isinstance(error, UnauthenticatedError):
        headers["WWW-Authenticate"] = "Bearer"
    body = json.dumps({"errors": error_items(error) if items is None else items})
    return web.Response(text=body, status=info.http_status, content_type="application/json", headers=headers)


def metrics_middleware(metrics: Any) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Counts every answer of a matched route by route template and status.

    ``metrics``: a ``FarmMetrics``, a callable returning one (read per request), or None.
    """
    source: MetricsSource = metrics if callable(metrics) else (lambda: metrics)

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route, target = _route(request), source()
            if route is not None and target is not None:
                try:
                    target.http_request(route, status)
                except Exception:  # metrics must never fail a request
                    log.exception("metrics.http_request failed")

    return count


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Farm errors as the platform's error body with the class's status; a bug as a short 500.

    aiohttp's own refusals (413 body too large, 405, 404 of an unknown path) keep their status but
    answer in the same JSON shape.
    """
    try:
        return await handler(request)
    except FarmError as error:
        if error_info(error).server_side:
            log.warning("%s %s failed: %s", request.method, _route(request) or "?", error, exc_info=error)
        return json_error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = {
            "errors": [
                {
                    "code": _HTTP_CODES.get(exc.status, "httpError"),
                    "message": clip(exc.reason or "request refused", ECHO_MAX_CHARS),
                    "parameter": "",
                    "taskUUID": "",
                    "retryable": exc.status >= 500,
                }
            ]
        }
        return web.json_response(
            body, status=exc.status, headers={k: v for k, v in exc.headers.items() if k == "Allow"}
        )
    except (asyncio.CancelledError, GeneratorExit):
        raise
    except Exception:
        log.exception("%s %s failed", request.method, _route(request) or "?")
        return json_error_response(RuntimeError("internal"))


#: JSON error codes of aiohttp's own refusals.
_HTTP_CODES = {
    404: "notFound",
    405: "methodNotAllowed",
    413: "payloadTooLarge",
    415: "unsupportedMediaType",
}


def auth_middleware(api_keys: ApiKeys, routes: Collection[str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Authenticates requests to ``routes`` (route templates); the key goes to ``request[CALLER_KEY]``.

    Other routes (result downloads: their UUID is the capability; health; metrics) need no key.
    """
    protected = frozenset(routes)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _route(request) in protected:
            request[CALLER_KEY] = api_keys.authenticate(request.headers.get("Authorization"))
        return await handler(request)

    return authenticate
