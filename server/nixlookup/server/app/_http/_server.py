"""The HTTP front's transport: a standard-library HTTP/1.1 server, its connections, TLS and body limits.

Theory of operation:
- `make_server` binds a `ThreadingHTTPServer` (IPv4 or IPv6 by the address; no reverse-DNS lookup of it
  at start): one thread per connection, keep-alive, TCP_NODELAY. It knows nothing of checks: each POST to
  one of its ``routes`` is read and handed to its ``answer`` callable (path, body, Authorization header,
  peer), whose status and JSON document it writes back; everything else is a JSON 404 or 405.
- What is refused here, before anything is parsed: a body without a Content-Length (411), one that is
  not a number (400), one over `HTTP_MAX_BODY_BYTES` (413 naming it; with ``Expect: 100-continue``
  before the client sends it, else after reading and dropping it up to `DRAIN_BYTES` so the client sees
  the answer, not a reset). A client has `HTTP_IDLE_SECONDS` to send its request.
- TLS (`TlsContexts`): the context of new connections is rebuilt when ``--tls-cert`` or ``--tls-key``
  changes on disk, as the gRPC listener's (`_tls`) is; the handshake runs on the connection's own thread,
  so a slow client never holds up ``accept``. A failed handshake or a vanished client ends its
  connection quietly (debug log).
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from nixlookup.server.app._http._json import error_document
from nixlookup.server.app._tls import FilesSignature, files_signature
from nixlookup.server.logs import get_logger

__all__ = [
    "DRAIN_BYTES",
    "HTTP_IDLE_SECONDS",
    "HTTP_MAX_BODY_BYTES",
    "Answer",
    "HttpServer",
    "TlsContexts",
    "make_server",
]

_log = get_logger("nixlookup.http")

HTTP_MAX_BODY_BYTES: Final = 4 * 1024 * 1024
"""Largest request body: 4 MiB holds ~200k numbers written as text (the gRPC message limit's order), so
``--max-batch`` (the service's own count limit, also a 400 naming it) is the one a batch meets first."""
HTTP_IDLE_SECONDS: Final = 10.0
"""How long a connection may take to send a request (and stay open idle between keep-alive requests)."""
DRAIN_BYTES: Final = 16 * HTTP_MAX_BODY_BYTES
"""An oversized body up to this size is read and dropped before the 413; a larger one ends the connection."""

_JSON: Final = "application/json"

Answer = Callable[[str, bytes, str | None, str], tuple[HTTPStatus, Any]]
"""(path, body, Authorization header, peer) -> (status, JSON document); never raises."""


class TlsContexts:
    """The TLS context of new connections, rebuilt when --tls-cert or --tls-key changes on disk (two
    ``stat`` calls per connection), so a renewed certificate serves HTTP as it does gRPC (`_tls`), without
    a restart. A re-read that fails keeps the context in force and logs why."""

    def __init__(self, cert: Path, key: Path) -> None:
        self._files = (cert, key)
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._context = self._load()  # a bad file refuses the start (`_tls` has checked them already)

    def _stat(self) -> FilesSignature:
        return files_signature(self._files)

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


class HttpServer(ThreadingHTTPServer):
    """`ThreadingHTTPServer` without its reverse-DNS lookup of the bound address at start (``getfqdn``:
    seconds on a host without DNS; the name is only used in CGI environments), answering its ``routes``
    through ``answer``."""

    answer: Answer
    routes: tuple[str, ...]
    tls: TlsContexts | None

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def routes_text(self) -> str:
        return "POST " + " or ".join(self.routes)


class _HttpServer6(HttpServer):
    address_family = socket.AF_INET6


def make_server(address: str, answer: Answer, routes: tuple[str, ...], tls: TlsContexts | None) -> HttpServer:
    """Bind ``HOST:PORT`` (``[v6]:PORT`` too); `OSError` when it cannot. Serve it with ``serve_forever``."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    server_class = _HttpServer6 if ":" in host else HttpServer
    server = server_class((host, int(port)), _Handler)
    server.answer, server.routes, server.tls = answer, routes, tls
    return server


class _Handler(BaseHTTPRequestHandler):
    """One connection: POST to the server's routes; everything else a JSON 404/405."""

    protocol_version = "HTTP/1.1"  # keep-alive: a dialer reuses its connection
    # TCP_NODELAY: the headers and the body are two writes; with Nagle's algorithm and the client's
    # delayed ACK the body waited ~40 ms (measured 44.7 ms per Check at 1 in flight, ~1 ms without).
    disable_nagle_algorithm = True
    timeout = HTTP_IDLE_SECONDS
    server_version = "nixlookup"
    sys_version = ""
    server: HttpServer

    def setup(self) -> None:
        tls = self.server.tls
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
        if path not in self.server.routes:
            self._send_no_such_path(path)
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._send(
                *error_document(
                    HTTPStatus.LENGTH_REQUIRED, "INVALID_ARGUMENT", "send a Content-Length header"
                )
            )
            self.close_connection = True
            return
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError(length_text)
        except ValueError:
            self._send(
                *error_document(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "Content-Length is not a number")
            )
            self.close_connection = True
            return
        if length > HTTP_MAX_BODY_BYTES:
            self._refuse_too_large(length)
            return
        body = self.rfile.read(length)
        self._send(*self.server.answer(path, body, self.headers.get("Authorization"), self._peer()))

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: refuse an oversized body before the client sends it."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > HTTP_MAX_BODY_BYTES:
            self._refuse_too_large(int(length), drain=False)
            return False
        return super().handle_expect_100()

    def _refuse_too_large(self, length: int, *, drain: bool = True) -> None:
        """413 naming the limit. The body is read and dropped first (up to `DRAIN_BYTES`), so a client
        that sends it all before reading sees the answer rather than a reset connection."""
        if drain and length <= DRAIN_BYTES:
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
        self._send(*error_document(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "RESOURCE_EXHAUSTED", message))

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path in self.server.routes:
            self._send(
                *error_document(
                    HTTPStatus.METHOD_NOT_ALLOWED, "UNIMPLEMENTED", f"{path} takes POST with JSON"
                )
            )
        else:
            self._send_no_such_path(path)

    def _send_no_such_path(self, path: str) -> None:
        message = f"no such path {path!r}; {self.server.routes_text}"
        self._send(*error_document(HTTPStatus.NOT_FOUND, "NOT_FOUND", message))

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
