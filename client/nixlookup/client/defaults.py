"""Every default of the client and the `nixlookup` command, in one place.

`Client`, `AsyncClient`, `AdminClient`, the `nixlookup` CLI (check, wash, info, admin, lists) and the
benchmarks that drive the client all read their defaults from here; docs/client.md lists them.
"""

from __future__ import annotations

import os

__all__ = [
    "DEFAULT_ADMIN_TIMEOUT",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_DELTA_CHUNK",
    "DEFAULT_LOAD_BALANCING",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_STREAM_TIMEOUT",
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "MESSAGE_LIMIT_BYTES",
    "TARGET_ENV",
    "resolve_target",
]

DEFAULT_TARGET = "127.0.0.1:50051"
"""Where the server listens by default (`nixlookup-server serve` binds loopback port 50051)."""
TARGET_ENV = "NIXLOOKUP_TARGET"
"""The environment variable naming the server when no target is passed (`--target` on the command line)."""
DEFAULT_TIMEOUT = 5.0
"""Seconds for one Check or GetRegisterInfo, retries included: generous for a loopback or LAN call
(~1 ms), short enough that a dialer gives up on a hung server quickly."""
DEFAULT_STREAM_TIMEOUT = 3600.0
"""Seconds for one bulk stream: an hour washes billions of numbers at the measured rates."""
DEFAULT_ADMIN_TIMEOUT = 120.0
"""Seconds for one Admin call: a reload of a 30M-number text file takes tens of seconds on a busy
machine, a durable delta of 100k numbers well under one."""
DEFAULT_BATCH_SIZE = 10_000
"""Numbers per CheckStream batch: past ~10k the per-batch overhead is negligible (docs/benchmarks.md);
the server accepts up to 100k (its --max-batch)."""
DEFAULT_MAX_IN_FLIGHT = 4
"""Unanswered batches on the wire: enough to keep the server busy while the client decodes answers."""
DEFAULT_DELTA_CHUNK = 100_000
"""Numbers per ApplyDelta request: about 2 MB of texts, well under the server's 8 MiB default message
limit. A larger file becomes several deltas, each durable on its own (the CLI says so)."""
DEFAULT_LOAD_BALANCING = "round_robin"
"""gRPC's policy over the addresses a target names (``ipv4:a:p,b:p``, ``dns:///headless-service:p``, a
host name with several addresses): every call to the next replica whose health says SERVING, so load
spreads over followers and a retry moves on. With one address it behaves as ``pick_first``."""
MESSAGE_LIMIT_BYTES = 64 * 1024 * 1024
"""The client's send/receive message limit: above any batch or answer the server accepts or sends."""


def resolve_target(target: str | None = None) -> str:
    """`target` when given, else ``$NIXLOOKUP_TARGET``, else `DEFAULT_TARGET`."""
    return target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET
