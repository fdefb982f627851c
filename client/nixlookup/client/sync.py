"""`Client`: the synchronous Python client of nixlookup-server, over one reused channel.

Theory of operation:
- One `grpc.Channel` per client, opened in the constructor and reused by every call (a channel is a
  connection pool; creating one per call costs a TCP and HTTP/2 handshake). Close it with `close()` or a
  ``with`` block. Configuration, request building and error mapping live in `BaseClient` (shared with
  `AsyncClient`); this module holds only the blocking I/O.
- Every call has a deadline: `timeout` for `check` and `register_info`, `stream_timeout` for one bulk
  stream (a wash of millions of numbers is one stream). Each can be overridden per call.
- UNAVAILABLE is retried: unary calls by grpc's own retryPolicy (the channel's service config), a bulk
  stream by `StreamResume`, which reopens it and resends only the unanswered batches, so no number is
  lost or answered twice. A replica's "behind" answer to a call with `min_version` is retried too
  (`BehindRetry`, `StreamResume`); with round_robin (the default) each retry goes to the next replica.
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
from collections.abc import Iterator
from types import TracebackType

import grpc

from nixlookup.client._base import BaseClient, MinVersion, check_request
from nixlookup.client._batching import Numbers, PreparedBatch
from nixlookup.client.errors import NixlookupClientError
from nixlookup.client.results import BatchResult, BulkResult, CheckResult, RegisterInfo
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc
from nixlookup.v1.vocabulary import Purpose

__all__ = ["Client"]

_WAIT_SLICE = 0.1


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


class Client(BaseClient):
    """Synchronous client; see the module doc. Use as a context manager or call `close()`.

    `target` defaults to ``$NIXLOOKUP_TARGET``, else 127.0.0.1:50051 (`nixlookup.client.defaults`).
    """

    def _connect(self) -> None:
        self._channel = self._sync_channel()
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

    # -- unary calls (grpc retries UNAVAILABLE through the channel's service config) --------------
    def check(  # deliberate twin of AsyncClient.check (only the I/O differs; the rest is BaseClient)
        self,
        number: str | int,
        *,
        caller: str = "",
        purpose: Purpose | int | str = Purpose.SALES,
        timeout: float | None = None,
        min_version: MinVersion = None,
    ) -> CheckResult:
        """May `number` be called by `caller` for `purpose`? A str is parsed as written, an int is a key.
        `min_version`: answer from at least this version (what an ApplyDelta returned; see `BaseClient`)."""
        request = check_request(number, caller, purpose, min_version)
        behind = self._behind("Check")
        while True:
            try:
                response = self._stub.Check(request, **self._unary(timeout))
            except grpc.RpcError as error:
                time.sleep(behind.delay_after(error))  # raises unless a replica answered "behind"
                continue
            return CheckResult.from_proto(response)

    def register_info(self, *, timeout: float | None = None) -> RegisterInfo:
        """The register's and the callers' lists' versions, counts, dates and history."""
        request = lookup_pb2.GetRegisterInfoRequest()
        try:
            response = self._stub.GetRegisterInfo(request, **self._unary(timeout))
        except grpc.RpcError as error:
            raise self._error(error, "GetRegisterInfo") from None
        return RegisterInfo.from_proto(response)

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
        min_version: MinVersion = None,
    ) -> Iterator[BatchResult]:
        """Stream `numbers` through CheckStream; one `BatchResult` per batch, in input order. With
        `min_version` every batch is answered from at least that version (a replica behind is left)."""
        batches = self._prepared(
            numbers,
            caller=caller,
            purpose=purpose,
            want_details=want_details,
            batch_size=batch_size,
            min_version=min_version,
        )
        state = _StreamState(batches, self.max_in_flight)
        resume = self._resume()
        while True:
            responses = self._stub.CheckStream(state.requests(state.generation), **self._stream(timeout))
            try:
                for message in responses:
                    prepared = state.answered(message)
                    resume.answered()
                    yield BatchResult.from_proto(message, prepared.inputs, prepared.sent_keys)
            except grpc.RpcError as error:
                state.end_attempt()
                if state.source_error is not None:
                    raise state.source_error from None
                time.sleep(resume.delay_after(error))
                continue
            finally:
                state.end_attempt()
                responses.cancel()  # type: ignore[no-untyped-call]
            if state.source_error is not None:
                raise state.source_error
            resume.finished(len(state.pending))
            return

    def check_many(
        self,
        numbers: Numbers,
        *,
        caller: str = "",
        purpose: Purpose | int | str = Purpose.SALES,
        batch_size: int | None = None,
        timeout: float | None = None,
        min_version: MinVersion = None,
    ) -> Iterator[BulkResult]:
        """One `BulkResult` per input number, in input order, streamed in batches (bounded memory)."""
        for batch in self.check_batches(
            numbers,
            caller=caller,
            purpose=purpose,
            want_details=True,
            batch_size=batch_size,
            timeout=timeout,
            min_version=min_version,
        ):
            yield from batch
