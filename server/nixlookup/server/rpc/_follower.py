"""A follower's side of replication: stream from the writer, apply at sync points, reconnect, report lag.

Theory of operation:
- `Follower` runs one thread that opens ``Replication/Replicate`` on the writer with the versions the
  `Replica` holds (so a reconnect resumes: only what is missing comes, or a list whole when the writer's
  journal no longer reaches back), joins parts into changes, buffers them in the `Replica` and swaps them
  in at each sync point. It uses its own sync grpc channel, so it is the same under any server model.
- Failures never reach the answers: a broken stream, a writer that restarts, a change that does not
  verify (`ReplicaDivergedError`, after which the list is resent whole) all leave the last consistent
  state serving. The thread reconnects with exponential backoff and jitter (`backoff_seconds`).
- A stream that goes silent (no change, no heartbeat) for `stall_seconds` is cancelled and reopened: a
  vanished writer host or a half-open connection is found without relying on TCP.
- Lag (`lag_seconds`): while sync points keep arriving (at least one per `HEARTBEAT_SECONDS`), the
  delay between the writer acknowledging the changes of the last sync point and this follower serving
  them (writer and follower clocks; 0 after a heartbeat with nothing new); once none has come for 1.5
  heartbeats, the time since the last one. Before the first sync point it is infinite.
- A follower is a principal: it presents `FollowerSettings.credentials` (TLS) and `metadata` (a bearer
  token), or what `credential_source` answers at every (re)connect (`WriterCredentials`: the server's
  ``--follow-*`` files, so a rotated token file or CA is used from the next stream on). A writer that
  refuses it (UNAUTHENTICATED, PERMISSION_DENIED: no principal with role ``replicate``; UNIMPLEMENTED:
  that address does not serve Replication) is logged as ``replication_refused`` with what to change, and
  retried at the longest backoff; the follower stays NOT_SERVING until a stream is allowed and its first
  snapshot is in.
- Readiness: `on_ready(bool)` is called on each change of "has a whole writer state and lag is within
  ``max_lag_seconds``"; the server turns it into the health status of Lookup (NOT_SERVING until the
  first snapshot is in, and while too far behind).
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from nixlookup.server.errors import NixlookupError
from nixlookup.server.logs import get_logger
from nixlookup.server.rpc._replication import HEARTBEAT_SECONDS, STALL_SECONDS, ChangeAssembler, positions
from nixlookup.server.store import Replica, ReplicaDivergedError
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = [
    "DEFAULT_MAX_LAG_SECONDS",
    "Follower",
    "FollowerSettings",
    "WriterCredentials",
    "WriterCredentialsError",
]

_log = get_logger("nixlookup.follower")

DEFAULT_MAX_LAG_SECONDS = 10.0
"""A follower more than this far behind its writer reports NOT_SERVING (leaves the load balancer's
rotation) until it has caught up; 10 s is ten heartbeats, far above the ~10-100 ms a healthy one lags."""
MAX_RECEIVE_BYTES = 64 * 1024 * 1024
"""Replication messages are split into parts of ~3 MiB; this ceiling only guards against a writer of
another version sending larger ones."""


_REFUSAL_HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: "the writer has an auth file and does not know this follower: give "
    "--follow-token-file a token (or --follow-cert/--follow-key a certificate) of a principal with role "
    "replicate",
    grpc.StatusCode.PERMISSION_DENIED: "the writer knows this follower's principal but it lacks role "
    "replicate: add it in the writer's auth file (re-read on SIGHUP)",
    grpc.StatusCode.UNIMPLEMENTED: "the writer does not serve Replication at this address: follow its "
    "--admin-listen address (Replication is served where Admin is)",
}
"""Answers that retrying alone will not change, and what the operator changes instead."""


@dataclass(frozen=True, slots=True)
class WriterCredentials:
    """What a follower presents to its writer on one connection."""

    channel: grpc.ChannelCredentials | None = None
    """TLS channel credentials (the CA to verify the writer by, a client certificate for mTLS); None:
    plaintext."""
    metadata: tuple[tuple[str, str], ...] | None = None
    """``authorization: Bearer TOKEN`` when a token is configured."""


class WriterCredentialsError(NixlookupError):
    """A follower's credential file (token, CA, certificate, key) cannot be read or is not what it should
    be; the message names the flag and the file."""


@dataclass(frozen=True, slots=True)
class FollowerSettings:
    """Where to follow and how patiently; each is explained where it is set."""

    writer: str
    """The writer's address, HOST:PORT (or any grpc target)."""
    name: str = ""
    """Shown in the writer's log (host or pod name)."""
    max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS
    backoff_initial_seconds: float = 0.2
    """First pause before reconnecting; doubled on each failure in a row..."""
    backoff_max_seconds: float = 5.0
    """...up to this, with +-20% jitter so followers of a restarted writer do not reconnect in step."""
    stall_seconds: float = STALL_SECONDS
    credentials: grpc.ChannelCredentials | None = None
    """TLS (or mTLS) to the writer; None: plaintext."""
    metadata: tuple[tuple[str, str], ...] = ()
    """Sent with the stream: the bearer token of a principal with role `replicate`."""
    callers: tuple[str, ...] = ()
    """Only these callers' lists (`ReplicateRequest.callers`); empty: every list the principal may see."""
    credential_source: Callable[[], WriterCredentials] | None = None
    """When set, asked at each (re)connect instead of `credentials` / `metadata` (the server's
    ``--follow-*`` files, re-read so a rotated token or certificate is used on the next stream); may raise
    `WriterCredentialsError` (a file became unreadable): logged, retried."""


