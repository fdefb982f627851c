"""One place where server errors become gRPC statuses, and where every RPC is logged.

`RpcGuard` is a server interceptor wrapped around every service the server hosts (Lookup, Admin, health,
reflection), so no handler maps errors itself:
- a `NixlookupError` raised by a handler (or by the core under it) ends the call with the error's own
  ``status_code`` and its message, which names the limit, field or check that failed;
- request bytes that are not a valid message of the method's type end the call with INVALID_ARGUMENT
  (the guard decodes requests itself; grpc's deserializer failure would be an opaque INTERNAL);
- a handler that already called ``context.abort`` and a client that went away (``grpc.RpcError`` from the
  request iterator) pass through untouched;
- anything else is a bug: it is logged with its traceback (masked like every log line) and the client gets
  INTERNAL with a message that says so, never the exception text (which might hold request data).
It also logs one ``rpc`` event per call at debug level: method, status code and duration.

With an `Authenticator` that has an auth file, the guard is also the one per-RPC authentication hook:
before the handler runs it finds the call's principal (`Authenticator.admit`: bearer token or client
certificate, UNAUTHENTICATED otherwise) and makes it the call's `current_principal`; health needs none.
What the principal may do is decided by the handlers (`authorize`), which know the request's caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from nixlookup.server.errors import InvalidArgumentError, NixlookupError
from nixlookup.server.logs import get_logger
from nixlookup.server.rpc._auth import Admit, Authenticator

__all__ = ["RpcGuard"]

_log = get_logger("nixlookup.rpc")
_INTERNAL_MESSAGE = "internal server error; the server log has the details (no request data is echoed)"


def _code_name(context: grpc.ServicerContext) -> str:
    code = context.code()  # type: ignore[attr-defined]
    return "OK" if code is None else str(code.name)


def _fail(context: grpc.ServicerContext, method: str, error: Exception) -> None:
    """End the call with the status `error` deserves; re-raise what grpc itself must see."""
    if isinstance(error, NixlookupError):
        context.abort(error.status_code, str(error))
    if isinstance(error, grpc.RpcError) or context.code() is not None:  # type: ignore[attr-defined]
        raise error
    _log.error("rpc_failed", method=method, exc_info=error)
    context.abort(grpc.StatusCode.INTERNAL, _INTERNAL_MESSAGE)


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


def _decoded_stream(requests: Iterator[Any], decode: _Decode) -> Iterator[Any]:
    for raw in requests:
        yield decode(raw)


def _guard_unary(
    method: str,
    behavior: Callable[[Any, grpc.ServicerContext], Any],
    decode: _Decode,
    streaming_in: bool,
    admit: Admit | None,
) -> Any:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        admitted = None
        try:
            if admit is not None:
                admitted = admit(context)
            message = _decoded_stream(request, decode) if streaming_in else decode(request)
            return behavior(message, context)
        except Exception as error:
            _fail(context, method, error)
            raise
        finally:
            if admitted is not None:
                Authenticator.leave(admitted)
            _log.debug(
                "rpc",
                method=method,
                code=_code_name(context),
                ms=round((time.perf_counter() - started) * 1000, 3),
            )

    return guarded


def _guard_streaming(
    method: str,
    behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
    decode: _Decode,
    streaming_in: bool,
    admit: Admit | None,
) -> Any:
    def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started = time.perf_counter()
        admitted = None
        try:
            if admit is not None:
                admitted = admit(context)
            message = _decoded_stream(request, decode) if streaming_in else decode(request)
            yield from behavior(message, context)
        except Exception as error:
            _fail(context, method, error)
            raise
        finally:
            if admitted is not None:
                Authenticator.leave(admitted)
            _log.debug(
                "rpc",
                method=method,
                code=_code_name(context),
                ms=round((time.perf_counter() - started) * 1000, 3),
            )

    return guarded


if TYPE_CHECKING:
    _Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.ServerInterceptor[Any, Any]
else:
    _Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.ServerInterceptor


class RpcGuard(_Interceptor):
    """Maps errors to statuses and logs each call; see the module docstring."""

    def __init__(self, authenticator: Authenticator | None = None) -> None:
        self._authenticator = authenticator
        # method -> (the handler grpc gave us, our guarded handler). Building the guarded handler per
        # call cost ~20% of unary QPS (measured at 8 in flight); a dict lookup costs nothing.
        self._guarded: dict[str, tuple[_Handler, _Handler]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], _Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._guarded.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]  # handlers are per method, not per call: wrap each once
        guarded = self._wrap(method, handler)
        self._guarded[method] = (handler, guarded)
        return guarded

    def _wrap(self, method: str, handler: _Handler) -> _Handler:
        # grpc gets the request as bytes and we decode it, so a malformed message is INVALID_ARGUMENT
        # naming the request type (grpc's own deserializer failure would be an opaque INTERNAL).
        decode = _decoder(method, handler.request_deserializer)
        authenticator = self._authenticator
        admit = (
            authenticator.admit
            if authenticator is not None and authenticator.needs_principal(method)
            else None
        )
        serializer = {"response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _guard_unary(method, handler.unary_unary, decode, False, admit), **serializer
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _guard_unary(method, handler.stream_unary, decode, True, admit), **serializer
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _guard_streaming(method, handler.unary_stream, decode, False, admit), **serializer
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _guard_streaming(method, handler.stream_stream, decode, True, admit), **serializer
            )
        return handler
