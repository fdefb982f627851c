"""`AsyncClient`: the asyncio twin of `Client`, over one reused `grpc.aio` channel.

Same configuration, defaults, requests, errors and retries as `Client`: all of them live in `BaseClient`;
this module holds only the asyncio I/O. Unary calls are retried by grpc's retryPolicy (the channel's
service config), and a replica's "behind" answer by `BehindRetry`. The bulk stream uses grpc.aio's
explicit ``write``/``read`` API: a writer task sends at most `max_in_flight` unanswered batches (a
semaphore released as answers arrive), the caller's loop reads answers in order; a stream failing with
UNAVAILABLE (or "behind") is reopened by `StreamResume` and resumes with the
first unanswered batch. `numbers` may be a sync iterable, an async iterable or a numpy array.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import grpc

from nixlookup.client._base import BaseClient, MinVersion, check_request, min_positions
from nixlookup.client._batching import Numbers, PreparedBatch, prepare_batches
from nixlookup.client.errors import NixlookupClientError
from nixlookup.client.results import BatchResult, BulkResult, CheckResult, RegisterInfo
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc
from nixlookup.v1.vocabulary import Purpose

__all__ = ["AsyncClient", "AsyncNumbers"]

AsyncNumbers = Numbers | AsyncIterable[str | int]


async def _aiter_batches(
    numbers: AsyncNumbers,
    *,
    batch_size: int,
    caller: str,
    purpose: Purpose,
    want_details: bool,
    min_version: Sequence[lookup_pb2.ListPosition] = (),
) -> AsyncIterator[PreparedBatch]:
    """Prepared batches from a sync or async input (an async input is gathered a batch at a time)."""
    if not isinstance(numbers, AsyncIterable):
        for prepared in prepare_batches(
            numbers,
            batch_size=batch_size,
            caller=caller,
            purpose=purpose,
            want_details=want_details,
            min_version=min_version,
        ):
            yield prepared
        return
    buffer: list[str | int] = []
    first_id = 0
    async for item in numbers:
        buffer.append(item)
        if len(buffer) == batch_size:
            for prepared in prepare_batches(
                buffer,
                batch_size=batch_size,
                caller=caller,
                purpose=purpose,
                want_details=want_details,
                min_version=min_version,
            ):
                yield _renumbered(prepared, first_id)
            first_id += 1
            buffer = []
    if buffer:
        for prepared in prepare_batches(
            buffer,
            batch_size=batch_size,
            caller=caller,
            purpose=purpose,
            want_details=want_details,
            min_version=min_version,
        ):
            yield _renumbered(prepared, first_id)


def _renumbered(prepared: PreparedBatch, batch_id: int) -> PreparedBatch:
    prepared.message.batch_id = batch_id
    return PreparedBatch(batch_id, prepared.inputs, prepared.sent_keys, prepared.message)


class _AsyncStream:
    """The bulk stream's state across attempts: the input, and the batches sent but not yet answered."""

    def __init__(self, source: AsyncIterator[PreparedBatch], max_in_flight: int) -> None:
        self.source = source
        self.max_in_flight = max_in_flight
        self.pending: deque[PreparedBatch] = deque()
        self.exhausted = False
        self.source_error: BaseException | None = None

    async def _write_all(self, call: Any, room: asyncio.Semaphore) -> None:
        for prepared in list(self.pending):  # unanswered batches of an earlier attempt first
            await room.acquire()
            await call.write(prepared.message)
        while not self.exhausted:
            await room.acquire()
            try:
                prepared = await anext(self.source)
            except StopAsyncIteration:
                self.exhausted = True
                break
            except Exception as error:  # the input failed: stop the call, re-raise to the caller
                self.source_error = error
                call.cancel()
                return
            self.pending.append(prepared)
            await call.write(prepared.message)
        await call.done_writing()

    async def attempt(self, call: Any) -> AsyncIterator[tuple[lookup_pb2.CheckBatchResult, PreparedBatch]]:
        """Run one call: write batches (at most `max_in_flight` unanswered), yield answers in order."""
        room = asyncio.Semaphore(self.max_in_flight)
        writer = asyncio.ensure_future(self._write_all(call, room))
        try:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:  # type: ignore[attr-defined]
                    break
                if not self.pending or self.pending[0].batch_id != message.batch_id:
                    raise NixlookupClientError(
                        grpc.StatusCode.INTERNAL,
                        f"answer for batch {message.batch_id} arrived out of order",
                        method="CheckStream",
                    )
                prepared = self.pending.popleft()
                room.release()
                yield message, prepared
            await writer
        except (grpc.RpcError, asyncio.CancelledError):
            if self.source_error is not None:
                raise self.source_error from None
            raise
        finally:
            if not writer.done():
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
                    await writer
            call.cancel()
        if self.source_error is not None:
            raise self.source_error


class AsyncClient(BaseClient):
    """asyncio client; use ``async with AsyncClient(target) as client`` or ``await client.close()``."""

    def _connect(self) -> None:
        self._channel = self._aio_channel()
        self._stub = lookup_pb2_grpc.LookupStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def check(  # deliberate twin of Client.check (only the I/O differs; the rest is BaseClient)
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
                response = await self._stub.Check(request, **self._unary(timeout))
            except grpc.RpcError as error:
                await asyncio.sleep(behind.delay_after(error))  # raises unless a replica answered "behind"
                continue
            return CheckResult.from_proto(response)

    async def register_info(self, *, timeout: float | None = None) -> RegisterInfo:
        """The register's and the callers' lists' versions, counts, dates and history."""
        request = lookup_pb2.GetRegisterInfoRequest()
        try:
            response = await self._stub.GetRegisterInfo(request, **self._unary(timeout))
        except grpc.RpcError as error:
            raise self._error(error, "GetRegisterInfo") from None
        return RegisterInfo.from_proto(response)

    async def check_batches(
        self,
        numbers: AsyncNumbers,
        *,
        caller: str = "",
        purpose: Purpose | int | str = Purpose.SALES,
        want_details: bool = True,
        batch_size: int | None = None,
        timeout: float | None = None,
        min_version: MinVersion = None,
    ) -> AsyncIterator[BatchResult]:
        """Stream `numbers` through CheckStream; one `BatchResult` per batch, in input order. With
        `min_version` every batch is answered from at least that version (a replica behind is left)."""
        source = _aiter_batches(
            numbers,
            batch_size=batch_size or self.batch_size,
            caller=caller,
            purpose=Purpose.parse(purpose),
            want_details=want_details,
            min_version=min_positions(min_version),
        )
        stream = _AsyncStream(source, self.max_in_flight)
        resume = self._resume()
        while True:
            call: Any = self._stub.CheckStream(**self._stream(timeout))
            try:
                async for message, prepared in stream.attempt(call):
                    resume.answered()
                    yield BatchResult.from_proto(message, prepared.inputs, prepared.sent_keys)
            except grpc.RpcError as error:
                await asyncio.sleep(resume.delay_after(error))
                continue
            resume.finished(len(stream.pending))
            return

    async def check_many(
        self,
        numbers: AsyncNumbers,
        *,
        caller: str = "",
        purpose: Purpose | int | str = Purpose.SALES,
        batch_size: int | None = None,
        timeout: float | None = None,
        min_version: MinVersion = None,
    ) -> AsyncIterator[BulkResult]:
        """One `BulkResult` per input number, in input order, streamed in batches (bounded memory)."""
        async for batch in self.check_batches(
            numbers,
            caller=caller,
            purpose=purpose,
            want_details=True,
            batch_size=batch_size,
            timeout=timeout,
            min_version=min_version,
        ):
            for result in batch:
                yield result
