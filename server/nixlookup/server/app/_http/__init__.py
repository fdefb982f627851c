"""`--http-listen`: Check, and a bulk check, as JSON over HTTP/1.1 for dialers that do not speak gRPC.

docs/http.md has the user's side. Three modules, in the order a request meets them:
- `_server`: the transport: a standard-library threading HTTP/1.1 server beside the grpc.aio one, its
  connections, TLS re-read on renewal, and the body and idle limits enforced before anything is parsed;
- `_json`: requests parsed into protos and answers written as JSON exactly as ``grpcurl -emit-defaults``
  prints them; a batch result unpacked into one object per number; errors in Google's JSON error form;
- `_front`: the handlers: each route answered by the gRPC listener's own `LookupServicer` on the event
  loop, as the principal its bearer token names, within the in-flight and deadline limits.
Exposure follows `app._exposure` (a non-loopback ``--http-listen`` needs ``--auth-file``, and TLS when
tokens are used, unless ``--insecure``).
"""

from __future__ import annotations

from nixlookup.server.app._http._front import (
    CHECK_BATCH_PATH,
    CHECK_PATH,
    HTTP_DEADLINE_SECONDS,
    HTTP_MAX_IN_FLIGHT,
    HttpFront,
    start_http_front,
)
from nixlookup.server.app._http._json import HTTP_STATUS
from nixlookup.server.app._http._server import HTTP_IDLE_SECONDS, HTTP_MAX_BODY_BYTES

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
