"""`--http-listen`: Check, and a bulk check, as JSON over HTTP/1.1 for dialers that do not speak gRPC.

Theory of operation (docs/http.md has the user's side):
- One process, one service. A standard-library `ThreadingHTTPServer` runs beside the grpc.aio server;
  each request is read, bounded and parsed on its own HTTP thread, then answered by the *same*
  `LookupServicer` object the gRPC listener uses, on the server's event loop
  (``asyncio.run_coroutine_threadsafe``). So the rules, the ``--max-batch`` limit, metering, read-your-
  writes, "one batch, one register version" and the refusal of an expired register are the gRPC
  service's own, not a copy; only the transport differs.
- Who calls: the gRPC listener's `Authenticator` (``--auth-file``), handed the request's
  ``Authorization: Bearer TOKEN`` header as the call's metadata (`_HttpCall`), so a token means the same
  principal, callers and roles on both listeners. Client certificates are not read over HTTP: bearer
  tokens only. Exposure follows `app._exposure` (a non-loopback ``--http-listen`` needs ``--auth-file``,
  and TLS when tokens are used, unless ``--insecure``); TLS uses ``--tls-cert``/``--tls-key`` (re-read
  when they change, as the gRPC listener does), the handshake done on the request's thread so a slow
  client never holds up ``accept``.
- The JSON is protobuf's ``json_format`` with proto field names and every field printed: what
  ``grpcurl -emit-defaults`` prints for the same Check. Requests are parsed by ``json_format`` too, so
  whatever grpcurl accepts (proto or lowerCamel names, enum names or numbers, uint64 as string or
  number) is accepted, and an unknown field is a 400 naming it.
- ``POST /v1/check:batch`` takes a `CheckBatch` as JSON (``texts``, ``caller``, ``purpose``,
  ``min_version``; details are always on) and answers the batch's header (register version and date,
  lists used) with ``results``: one object per number, in order, with `CheckResponse`'s field names
  (`_batch_rows`), built from the packed result with table lookups, not per-number protos.
- Errors are Google's JSON error form ``{"error": {"code": HTTP, "status": "INVALID_ARGUMENT",
  "message": ...}}``; `HTTP_STATUS` maps each gRPC status. FAILED_PRECONDITION (an expired register, a
  follower behind) is 503: the request was fine, this server cannot answer it now, another may. Input
  that cannot be read is always a 400 naming what is wrong; 500 only for a server bug (logged).
- Limits (docs/http.md): a body of at most `HTTP_MAX_BODY_BYTES` (413 naming it; 411 without a
  Content-Length), `HTTP_MAX_IN_FLIGHT` requests at once (429), `HTTP_IDLE_SECONDS` for a client to send
  its request, `HTTP_DEADLINE_SECONDS` per answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Final

import grpc
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message

from nixlookup.server.app._assembly import ListenError, RunningServer
from nixlookup.server.app._config import ServerConfig
from nixlookup.server.app._exposure import host_of
from nixlookup.server.app._security import Security
from nixlookup.server.errors import NixlookupError
from nixlookup.server.logs import get_logger
from nixlookup.server.rpc import Authenticator, LookupServicer
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import LineType, Problem, Reason, Verdict, mask_number

__all__ = [
    "CHECK_BATCH_PATH",
    "CHECK_PATH",
    "HTTP_DEADLINE_SECONDS",
    "HTTP_IDLE_SECONDS",
    "HTTP_MAX_BODY_BYTES",
    "HTTP_MAX_IN_FLIGHT",
    "HTTP_STATUS",
    "HttpFront",
    "start_http_front",
]

_log = get_logger("nixlookup.http")

CHECK_PATH: Final = "/v1/check"
CHECK_BATCH_PATH: Final = "/v1/check:batch"

HTTP_MAX_BODY_BYTES: Final = 4 * 1024 * 1024
"""Largest request body: 4 MiB holds ~200k numbers written as text (the gRPC message limit's order), so
``--max-batch`` (the service's own count limit, also a 400 naming it) is the one a batch meets first."""
HTTP_MAX_IN_FLIGHT: Final = 64
"""Requests answered at once; one more gets 429 at once rather than a thread of its own (each waiting
request holds a thread, unlike a gRPC call on the event loop)."""
HTTP_IDLE_SECONDS: Final = 10.0
"""How long a connection may take to send a request (and stay open idle between keep-alive requests)."""
HTTP_DEADLINE_SECONDS: Final = 10.0
"""Deadline of one answer (what a read-your-writes ``min_version`` may wait within)."""

HTTP_STATUS: Final[dict[grpc.StatusCode, HTTPStatus]] = {
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.OUT_OF_RANGE: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.UNAUTHENTICATED: HTTPStatus.UNAUTHORIZED,
    grpc.StatusCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HTTPStatus.TOO_MANY_REQUESTS,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: HTTPStatus.GATEWAY_TIMEOUT,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
}
"""gRPC status -> HTTP status; anything else is 500."""

_JSON: Final = "application/json"
_DIGIT_RUNS: Final = re.compile(r"\d{5,}")


class _RefusedError(Exception):
    """An HTTP-level refusal (before the service is asked): status, gRPC status name, message."""

    def __init__(self, status: HTTPStatus, grpc_status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.grpc_status, self.message = status, grpc_status, message


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


def _names(enum: type[Verdict] | type[Reason] | type[LineType] | type[Problem]) -> list[str]:
    """Member value -> the name json_format prints (the proto's, prefix included), as a lookup table."""
    descriptor = lookup_pb2.DESCRIPTOR.enum_types_by_name[enum.__name__]
    table = [str(value) for value in range(256)]
    for value in descriptor.values:
        table[value.number] = value.name
    return table


_VERDICT_NAMES: Final = _names(Verdict)
_REASON_NAMES: Final = _names(Reason)
_LINE_TYPE_NAMES: Final = _names(LineType)
_PROBLEM_NAMES: Final = _names(Problem)
_EPOCH_DAY: Final = np.datetime64("1970-01-01", "D")
_PER_NUMBER_FIELDS: Final = (
    "blocked",
    "invalid",
    "reasons",
    "e164_le",
    "line_types",
    "mobile_flag",
    "valid_until_days_le",
    "problems",
)


def _bits(packed: bytes, count: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    unpacked = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=count, bitorder="little")
    return unpacked.view(np.bool_)


def _batch_rows(result: lookup_pb2.CheckBatchResult, sent_keys: bytes) -> list[dict[str, Any]]:
    """One `CheckResponse`-shaped object per number of a detailed batch result, in order."""
    count = result.count
    blocked, invalid = _bits(result.blocked, count), _bits(result.invalid, count)
    flags = _bits(result.mobile_flag, count) if result.mobile_flag else np.zeros(count, np.bool_)
    verdicts = np.where(invalid, Verdict.INVALID, np.where(blocked, Verdict.BLOCKED, Verdict.ALLOWED))
    zeros = np.zeros(count, np.uint8)
    problems = np.frombuffer(result.problems, np.uint8) if result.problems else zeros
    keys = np.frombuffer(result.e164_le or sent_keys, "<u8") if (result.e164_le or sent_keys) else None
    e164 = np.where(invalid, 0, keys) if keys is not None else np.zeros(count, np.uint64)
    days = np.frombuffer(result.valid_until_days_le, "<u4") if result.valid_until_days_le else zeros
    distinct, day_index = np.unique(days, return_inverse=True)
    # The batch's own valid_until (register date + 2 months) to the second, as Check gives it; other
    # days (a relationship's or consent's end) as that day's midnight UTC.
    batch_until = result.valid_until.ToJsonString() if result.HasField("valid_until") else None
    batch_day = result.valid_until.seconds // 86_400 if batch_until is not None else -1
    day_texts = [
        None
        if day == 0
        else (batch_until if day == batch_day else f"{_EPOCH_DAY + np.timedelta64(int(day), 'D')}T00:00:00Z")
        for day in distinct.tolist()
    ]
    rows = []
    for verdict, reason, problem, key, line_type, day, flag in zip(
        verdicts.tolist(),
        np.frombuffer(result.reasons, np.uint8).tolist() if result.reasons else zeros.tolist(),
        problems.tolist(),
        e164.tolist(),
        np.frombuffer(result.line_types, np.uint8).tolist() if result.line_types else zeros.tolist(),
        day_index.tolist(),
        flags.tolist(),
        strict=True,
    ):
        row: dict[str, Any] = {
            "verdict": _VERDICT_NAMES[verdict],
            "reason": _REASON_NAMES[reason],
            "problem": _PROBLEM_NAMES[problem],
            "e164": str(key),  # proto3 JSON: a uint64 is a decimal string
            "line_type": _LINE_TYPE_NAMES[line_type],
            "mobile_flag": flag,
        }
        until = day_texts[day]
        if until is not None:  # unset for INVALID, like CheckResponse.valid_until
            row["valid_until"] = until
        rows.append(row)
    return rows


def _to_json(message: Message) -> dict[str, Any]:
    """What ``grpcurl -emit-defaults`` prints: proto field names, every field without presence."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _parse(body: bytes, message: Message) -> None:
    """Fill `message` from a JSON body, or raise a 400 naming what is wrong."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise _RefusedError(
            HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", f"the body is not JSON: {error}"
        ) from None
    if not isinstance(document, dict):
        raise _RefusedError(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "the body must be a JSON object")
    try:
        json_format.ParseDict(document, message)
    except (json_format.ParseError, TypeError, ValueError) as error:
        text = _DIGIT_RUNS.sub(lambda run: mask_number(run.group()), str(error))  # it may echo a number
        raise _RefusedError(
            HTTPStatus.BAD_REQUEST,
            "INVALID_ARGUMENT",
            f"the body is not a {message.DESCRIPTOR.name}: {text[:300]}",
        ) from None


class HttpFront:
    """The HTTP/JSON listener: started by `start`, stopped by `close` (both from the event loop's thread)."""

    def __init__(
        self,
        address: str,
        lookup: LookupServicer,
        authenticator: Authenticator,
        loop: asyncio.AbstractEventLoop,
        *,
        tls: _TlsContexts | None = None,
    ) -> None:
        self._lookup = lookup
        self._authenticator = authenticator
        self._loop = loop
        self._in_flight = threading.BoundedSemaphore(HTTP_MAX_IN_FLIGHT)
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, int(port)), _Handler)
        self._server.front = self  # type: ignore[attr-defined]
        self._server.tls = tls  # type: ignore[attr-defined]
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
            return _error(
                HTTPStatus.TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                f"over the HTTP front's limit of {HTTP_MAX_IN_FLIGHT} requests at once "
                "(HTTP_MAX_IN_FLIGHT); retry shortly",
            )
        try:
            return HTTPStatus.OK, self._answer(path, body, _HttpCall(authorization, peer))
        except _RefusedError as refusal:
            return _error(refusal.status, refusal.grpc_status, refusal.message)
        except NixlookupError as error:
            status = HTTP_STATUS.get(error.status_code, HTTPStatus.INTERNAL_SERVER_ERROR)
            return _error(status, error.status_code.name, str(error))
        except TimeoutError:
            return _error(
                HTTPStatus.GATEWAY_TIMEOUT,
                "DEADLINE_EXCEEDED",
                f"no answer within {HTTP_DEADLINE_SECONDS:g} s (HTTP_DEADLINE_SECONDS)",
            )
        except Exception:
            _log.exception("http_internal_error", path=path, peer=peer)
            return _error(
                HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL", "internal error (logged by the server)"
            )
        finally:
            self._in_flight.release()

    def _answer(self, path: str, body: bytes, call: _HttpCall) -> Any:
        if path == CHECK_PATH:
            request = lookup_pb2.CheckRequest()
            _parse(body, request)
            response = self._on_loop(call, lambda: self._lookup.Check(request, call))  # type: ignore[arg-type]
            return _to_json(response)
        batch = lookup_pb2.CheckBatch()
        _parse(body, batch)
        batch.want_details = True

        async def one_batch() -> AsyncIterator[lookup_pb2.CheckBatch]:
            yield batch

        async def stream() -> None:
            await self._lookup.CheckStream(one_batch(), call)  # type: ignore[arg-type]

        self._on_loop(call, stream)
        (result,) = call.written
        assert isinstance(result, lookup_pb2.CheckBatchResult)
        document = _to_json(result)
        for name in _PER_NUMBER_FIELDS:  # they are in `results`, per number
            document.pop(name, None)
        document["results"] = _batch_rows(result, batch.e164_le)
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


def _error(status: HTTPStatus, grpc_status: str, message: str) -> tuple[HTTPStatus, Any]:
    return status, {"error": {"code": int(status), "status": grpc_status, "message": message}}


class _TlsContexts:
    """The TLS context of new connections, rebuilt when --tls-cert or --tls-key changes on disk (two
    ``stat`` calls per connection), so a renewed certificate serves HTTP as it does gRPC (`_tls`), without
    a restart. A re-read that fails keeps the context in force and logs why."""

    def __init__(self, cert: Path, key: Path) -> None:
        self._files = (cert, key)
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._context = self._load()  # a bad file refuses the start (`_tls` has checked them already)

    def _stat(self) -> tuple[tuple[int, int], ...]:
        signature = []
        for path in self._files:
            try:
                found = path.stat()
                signature.append((found.st_size, found.st_mtime_ns))
            except OSError:
                signature.append((-1, -1))
        return tuple(signature)

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self._files)
        return context

    def current(self) -> ssl.SSLContext:
        signature = self._stat()
        if signature != self._signature:
            with self._lock:
                try:
                    self._context = self._load()
                    _log.info("http_tls_reloaded", cert=str(self._files[0]))
                except (OSError, ssl.SSLError) as error:
                    _log.error("http_tls_reload_failed", error=str(error), kept="the certificate in force")
                self._signature = signature
        return self._context


