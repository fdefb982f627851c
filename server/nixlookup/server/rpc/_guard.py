"""One place where every call is admitted, checked, logged, and where server errors become gRPC statuses.

`RpcGuard` is a `grpc.aio` server interceptor wrapped around every service the server hosts (Lookup,
Admin, health, reflection), so no handler does any of this itself. For each call, in order:
1. admission: `CallLimiter` counts it; past ``max_concurrent_rpcs`` (or ``max_streams`` for a streaming
   call) it ends at once with RESOURCE_EXHAUSTED naming the limit, before any work;
2. authentication, with an `Authenticator` that has an auth file: the call's principal (bearer token or
   client certificate, `Authenticator.admit`; UNAUTHENTICATED otherwise) becomes its `current_principal`
   for the handler; health needs none. What the principal may do is decided by the handlers
   (`authorize`), which know the request's caller;
3. request bytes that are not a valid message of the method's type end the call with INVALID_ARGUMENT
   (the guard decodes requests itself; grpc's deserializer failure would be an opaque INTERNAL or UNKNOWN);
4. the handler runs; a `NixlookupError` raised by it (or by the core under it) ends the call with the
   error's own ``status_code`` and its message, which names the limit, field or check that failed;
5. ``context.abort`` (grpc's AbortError), a client that went away and cancellation pass through untouched;
   anything else is a bug: logged with its traceback (masked like every log line), and the client gets
   INTERNAL with a message that says so, never the exception text (which might hold request data).
It also logs one ``rpc`` event per call at debug level: method, status code and duration.

Handlers are wrapped once per method, not per call (wrapping per call cost ~20% of unary QPS), and keep
their shape: grpc.aio tells a reader/writer handler (``async def`` using ``context.write``) from an async
generator by inspecting the function, so the wrapper of each is of the same kind.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from nixlookup.server.errors import InvalidArgumentError, NixlookupError
from nixlookup.server.logs import get_logger
from nixlookup.server.rpc._auth import Admit, Authenticator
from nixlookup.server.rpc._limits import CallLimiter

__all__ = ["RpcGuard"]

_log = get_logger("nixlookup.rpc")
_INTERNAL_MESSAGE = "internal server error; the server log has the details (no request data is echoed)"

if TYPE_CHECKING:
    _Context = aio.ServicerContext[Any, Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = aio.ServerInterceptor[Any, Any]
else:
    _Context = aio.ServicerContext
    _Handler = grpc.RpcMethodHandler
    _Interceptor = aio.ServerInterceptor

_Decode = Callable[[Any], Any]


def _decoder(method: str, deserialize: _Decode | None) -> _Decode:
    """Turn request bytes into the message; bytes that are not one are INVALID_ARGUMENT, not INTERNAL."""
    if deserialize is None:
        return lambda raw: raw
    name = method.rsplit("/", 1)[-1]

    def decode(raw: Any) -> Any:
        try:
            return deserialize(raw)
        except Exception as error:  # protobuf's DecodeError and friends: the bytes are not our message
            raise InvalidArgumentError(
                f"malformed {name} request: the bytes are not a valid protobuf message ({error})"
            ) from None

    return decode


async def _decoded_stream(requests: AsyncIterator[Any], decode: _Decode) -> AsyncIterator[Any]:
    async for raw in requests:
        yield decode(raw)


class _Call:
    """What the guard does around one method's handler: admit, authenticate, decode, map errors, log."""

    def __init__(self, method: str, handler: _Handler, limiter: CallLimiter, admit: Admit | None) -> None:
        self.method = method
        self.streaming = bool(handler.request_streaming or handler.response_streaming)
        self.request_streaming = bool(handler.request_streaming)
        self.decode = _decoder(method, handler.request_deserializer)
        self._limiter = limiter
        self._admit = admit

    def begin(self, request: Any, context: _Context) -> tuple[Any, Any]:
        """Admit the call and authenticate it (raising to refuse it): the decoded request, and the token
        to hand `end` (None without authentication)."""
        self._limiter.enter(self.streaming)
        principal_token = None
        try:
            if self._admit is not None:
                principal_token = self._admit(context)
            if self.request_streaming:
                return _decoded_stream(request, self.decode), principal_token
            return self.decode(request), principal_token
        except BaseException:
            if principal_token is not None:
                Authenticator.leave(principal_token)
            self._limiter.leave(self.streaming)
            raise

    async def fail(self, context: _Context, error: Exception) -> None:
        """End the call with the status `error` deserves; re-raise what grpc itself must see."""
        if isinstance(error, NixlookupError):
            await context.abort(error.status_code, str(error))
        if isinstance(error, aio.AbortError | grpc.RpcError) or context.done():
            raise error
        if isinstance(error, NotImplementedError):  # a generated servicer's method nobody implemented
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{self.method} is not implemented here")
        _log.error("rpc_failed", method=self.method, exc_info=error)
        await context.abort(grpc.StatusCode.INTERNAL, _INTERNAL_MESSAGE)

    def end(self, context: _Context, started: float, admitted: bool, principal_token: Any) -> None:
        if principal_token is not None:
            Authenticator.leave(principal_token)
        if admitted:
            self._limiter.leave(self.streaming)
        code = context.code()
        _log.debug(
            "rpc",
            method=self.method,
            code="OK" if code is None else str(code.name),
            ms=round((time.perf_counter() - started) * 1000, 3),
        )


