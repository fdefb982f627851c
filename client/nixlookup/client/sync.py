"""`Client`: the synchronous Python client of nixlookup-server, over one reused channel.

Theory of operation:
- One `grpc.Channel` per client, opened in the constructor and reused by every call (a channel is a
  connection pool; creating one per call costs a TCP and HTTP/2 handshake). Close it with `close()` or a
  ``with`` block.
- Every call has a deadline: `timeout` for `check` and `register_info`, `stream_timeout` for one bulk
  stream (a wash of millions of numbers is one stream). Each can be overridden per call.
- UNAVAILABLE is retried with exponential backoff (`RetryPolicy`): all Lookup methods are read-only. A
  bulk stream that fails with UNAVAILABLE is reopened and resumes with the first unanswered batch, so no
  number is lost or answered twice.
- `check_batches` streams through `CheckStream`: a producer (run by grpc on its own thread) pulls the
  input lazily and sends at most `max_in_flight` unanswered batches; answers come back in order and are
  matched to their inputs by `batch_id`. Memory is bounded by ``max_in_flight * batch_size`` numbers
  whatever the input's size. `check_many` unrolls the batches into one result per number.
- Failures surface as `NixlookupClientError` subclasses carrying the status and what to do.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import TracebackType
from typing import TypeVar

import grpc

from nixlookup.client._batching import Numbers, PreparedBatch, prepare_batches
from nixlookup.client._retry import DEFAULT_RETRY, RetryPolicy, status_of
from nixlookup.client.errors import NixlookupClientError, from_rpc_error
from nixlookup.client.results import BatchResult, BulkResult, CheckResult, RegisterInfo
from nixlookup.client.security import ChannelSecurity
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc
from nixlookup.v1.vocabulary import Purpose

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_STREAM_TIMEOUT",
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "Client",
    "channel_options",
    "check_request",
]

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 5.0
"""Seconds for one Check or GetRegisterInfo: generous for a loopback or LAN call (~1 ms), short enough
that a dialer gives up on a hung server quickly."""
DEFAULT_STREAM_TIMEOUT = 3600.0
"""Seconds for one bulk stream: an hour washes billions of numbers at the measured rates."""
DEFAULT_BATCH_SIZE = 10_000
"""Numbers per batch: past ~10k the per-batch overhead is negligible (see the benchmark); the server
accepts up to 100k."""
DEFAULT_MAX_IN_FLIGHT = 4
"""Unanswered batches on the wire: enough to keep the server busy while the client decodes answers."""
_Reply = TypeVar("_Reply")
_MESSAGE_LIMIT = 64 * 1024 * 1024
_WAIT_SLICE = 0.1


def channel_options(extra: tuple[tuple[str, int | str], ...] = ()) -> list[tuple[str, int | str]]:
    """Channel options every client uses (messages big enough for 100k-number batches and answers)."""
    return [
        ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
        ("grpc.max_send_message_length", _MESSAGE_LIMIT),
        *extra,
    ]


def check_request(number: str | int, caller: str, purpose: Purpose | int | str) -> lookup_pb2.CheckRequest:
    """The CheckRequest for one number: a str goes as written, an int as an E.164 key."""
    chosen = int(Purpose.parse(purpose))
    if isinstance(number, str):
        return lookup_pb2.CheckRequest(text=number, caller=caller, purpose=chosen)  # type: ignore[arg-type]
    if isinstance(number, bool) or not isinstance(number, int):
        raise TypeError(f"a number is a str (as written) or an int (E.164 key), not {type(number).__name__}")
    if not 0 <= number < 2**64:
        raise ValueError("an int number must be an E.164 key between 0 and 2**64-1")
    return lookup_pb2.CheckRequest(e164=number, caller=caller, purpose=chosen)  # type: ignore[arg-type]


class _StreamState:
    """Shared between the request producer (grpc's thread) and the answer consumer (the caller's)."""

    def __init__(self, batches: Iterator[PreparedBatch], max_in_flight: int) -> None:
        self.batches = batches
        self.max_in_flight = max_in_flight
        self.pending: deque[PreparedBatch] = deque()
        self.changed = threading.Condition()
        self.pull_lock = threading.Lock()
        self.generation = 0
        self.source_error: BaseException | None = None

    def _first_unsent(self, last_sent: int) -> PreparedBatch | None:
        with self.changed:
            return next((p for p in self.pending if p.batch_id > last_sent), None)

    def requests(self, generation: int) -> Iterator[lookup_pb2.CheckBatch]:
        """Messages for one attempt: unanswered batches of earlier attempts first, then new ones.

        Batches are sent in batch_id order; anything in `pending` this attempt has not sent yet (also a
        batch an earlier attempt's producer appended after this one started) goes before a new pull.
        """
        last_sent = -1
        while generation == self.generation:
            prepared = self._first_unsent(last_sent)
            if prepared is None:
                with self.changed:
                    while len(self.pending) >= self.max_in_flight and generation == self.generation:
                        self.changed.wait(_WAIT_SLICE)
                with self.pull_lock:
                    if generation != self.generation or self.source_error is not None:
                        return
                    prepared = self._first_unsent(last_sent)
                    if prepared is None:
                        try:
                            prepared = next(self.batches)
                        except StopIteration:
                            return
                        except BaseException as error:  # the input failed: end the stream, re-raise later
                            self.source_error = error
                            return
                        with self.changed:
                            self.pending.append(prepared)
            last_sent = prepared.batch_id
            yield prepared.message

    def answered(self, message: lookup_pb2.CheckBatchResult) -> PreparedBatch:
        with self.changed:
            if not self.pending or self.pending[0].batch_id != message.batch_id:
                expected = self.pending[0].batch_id if self.pending else None
                raise NixlookupClientError(
                    grpc.StatusCode.INTERNAL,
                    f"answer for batch {message.batch_id} arrived, expected {expected}; the server broke "
                    "the in-order contract",
                )
            prepared = self.pending.popleft()
            self.changed.notify_all()
        return prepared

    def end_attempt(self) -> None:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()


class Client:
    """Synchronous client; see the module doc. Use as a context manager or call `close()`."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        stream_timeout: float = DEFAULT_STREAM_TIMEOUT,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        retry: RetryPolicy = DEFAULT_RETRY,
        credentials: grpc.ChannelCredentials | None = None,
        options: tuple[tuple[str, int | str], ...] = (),
        token: str | None = None,
        security: ChannelSecurity | None = None,
    ) -> None:
        """`token`: sent as ``authorization: Bearer`` with every call; `security`: a token and TLS/mTLS
        settings together (`ChannelSecurity`); `credentials`: grpc channel credentials of your own."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.target = target
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.retry = retry
        opts = channel_options(options)
        security = security or ChannelSecurity()
        if token is not None:
            security = replace(security, token=token)
        self._metadata = security.metadata
        credentials = credentials or security.channel_credentials()
        self._channel = (
            grpc.secure_channel(target, credentials, options=opts)
            if credentials is not None
            else grpc.insecure_channel(target, options=opts)
        )
        self._stub = lookup_pb2_grpc.LookupStub(self._channel)

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- unary calls -----------------------------------------------------------------------------
    def check(
        self,
        number: str | int,
        *,
        caller: str = "",
        purpose: Purpose | int | str = Purpose.SALES,
        timeout: float | None = None,
    ) -> CheckResult:
        """May `number` be called by `caller` for `purpose`? A str is parsed as written, an int is a key."""
        request = check_request(number, caller, purpose)
        response = self._unary("Check", self._stub.Check, request, timeout)
        return CheckResult.from_proto(response)

    def register_info(self, *, timeout: float | None = None) -> RegisterInfo:
        """The register's and the callers' lists' versions, counts, dates and history."""
        response = self._unary(
            "GetRegisterInfo", self._stub.GetRegisterInfo, lookup_pb2.GetRegisterInfoRequest(), timeout
        )
        return RegisterInfo.from_proto(response)

    def _unary(
        self, method: str, call: Callable[..., _Reply], request: object, timeout: float | None
    ) -> _Reply:
        deadline = self.timeout if timeout is None else timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                return call(request, timeout=deadline, metadata=self._metadata)
            except grpc.RpcError as error:
                if self.retry.should_retry(status_of(error), attempt):
                    time.sleep(self.retry.backoff(attempt))
                    continue
                raise from_rpc_error(error, target=self.target, method=method) from None

    # -- bulk ------------------------------------------------------------------------------------
    def check_batches(
        self,
        numbers: Numbers,
        *,
        caller: str = "",
        purpose: Purpose | int | str = Purpose.SALES,
        want_details: bool = True,
        batch_size: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[BatchResult]:
        """Stream `numbers` through CheckStream; one `BatchResult` per batch, in input order."""
        batches = prepare_batches(
            numbers,
            batch_size=batch_size or self.batch_size,
            caller=caller,
            purpose=Purpose.parse(purpose),
            want_details=want_details,
        )
        state = _StreamState(batches, self.max_in_flight)
        deadline = self.stream_timeout if timeout is None else timeout
        attempt = 0
        while True:
            attempt += 1
            responses = self._stub.CheckStream(
                state.requests(state.generation), timeout=deadline, metadata=self._metadata
            )
            try:
                for message in responses:
                    prepared = state.answered(message)
                    attempt = 0
                    yield BatchResult.from_proto(message, prepared.inputs, prepared.sent_keys)
            except grpc.RpcError as error:
                state.end_attempt()
                if state.source_error is not None:
                    raise state.source_error from None
                if self.retry.should_retry(status_of(error), max(attempt, 1)):
                    time.sleep(self.retry.backoff(max(attempt, 1)))
                    continue
                raise from_rpc_error(error, target=self.target, method="CheckStream") from None
            finally:
                state.end_attempt()
                responses.cancel()  # type: ignore[no-untyped-call]
            if state.source_error is not None:
                raise state.source_error
            if state.pending:
                raise NixlookupClientError(
                    grpc.StatusCode.INTERNAL,
                    f"the stream ended with {len(state.pending)} batches unanswered",
                    target=self.target,
                    method="CheckStream",
                )
            return

    def check_many(
        self,
        numbers: Numbers,
        *,
        caller: str = "",
        purpose: Purpose | int | str = Purpose.SALES,
        batch_size: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[BulkResult]:
        """One `BulkResult` per input number, in input order, streamed in batches (bounded memory)."""
        for batch in self.check_batches(
            numbers, caller=caller, purpose=purpose, want_details=True, batch_size=batch_size, timeout=timeout
        ):
            yield from batch