class _Server(ThreadingHTTPServer):
    """`ThreadingHTTPServer` without its reverse-DNS lookup of the bound address at start (``getfqdn``:
    seconds on a host without DNS); the name is only used in CGI environments."""

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """One connection: POST /v1/check and /v1/check:batch; everything else a JSON 404/405."""

    protocol_version = "HTTP/1.1"  # keep-alive: a dialer reuses its connection
    # TCP_NODELAY: the headers and the body are two writes; with Nagle's algorithm and the client's
    # delayed ACK the body waited ~40 ms (measured 44.7 ms per Check at 1 in flight, ~1 ms without).
    disable_nagle_algorithm = True
    timeout = HTTP_IDLE_SECONDS
    server_version = "nixlookup"
    sys_version = ""
    _ROUTES: ClassVar = (CHECK_PATH, CHECK_BATCH_PATH)

    def setup(self) -> None:
        tls: _TlsContexts | None = self.server.tls  # type: ignore[attr-defined]
        if tls is not None:
            self.request.settimeout(HTTP_IDLE_SECONDS)
            context = tls.current()
            self.request = context.wrap_socket(self.request, server_side=True)  # handshake on this thread
        super().setup()

    def handle(self) -> None:
        try:
            super().handle()
        except (ssl.SSLError, OSError) as error:  # a failed handshake or a vanished client
            _log.debug("http_connection_error", peer=self._peer(), error=type(error).__name__)

    def _peer(self) -> str:
        host, port = self.client_address[:2]
        return f"ipv6:[{host}]:{port}" if ":" in str(host) else f"ipv4:{host}:{port}"

    def do_POST(self) -> None:
        path = self.path.partition("?")[0]
        if path not in self._ROUTES:
            self._send(*_error(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"no such path {path!r}; {_ROUTES_TEXT}"))
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._send(
                *_error(HTTPStatus.LENGTH_REQUIRED, "INVALID_ARGUMENT", "send a Content-Length header")
            )
            self.close_connection = True
            return
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError(length_text)
        except ValueError:
            self._send(*_error(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "Content-Length is not a number"))
            self.close_connection = True
            return
        if length > HTTP_MAX_BODY_BYTES:
            self._refuse_too_large(length)
            return
        body = self.rfile.read(length)
        front: HttpFront = self.server.front  # type: ignore[attr-defined]
        self._send(*front.answer(path, body, self.headers.get("Authorization"), self._peer()))

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: refuse an oversized body before the client sends it."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > HTTP_MAX_BODY_BYTES:
            self._refuse_too_large(int(length), drain=False)
            return False
        return super().handle_expect_100()

    def _refuse_too_large(self, length: int, *, drain: bool = True) -> None:
        """413 naming the limit. The body is read and dropped first (up to `_DRAIN_BYTES`), so a client
        that sends it all before reading sees the answer rather than a reset connection."""
        if drain and length <= _DRAIN_BYTES:
            left = length
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        message = (
            f"the body is {length} bytes, over the limit of {HTTP_MAX_BODY_BYTES} (HTTP_MAX_BODY_BYTES); "
            "split the numbers into smaller batches"
        )
        self.close_connection = True
        self._send(*_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "RESOURCE_EXHAUSTED", message))

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path in self._ROUTES:
            self._send(
                *_error(HTTPStatus.METHOD_NOT_ALLOWED, "UNIMPLEMENTED", f"{path} takes POST with JSON")
            )
        else:
            self._send(*_error(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"no such path {path!r}; {_ROUTES_TEXT}"))

    def _send(self, status: HTTPStatus, document: Any) -> None:
        data = json.dumps(document, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{_JSON}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if status is HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="nixlookup"')
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """http.server logs every request to stderr; the server's structured log has its own events."""


_ROUTES_TEXT: Final = f"POST {CHECK_PATH} or {CHECK_BATCH_PATH}"
_DRAIN_BYTES: Final = 16 * HTTP_MAX_BODY_BYTES
"""An oversized body up to this size is read and dropped before the 413; a larger one ends the connection."""


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
    context = _TlsContexts(security.tls.files.cert, security.tls.files.key) if security.tls else None
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