def _awaitable(behavior: Callable[[Any, _Context], Any]) -> Callable[[Any, _Context], Awaitable[Any]]:
    async def call_it(request: Any, context: _Context) -> Any:
        return behavior(request, context)

    return call_it


def _guard_coroutine(call: _Call, behavior: Callable[[Any, _Context], Awaitable[Any]]) -> Any:
    """Wrap a unary-response handler, or a reader/writer streaming one (both ``async def``)."""

    async def guarded(request: Any, context: _Context) -> Any:
        started = time.perf_counter()
        admitted, principal_token = False, None
        try:
            message, principal_token = call.begin(request, context)
            admitted = True
            return await behavior(message, context)
        except Exception as error:
            await call.fail(context, error)
            raise
        finally:
            call.end(context, started, admitted, principal_token)

    return guarded


def _guard_generator(call: _Call, behavior: Callable[[Any, _Context], AsyncIterator[Any]]) -> Any:
    """Wrap an async-generator streaming handler."""

    async def guarded(request: Any, context: _Context) -> AsyncIterator[Any]:
        started = time.perf_counter()
        admitted, principal_token = False, None
        try:
            message, principal_token = call.begin(request, context)
            admitted = True
            async for response in behavior(message, context):
                yield response
        except Exception as error:
            await call.fail(context, error)
            raise
        finally:
            call.end(context, started, admitted, principal_token)

    return guarded


_FACTORIES = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


class RpcGuard(_Interceptor):
    """Admits, checks, maps errors and logs each call; see the module docstring."""

    def __init__(self, limiter: CallLimiter, authenticator: Authenticator | None = None) -> None:
        self._limiter = limiter
        self._authenticator = authenticator
        # method -> (the handler grpc gave us, our guarded handler): handlers are per method, not per call.
        self._guarded: dict[str, tuple[_Handler, _Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        handler: _Handler | None = await continuation(handler_call_details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED (its stubs omit the None)
            return None  # type: ignore[return-value]
        method = handler_call_details.method
        cached = self._guarded.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = self._wrap(method, handler)
        self._guarded[method] = (handler, guarded)
        return guarded

    def _wrap(self, method: str, handler: _Handler) -> _Handler:
        authenticator = self._authenticator
        admit = (
            authenticator.admit
            if authenticator is not None and authenticator.needs_principal(method)
            else None
        )
        call = _Call(method, handler, self._limiter, admit)
        for attribute, factory in _FACTORIES:
            behavior = getattr(handler, attribute)
            if behavior is None:
                continue
            if inspect.isasyncgenfunction(behavior):
                wrapped = _guard_generator(call, behavior)
            elif inspect.iscoroutinefunction(behavior):
                wrapped = _guard_coroutine(call, behavior)
            elif attribute == "unary_unary":
                # A sync unary handler (grpcio-health-checking's Health/List, unimplemented in its aio
                # servicer): guarded too, so bad bytes are INVALID_ARGUMENT, not grpc's opaque UNKNOWN.
                wrapped = _guard_coroutine(call, _awaitable(behavior))
            else:
                return handler  # a sync streaming handler: none is served here; leave it be
            # grpc hands us the request as bytes and the guard decodes it (see `_decoder`).
            built: _Handler = factory(wrapped, response_serializer=handler.response_serializer)
            return built
        return handler