class Follower:
    """Keeps a `Replica` in step with the writer; see the module doc."""

    def __init__(self, replica: Replica, settings: FollowerSettings) -> None:
        self.replica = replica
        self.settings = settings
        self._on_ready: Callable[[bool], None] | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._call: Any = None  # the running Replicate call (cancellable), None between streams
        self._call_lock = threading.Lock()
        self._last_event = time.monotonic()
        self._last_sync: float | None = None
        self._sync_lag = 0.0
        self._ready = False
        self.scope: lookup_pb2.ReplicationScope | None = None
        """What the current stream carries (its first event): whose lists, how a check resolves."""
        self.reconnects = 0
        """Streams reopened after a failure (a metric)."""

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self, on_ready: Callable[[bool], None] | None = None) -> None:
        """Start following; `on_ready(bool)` hears each change of readiness (from the follower's threads)."""
        self._on_ready = on_ready
        self._thread = threading.Thread(target=self._run, name="follower", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="follower-watchdog", daemon=True)
        self._thread.start()
        self._watchdog.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._cancel_call()
        for thread in (self._thread, self._watchdog):
            if thread is not None:
                thread.join(timeout)

    # -- what the server reads ----------------------------------------------------------------------
    def lag_seconds(self) -> float:
        if self._last_sync is None:
            return math.inf
        silent = time.monotonic() - self._last_sync
        if silent > 1.5 * HEARTBEAT_SECONDS:
            return silent
        return self._sync_lag

    def seconds_since_sync(self) -> float:
        """Since the last sync point (a change or a heartbeat) was applied; infinite before the first."""
        last = self._last_sync
        return math.inf if last is None else time.monotonic() - last

    @property
    def synced(self) -> bool:
        return self.replica.synced_once.is_set()

    @property
    def ready(self) -> bool:
        return self._ready

    # -- the stream ---------------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            synced_before = self._last_sync
            try:
                self._stream_once()
            except grpc.RpcError as error:
                hint = _REFUSAL_HINTS.get(error.code())
                if hint is not None and not self._stopping.is_set():
                    _log.error(
                        "replication_refused",
                        writer=self.settings.writer,
                        code=error.code().name,
                        detail=error.details(),
                        hint=hint,
                    )
                    failures = max(failures, 30)  # the longest backoff: the next try is as likely refused
                elif not self._stopping.is_set():
                    _log.warning(
                        "replication_stream_failed",
                        writer=self.settings.writer,
                        code=error.code().name,
                        detail=error.details(),
                    )
            except WriterCredentialsError as error:
                _log.error(
                    "replication_credentials_unreadable", writer=self.settings.writer, detail=str(error)
                )
            except ReplicaDivergedError as error:
                _log.error("replication_change_refused", writer=self.settings.writer, detail=str(error))
            except NixlookupError as error:
                _log.error("replication_protocol_error", writer=self.settings.writer, detail=str(error))
            if self._stopping.is_set():
                break
            self.reconnects += 1
            failures = 0 if self._last_sync != synced_before else failures + 1
            self._stopping.wait(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        settings = self.settings
        pause = min(settings.backoff_max_seconds, settings.backoff_initial_seconds * 2.0 ** min(failures, 30))
        return pause * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security

    def _stream_once(self) -> None:
        options = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        settings = self.settings
        credentials = WriterCredentials(settings.credentials, settings.metadata or None)
        if settings.credential_source is not None:
            credentials = settings.credential_source()
        channel = (
            grpc.secure_channel(settings.writer, credentials.channel, options=options)
            if credentials.channel is not None
            else grpc.insecure_channel(settings.writer, options=options)
        )
        with channel:
            stub = lookup_pb2_grpc.ReplicationStub(channel)
            self.replica.begin_stream()
            request = lookup_pb2.ReplicateRequest(
                have=positions(self.replica.versions()), follower=settings.name, callers=settings.callers
            )
            # an iterator that is also a cancellable grpc.Call
            call: Any = stub.Replicate(request, metadata=credentials.metadata)
            with self._call_lock:
                self._call = call
            self._last_event = time.monotonic()
            if self._stopping.is_set():
                call.cancel()
            assembler = ChangeAssembler()
            try:
                for event in call:
                    self._last_event = time.monotonic()
                    if event.HasField("change"):
                        received = assembler.add(event.change)
                        if received is not None:
                            self.replica.add(received)
                    elif event.HasField("synced"):
                        self._synced(event.synced)
                    elif event.HasField("scope"):
                        self.scope = event.scope
            finally:
                with self._call_lock:
                    self._call = None

    def _synced(self, point: lookup_pb2.SyncPoint) -> None:
        first = not self.synced
        result = self.replica.sync()
        self._last_sync = time.monotonic()
        self._sync_lag = max(0.0, time.time() - result.oldest_acknowledged_at) if result.changes else 0.0
        if first:
            _log.info(
                "follower_synced",
                writer=self.settings.writer,
                register_version=result.state.register.meta.version,
                lists=len(result.state.lists) + 1,
                position=point.position,
            )
        self._update_ready()

    # -- watchdog: stalls and readiness ---------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stopping.wait(0.25):
            if time.monotonic() - self._last_event > self.settings.stall_seconds:
                with self._call_lock:
                    stalled = self._call is not None
                if stalled:
                    _log.warning("replication_stream_stalled", writer=self.settings.writer)
                    self._cancel_call()
                    self._last_event = time.monotonic()
            self._update_ready()

    def _cancel_call(self) -> None:
        with self._call_lock:
            call = self._call
        if call is not None:
            with contextlib.suppress(Exception):
                call.cancel()

    def _update_ready(self) -> None:
        ready = self.synced and self.lag_seconds() <= self.settings.max_lag_seconds
        if ready != self._ready:
            self._ready = ready
            _log.info(
                "follower_ready" if ready else "follower_not_ready",
                writer=self.settings.writer,
                lag_seconds=round(min(self.lag_seconds(), 1e9), 3),
                max_lag_seconds=self.settings.max_lag_seconds,
            )
            if self._on_ready is not None:
                self._on_ready(ready)
