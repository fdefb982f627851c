"""The HTTP front's handlers: each route answered by the gRPC listener's own servicer, as its principal.

Theory of operation:
- One process, one service. The HTTP server (`_server`) runs beside the grpc.aio server; each request is
  read, bounded and parsed on its own HTTP thread, then answered by the *same* `LookupServicer` object the
  gRPC listener uses, on the server's event loop (``asyncio.run_coroutine_threadsafe``). So the rules,
  the ``--max-batch`` limit, metering, read-your-writes, "one batch, one register version" and the
  refusal of an expired register are the gRPC service's own, not a copy; only the transport differs.
- Who calls: the gRPC listener's `Authenticator` (``--auth-file``) admits the call on the loop, handed
  the request's ``Authorization: Bearer TOKEN`` header as the call's metadata (`_HttpCall`), so a token
  means the same principal, callers and roles on both listeners. Client certificates are not read over
  HTTP: bearer tokens only.
- Routes are one table (``HttpFront._routes``: path -> handler; the transport serves its keys).
  ``POST /v1/check`` is a `CheckRequest` -> `CheckResponse`. ``POST /v1/check:batch`` takes a
  `CheckBatch` (details always on), runs it as a one-batch CheckStream and answers the batch's header
  (register version and date, lists used) with ``results``, one object per number (`batch_rows`).
- `HttpFront.answer` never raises: a refusal is its status (`HTTP_STATUS` for the service's errors), a
  server bug a logged 500. At most `HTTP_MAX_IN_FLIGHT` requests are answered at once (one more is a 429
  at once), each within `HTTP_DEADLINE_SECONDS` (a 504 naming it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any, Final

from google.protobuf.message import Message

from nixlookup.server.app._assembly import ListenError, RunningServer
from nixlookup.server.app._config import ServerConfig
from nixlookup.server.app._exposure import host_of
from nixlookup.server.app._http._json import (
    HTTP_STATUS,
    PER_NUMBER_FIELDS,
    RefusedError,
    batch_rows,
    error_document,
    parse,
    to_json,
)
from nixlookup.server.app._http._server import TlsContexts, make_server
from nixlookup.server.app._security import Security
from nixlookup.server.errors import NixlookupError
from nixlookup.server.logs import get_logger
from nixlookup.server.rpc import Authenticator, LookupServicer
from nixlookup.v1 import lookup_pb2

__all__ = [
    "CHECK_BATCH_PATH",
    "CHECK_PATH",
    "HTTP_DEADLINE_SECONDS",
    "HTTP_MAX_IN_FLIGHT",
    "HttpFront",
    "start_http_front",
]

_log = get_logger("nixlookup.http")

CHECK_PATH: Final = "/v1/check"
CHECK_BATCH_PATH: Final = "/v1/check:batch"

HTTP_MAX_IN_FLIGHT: Final = 64
"""Requests answered at once; one more gets 429 at once rather than a thread of its own (each waiting
request holds a thread, unlike a gRPC call on the event loop)."""
HTTP_DEADLINE_SECONDS: Final = 10.0
"""Deadline of one answer (what a read-your-writes ``min_version`` may wait within)."""


class _HttpCall:
    """What the authenticator and the servicer read of a call, for one HTTP request."""

    def __init__(self, authorization: str | None, peer: str) -> None:
        self._metadata = (("authorization", authorization),) if authorization is not None else ()
        self._peer = peer
        self._deadline = time.monotonic() + HTTP_DEADLINE_SECONDS
        self.written: list[Message] = []

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}  # bearer tokens only: client certificates are not read over HTTP

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    async def write(self, message: Message) -> None:  # a stream's results (CheckStream)
        self.written.append(message)


class HttpFront:
    """The HTTP/JSON listener: started by `start`, stopped by `close` (both from the event loop's thread)."""

    def __init__(
        self,
        address: str,
        lookup: LookupServicer,
        authenticator: Authenticator,
        loop: asyncio.AbstractEventLoop,
        *,
        tls: TlsContexts | None = None,
    ) -> None:
        self._lookup = lookup
        self._authenticator = authenticator
        self._loop = loop
        self._in_flight = threading.BoundedSemaphore(HTTP_MAX_IN_FLIGHT)
        self._routes: dict[str, Callable[[bytes, _HttpCall], Any]] = {
            CHECK_PATH: self._check,
            CHECK_BATCH_PATH: self._check_batch,
        }
        """Path -> handler (a POST's body -> its JSON document): the one table of what the front serves."""
        self._server = make_server(address, self.answer, tuple(self._routes), tls)
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self.tls = tls is not None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HttpFront:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting; requests in progress finish on their own threads."""
        self._server.shutdown()
        self._server.server_close()

    # -- answering (on the HTTP threads) ----------------------------------------------------------------
    def answer(self, path: str, body: bytes, authorization: str | None, peer: str) -> tuple[HTTPStatus, Any]:
        """The status and JSON document for one request; never raises."""
        if not self._in_flight.acquire(blocking=False):
            return error_document(
                HTTPStatus.TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                f"over the HTTP front's limit of {HTTP_MAX_IN_FLIGHT} requests at once "
                "(HTTP_MAX_IN_FLIGHT); retry shortly",
            )
        try:
            return HTTPStatus.OK, self._routes[path](body, _HttpCall(authorization, peer))
        except RefusedError as refusal:
            return error_document(refusal.status, refusal.grpc_status, refusal.message)
        except NixlookupError as error:
            status = HTTP_STATUS.get(error.status_code, HTTPStatus.INTERNAL_SERVER_ERROR)
            return error_document(status, error.status_code.name, str(error))
        except TimeoutError:
            return error_document(
                HTTPStatus.GATEWAY_TIMEOUT,
                "DEADLINE_EXCEEDED",
                f"no answer within {HTTP_DEADLINE_SECONDS:g} s (HTTP_DEADLINE_SECONDS)",
            )
        except Exception:
            _log.exception("http_internal_error", path=path, peer=peer)
            return error_document(
                HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL", "internal error (logged by the server)"
            )
        finally:
            self._in_flight.release()

    def _check(self, body: bytes, call: _HttpCall) -> Any:
        request = lookup_pb2.CheckRequest()
        parse(body, request)
        response = self._on_loop(call, lambda: self._lookup.Check(request, call))  # type: ignore[arg-type]
        return to_json(response)

    def _check_batch(self, body: bytes, call: _HttpCall) -> Any:
        batch = lookup_pb2.CheckBatch()
        parse(body, batch)
        batch.want_details = True

        async def one_batch() -> AsyncIterator[lookup_pb2.CheckBatch]:
            yield batch

        async def stream() -> None:
            await self._lookup.CheckStream(one_batch(), call)  # type: ignore[arg-type]

        self._on_loop(call, stream)
        (result,) = call.written
        assert isinstance(result, lookup_pb2.CheckBatchResult)
        document = to_json(result)
        for name in PER_NUMBER_FIELDS:  # they are in `results`, per number
            document.pop(name, None)
        document["results"] = batch_rows(result, batch.e164_le)
        return document

    def _on_loop(self, call: _HttpCall, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run `work` on the server's event loop as `call`'s principal; its result, or its error."""

        async def admitted() -> Any:
            token = self._authenticator.admit(call)
            try:
                return await work()
            finally:
                self._authenticator.leave(token)

        future = asyncio.run_coroutine_threadsafe(admitted(), self._loop)
        try:
            return future.result(timeout=HTTP_DEADLINE_SECONDS + 1.0)
        except TimeoutError:
            future.cancel()
            raise


def start_http_front(
    config: ServerConfig, running: RunningServer, security: Security, stop_hooks: list[Callable[[], None]]
) -> HttpFront | None:
    """Start the HTTP front on ``--http-listen`` (none: no front), answering through `running`'s Lookup
    servicer with `security`'s principals and TLS; it stops with the other listeners (`stop_hooks`).
    `ListenError` naming the flag when it cannot bind. Called on the event loop's thread."""
    if config.http_listen is None:
        return None
    if running.lookup is None:
        raise ListenError("--http-listen: this server serves no Lookup service to answer through")
    context = TlsContexts(security.tls.files.cert, security.tls.files.key) if security.tls else None
    loop = asyncio.get_running_loop()
    try:
        front = HttpFront(config.http_listen, running.lookup, security.authenticator, loop, tls=context)
    except OSError as error:
        raise ListenError(
            f"--http-listen {config.http_listen}: cannot listen there ({error.strerror or error}); "
            "pick another HOST:PORT with --http-listen or NIXLOOKUP_HTTP_LISTEN"
        ) from None
    front.start()
    stop_hooks.append(front.close)
    host = host_of(config.http_listen)
    shown = f"[{host}]" if ":" in host else host
    _log.info("http_serving", listen=f"{shown}:{front.port}", tls=front.tls)
    return front
