"""`AsyncClient`: the asyncio twin of `Client`, over one reused `grpc.aio` channel.

Same calls, same defaults, same errors and retry policy as the sync client (see `client.sync`); the bulk
stream uses grpc.aio's explicit ``write``/``read`` API: a writer task sends at most `max_in_flight`
unanswered batches (a semaphore released as answers arrive), the caller's loop reads answers in order. A
stream failing with UNAVAILABLE is reopened and resumes with the first unanswered batch. `numbers` may be
a sync iterable, an async iterable or a numpy array.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar

import grpc

from nixlookup.client._batching import Numbers, PreparedBatch, prepare_batches
from nixlookup.client._retry import DEFAULT_RETRY, RetryPolicy, status_of
from nixlookup.client.errors import NixlookupClientError, from_rpc_error
from nixlookup.client.results import BatchResult, BulkResult, CheckResult, RegisterInfo
from nixlookup.client.security import ChannelSecurity
from nixlookup.client.sync import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    channel_options,
    check_request,
)
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc
from nixlookup.v1.vocabulary import Purpose

__all__ = ["AsyncClient"]

_Reply = TypeVar("_Reply")
AsyncNumbers = Numbers | AsyncIterable[str | int]


async def _aiter_batches(
    numbers: AsyncNumbers, *, batch_size: int, caller: str, purpose: Purpose, want_details: bool
) -> AsyncIterator[PreparedBatch]:
    """Prepared batches from a sync or async input (an async input is gathered a batch at a time)."""
    if not isinstance(numbers, AsyncIterable):
        for prepared in prepare_batches(
            numbers, batch_size=batch_size, caller=caller, purpose=purpose, want_details=want_details
        ):
            yield prepared
        return
    buffer: list[str | int] = []
    first_id = 0
    async for item in numbers:
        buffer.append(item)
        if len(buffer) == batch_size:
            for prepared in prepare_batches(
                buffer, batch_size=batch_size, caller=caller, purpose=purpose, want_details=want_details
            ):
                yield _renumbered(prepared, first_id)
            first_id += 1
            buffer = []
    if buffer:
        for prepared in prepare_batches(
            buffer, batch_size=batch_size, caller=caller, purpose=purpose, want_details=want_details
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


class AsyncClient:
    """asyncio client; use ``async with AsyncClient(target) as client`` or ``await client.close()``."""

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
            grpc.aio.secure_channel(target, credentials, options=opts)
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=opts)
        )
        self._stub = lookup_pb2_grpc.LookupStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _unary(
        self, method: str, call: Callable[..., Awaitable[_Reply]], request: object, timeout: float | None
    ) -> _Reply:
        deadline = self.timeout if timeout is None else timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call(request, timeout=deadline, metadata=self._metadata)
            except grpc.RpcError as error:
                if self.retry.should_retry(status_of(error), attempt):
                    await asyncio.sleep(self.retry.backoff(attempt))
                    continue
                raise from_rpc_error(error, target=self.target, method=method) from None

    async def check(
        self,
        number: str | int,
        *,
        caller: str = "",
        purpose: Purpose | int | str = Purpose.SALES,
        timeout: float | None = None,
    ) -> CheckResult:
        """May `number` be called by `caller` for `purpose`? A str is parsed as written, an int is a key."""
        request = check_request(number, caller, purpose)
        response = await self._unary("Check", self._stub.Check, request, timeout)
        return CheckResult.from_proto(response)

    async def register_info(self, *, timeout: float | None = None) -> RegisterInfo:
        """The register's and the callers' lists' versions, counts, dates and history."""
        response = await self._unary(
            "GetRegisterInfo", self._stub.GetRegisterInfo, lookup_pb2.GetRegisterInfoRequest(), timeout
        )
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
    ) -> AsyncIterator[BatchResult]:
        """Stream `numbers` through CheckStream; one `BatchResult` per batch, in input order."""
        source = _aiter_batches(
            numbers,
            batch_size=batch_size or self.batch_size,
            caller=caller,
            purpose=Purpose.parse(purpose),
            want_details=want_details,
        )
        stream = _AsyncStream(source, self.max_in_flight)
        deadline = self.stream_timeout if timeout is None else timeout
        attempt = 0
        while True:
            attempt += 1
            call: Any = self._stub.CheckStream(timeout=deadline, metadata=self._metadata)  # type: ignore[call-arg]
            try:
                async for message, prepared in stream.attempt(call):
                    attempt = 0
                    yield BatchResult.from_proto(message, prepared.inputs, prepared.sent_keys)
            except grpc.RpcError as error:
                if self.retry.should_retry(status_of(error), max(attempt, 1)):
                    await asyncio.sleep(self.retry.backoff(max(attempt, 1)))
                    continue
                raise from_rpc_error(error, target=self.target, method="CheckStream") from None
            if stream.pending:
                raise NixlookupClientError(
                    grpc.StatusCode.INTERNAL,
                    f"the stream ended with {len(stream.pending)} batches unanswered",
                    target=self.target,
                    method="CheckStream",
                )
            return

    async def check_many(
        self,
        numbers: AsyncNumbers,
        *,
        caller: str = "",
        purpose: Purpose | int | str = Purpose.SALES,
        batch_size: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[BulkResult]:
        """One `BulkResult` per input number, in input order, streamed in batches (bounded memory)."""
        async for batch in self.check_batches(
            numbers, caller=caller, purpose=purpose, want_details=True, batch_size=batch_size, timeout=timeout
        ):
            for result in batch:
                yield result
