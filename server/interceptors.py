"""One place where server errors become gRPC statuses, and where every RPC is logged.

`RpcGuard` is a server interceptor wrapped around every service the server hosts (Lookup, Admin, health,
reflection), so no handler maps errors itself:
- a `NixlookupError` raised by a handler (or by the core under it) ends the call with the error's own
  ``status_code`` and its message, which names the limit, field or check that failed;
- a handler that already called ``context.abort`` and a client that went away (``grpc.RpcError`` from the
  request iterator) pass through untouched;
- anything else is a bug: it is logged with its traceback (masked like every log line) and the client gets
  INTERNAL with a message that says so, never the exception text (which might hold request data).
It also logs one ``rpc`` event per call at debug level: method, status code and duration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from nixlookup.server.errors import NixlookupError
from nixlookup.server.logs import get_logger

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


def _guard_unary(method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Any:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            return behavior(request, context)
        except Exception as error:
            _fail(context, method, error)
            raise
        finally:
            _log.debug(
                "rpc",
                method=method,
                code=_code_name(context),
                ms=round((time.perf_counter() - started) * 1000, 3),
            )

    return guarded


def _guard_streaming(method: str, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]]) -> Any:
    def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started = time.perf_counter()
        try:
            yield from behavior(request, context)
        except Exception as error:
            _fail(context, method, error)
            raise
        finally:
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

    def __init__(self) -> None:
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
        common: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(_guard_unary(method, handler.unary_unary), **common)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(_guard_unary(method, handler.stream_unary), **common)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _guard_streaming(method, handler.unary_stream), **common
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _guard_streaming(method, handler.stream_stream), **common
            )
        return handler
