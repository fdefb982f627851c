"""The `nixlookup.v1.Lookup` service: proto in, core calls, proto out. No rules live here.

Theory of operation:
- Every verdict comes from `Policy` (`decide_one` for Check, `decide_many` for a stream batch); the service
  only validates the request's shape, normalises numbers through `numbering`, and converts.
- Consistency: Check takes ``holder.current()`` once; CheckStream takes it once per batch, so each batch is
  answered from exactly one version of every list (and says which), while a long stream still sees a reload
  that lands between two of its batches.
- The bulk path has no per-number Python loop: packed keys are decoded with ``numpy.frombuffer`` (a view,
  no copy), texts go to the vectorised `parse_numbers`, membership and the policy run on arrays, and the
  answer is bit-packed with ``numpy.packbits(..., bitorder="little")``.
- Limits are checked before any work and named in the error: at most `max_batch` numbers per batch; a
  batch carries packed keys or texts, never both; packed keys are a whole number of 8-byte words. (The
  message-size limit is enforced by grpc itself before the handler runs.)
- Server model: grpc.aio. Every handler runs on the one event loop thread, so an open stream, idle or
  stalled, costs a suspended coroutine and no thread. A unary Check (~10-20 us of Python) runs inline on
  the loop; a large stream batch's numpy/numba work (0.1-5 ms) runs in the bulk executor, so the loop
  keeps answering Checks meanwhile; small batches run inline (`INLINE_BATCH_COST`). GetRegisterInfo,
  which takes the store's describe lock, runs in the executor too.
- Backpressure and stalls: a stream's batches go through `answer_in_order` (at most
  `STREAM_PIPELINE_DEPTH` of them in the server, results written in order with ``await context.write``),
  and HTTP/2 flow control stops a client that sends faster. Each read and each write must complete within
  `stream_idle_seconds`: a client that sends nothing, or stops reading, ends with DEADLINE_EXCEEDED naming
  the limit, and its memory is freed.
- Who may ask (docs/security.md): the call's principal (`current_principal`, set by the guard) needs
  role ``check`` and a caller it may act as (`authorize`; a principal with one caller gets it when the
  request leaves it empty), checked per Check and once per caller on a stream. A caller without lists
  is answered from the register with `detail` saying so. GetRegisterInfo shows only the lists of the
  principal's own callers. Every answer is metered per principal and caller (`Meter`: counts only).
- CheckAddressee and CheckAddresseeStream (NIX-Adresserat) are thin async wrappers around `MailLookup`
  (`_mail`), whose methods are plain functions of (request, context): state taken as for Check, a large
  batch answered in the bulk executor.
- Errors are raised as `NixlookupError`s and mapped to statuses in one place (`RpcGuard`).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from grpc import aio

from nixlookup.server.errors import DeadlineExceededError, InvalidArgumentError
from nixlookup.server.logs import get_logger
from nixlookup.server.numbering import ParsedBatch, classify_key, classify_keys, parse_number, parse_numbers
from nixlookup.server.policy import Policy
from nixlookup.server.policy._mail import MailSettings
from nixlookup.server.rpc._auth import authorize, current_principal
from nixlookup.server.rpc._convert import (
    CheckResponses,
    datetime_to_timestamp,
    list_versions,
    pack_bits,
    register_info,
)
from nixlookup.server.rpc._freshness import FreshnessGate
from nixlookup.server.rpc._limits import ServiceLimits
from nixlookup.server.rpc._mail import MailLookup
from nixlookup.server.rpc._metering import Meter
from nixlookup.server.rpc._pipeline import answer_in_order
from nixlookup.server.rpc._principals import Role
from nixlookup.server.store import ListDescription, PerStateMemo, ServingState, StateHolder
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc
from nixlookup.v1.vocabulary import Purpose, Verdict

__all__ = ["ListDescriber", "LookupServicer"]

_log = get_logger("nixlookup.service")

ListDescriber = Callable[[], Sequence[ListDescription]]
"""Describes every served list with its history (`Store.describe`)."""

STREAM_PIPELINE_DEPTH = 2
"""Batches of one stream in the server at once (`answer_in_order`): one answered while the next is read
and the last written. Each more holds another batch and result (~1.5 MB at 100k numbers with details)
per stream, and measured no faster on 2 cores."""
INLINE_BATCH_COST = 20_000
"""Batches up to this cost (packed keys: 1 per number, texts: `TEXT_COST_FACTOR`) are answered on the
event loop: at ~25-60 ns per key that is under ~1 ms of loop time, less than what handing the batch to
a thread and back costs on a loaded 2-core machine (1k and 10k batches measured ~1.3x faster inline);
larger ones go to the bulk executor so the loop keeps answering Checks meanwhile."""
TEXT_COST_FACTOR = 10
"""A number given as text costs ~10x a packed key (normalising it; docs/service.md "Measured")."""

_PURPOSES = frozenset(int(purpose) for purpose in Purpose)
_T = TypeVar("_T")

if TYPE_CHECKING:
    _Context = aio.ServicerContext[Any, Any]
else:
    _Context = aio.ServicerContext


def _purpose(value: int) -> Purpose:
    if value not in _PURPOSES:
        raise InvalidArgumentError(
            f"purpose {value} is not a known Purpose; use one of "
            + ", ".join(f"{p.name}={int(p)}" for p in Purpose)
        )
    return Purpose(value)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LookupServicer(lookup_pb2_grpc.LookupServicer):
    """Answers Check, CheckStream and GetRegisterInfo from the holder's current state."""

    def __init__(
        self,
        holder: StateHolder,
        policy: Policy,
        *,
        describe_lists: ListDescriber,
        bulk_executor: Executor,
        limits: ServiceLimits | None = None,
        server_version: str = "",
        started_at: datetime | None = None,
        clock: Callable[[], datetime] = _utc_now,
        meter: Meter | None = None,
        freshness: FreshnessGate | None = None,
        mail: MailLookup | None = None,
    ) -> None:
        self._holder = holder
        self._freshness = freshness or FreshnessGate(holder)
        self._policy = policy
        self._limits = limits or ServiceLimits()
        self._bulk_executor = bulk_executor
        self._describe_lists = describe_lists
        self._server_version = server_version
        self._started_at = started_at or _utc_now()
        self._clock = clock
        self._meter = meter or Meter()
        self._responses = CheckResponses()
        self._result_headers: PerStateMemo[lookup_pb2.CheckBatchResult] = PerStateMemo()
        self._mail = mail or MailLookup(
            holder, MailSettings(), limits=self._limits, meter=self._meter, freshness=self._freshness
        )

    # -- Check -------------------------------------------------------------------------------------
    async def Check(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.CheckRequest, context: _Context
    ) -> lookup_pb2.CheckResponse:
        which = request.WhichOneof("number")
        if which is None:
            raise InvalidArgumentError("CheckRequest carries no number: set `text` or `e164`")
        purpose = _purpose(request.purpose)
        principal = current_principal()
        caller = authorize(principal, Role.CHECK, request.caller)
        state = await self._freshness.state_for_async(request.min_version, context.time_remaining())
        parsed = parse_number(request.text) if which == "text" else classify_key(request.e164)
        decision = self._policy.decide_one(state, parsed, caller=caller, purpose=purpose, now=self._clock())
        response = self._responses.build(
            state,
            caller,
            parsed,
            decision,
            uses=lambda: self._policy.lists_used(state, caller),
        )
        if caller and len(response.lists_used) == 1:  # the register alone: say so, never silently
            response.detail += f"; caller {caller!r} has no lists on this server: only the register answered"
        verdict = decision.verdict
        self._meter.count(
            principal.name,
            caller,
            allowed=int(verdict is Verdict.ALLOWED),
            blocked=int(verdict is Verdict.BLOCKED),
            invalid=int(verdict is Verdict.INVALID),
        )
        return response

    # -- CheckStream -------------------------------------------------------------------------------
    async def CheckStream(  # type: ignore[override]  # noqa: N802 - grpc.aio's reader/writer form
        self, request_iterator: AsyncIterator[lookup_pb2.CheckBatch], context: _Context
    ) -> None:
        started = time.perf_counter()
        batches = numbers = blocked = invalid = 0
        ended = "done"
        principal = current_principal()
        callers: dict[str, str] = {}  # as requested -> as authorised (once per caller, not per batch)

        async def next_batch() -> tuple[lookup_pb2.CheckBatch, str] | None:
            batch = await self._progress(anext(request_iterator, None), "send its next batch")
            if batch is None:
                return None
            caller = callers.get(batch.caller)
            if caller is None:
                caller = callers[batch.caller] = authorize(principal, Role.CHECK, batch.caller)
            return batch, caller

        async def answer(
            request: tuple[lookup_pb2.CheckBatch, str],
        ) -> tuple[lookup_pb2.CheckBatchResult, str, int, int]:
            batch, caller = request
            state = await self._freshness.state_for_async(batch.min_version, context.time_remaining())
            result, batch_blocked, batch_invalid = await self._answer_off_the_loop_if_large(
                batch, caller, state
            )
            return result, caller, batch_blocked, batch_invalid

        async def write(answered: tuple[lookup_pb2.CheckBatchResult, str, int, int]) -> None:
            nonlocal batches, numbers, blocked, invalid
            result, caller, batch_blocked, batch_invalid = answered
            await self._progress(context.write(result), "read its results")
            self._meter.count(
                principal.name,
                caller,
                allowed=result.count - batch_blocked - batch_invalid,
                blocked=batch_blocked,
                invalid=batch_invalid,
            )
            batches += 1
            numbers += result.count
            blocked += batch_blocked
            invalid += batch_invalid

        try:
            await answer_in_order(next_batch, answer, write, depth=STREAM_PIPELINE_DEPTH)
        except BaseException as error:
            ended = type(error).__name__
            raise
        finally:
            _log.info(
                "check_stream",
                batches=batches,
                numbers=numbers,
                blocked=blocked,
                invalid=invalid,
                seconds=round(time.perf_counter() - started, 3),
                ended=ended,
            )

    async def _progress(self, step: Awaitable[_T], waiting_for: str) -> _T:
        """Await one read or write of a stream, ending the stream if it takes longer than the limit."""
        limit = self._limits.stream_idle_seconds
        try:
            async with asyncio.timeout(limit.value):
                return await step
        except TimeoutError:
            raise DeadlineExceededError(
                f"CheckStream made no progress: the client did not {waiting_for} within "
                f"{limit.named()} seconds; the stream is ended"
            ) from None

    async def _in_bulk_executor(self, work: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._bulk_executor, work, *args)

    async def _answer_off_the_loop_if_large(
        self, batch: lookup_pb2.CheckBatch, caller: str, state: ServingState
    ) -> tuple[lookup_pb2.CheckBatchResult, int, int]:
        """A batch's result: small batches on the loop (a thread hand-off would cost more than they do),
        the others in the bulk executor, so the loop keeps answering Checks meanwhile."""
        cost = len(batch.e164_le) // 8 + len(batch.texts) * TEXT_COST_FACTOR
        if cost <= INLINE_BATCH_COST:
            return self._answer_batch(batch, caller, state)
        return await self._in_bulk_executor(self._answer_batch, batch, caller, state)

    def _answer_batch(
        self, batch: lookup_pb2.CheckBatch, caller: str, state: ServingState
    ) -> tuple[lookup_pb2.CheckBatchResult, int, int]:
        """The result for one batch answered as `caller` from `state`, and how many of its numbers were
        blocked and invalid."""
        packed_bytes = len(batch.e164_le)
        text_count = len(batch.texts)
        if packed_bytes and text_count:
            raise InvalidArgumentError(
                "CheckBatch carries both e164_le and texts; send each batch as exactly one of them"
            )
        if packed_bytes % 8:
            raise InvalidArgumentError(
                f"CheckBatch.e164_le is {packed_bytes} bytes, not a multiple of 8: it must hold packed "
                "little-endian uint64 keys"
            )
        count = packed_bytes // 8 if packed_bytes else text_count
        if count > self._limits.max_batch.value:
            raise InvalidArgumentError(
                f"CheckBatch holds {count} numbers, over the limit of {self._limits.max_batch.named()} "
                "per batch; split it into smaller batches"
            )
        purpose = _purpose(batch.purpose)
        result = lookup_pb2.CheckBatchResult()
        result.CopyFrom(self._result_headers.get(state, caller, lambda: self._result_header(state, caller)))
        result.count = count
        result.batch_id = batch.batch_id
        if count == 0:
            return result, 0, 0
        parsed: ParsedBatch
        if packed_bytes:
            parsed = classify_keys(np.frombuffer(batch.e164_le, dtype="<u8"))
        else:
            parsed = parse_numbers(list(batch.texts))
        decision = self._policy.decide_many(state, parsed, caller=caller, purpose=purpose, now=self._clock())
        result.blocked = pack_bits(decision.blocked)
        result.invalid = pack_bits(decision.invalid)
        result.mobile_flag = pack_bits(decision.mobile_flag)
        if decision.valid_until is not None:  # None: an exempt batch while the register is expired
            result.valid_until.CopyFrom(datetime_to_timestamp(decision.valid_until))
        invalid = int(np.count_nonzero(decision.invalid))
        if batch.want_details:
            if invalid:  # an all-valid batch sends no problems (empty = every number PROBLEM_OK)
                result.problems = parsed.problems.astype(np.uint8, copy=False).tobytes()
            result.reasons = decision.reasons.astype(np.uint8, copy=False).tobytes()
            result.line_types = parsed.line_types.astype(np.uint8, copy=False).tobytes()
            result.valid_until_days_le = decision.valid_until_days.astype("<u4", copy=False).tobytes()
            if text_count:
                result.e164_le = parsed.keys.astype("<u8", copy=False).tobytes()
        _log.debug("check_batch", count=count, register_version=result.register_version)
        return result, int(np.count_nonzero(decision.blocked)), invalid

    def _result_header(self, state: ServingState, caller: str) -> lookup_pb2.CheckBatchResult:
        """What every batch result on `state` for `caller` starts with: the versions it answers from."""
        meta = state.register.meta
        return lookup_pb2.CheckBatchResult(
            register_version=meta.version,
            register_date=datetime_to_timestamp(meta.register_date),
            lists_used=list_versions(self._policy.lists_used(state, caller)),
        )

    # -- CheckAddressee, CheckAddresseeStream (NIX-Adresserat: `_mail`) ---------------------------------
    async def CheckAddressee(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.CheckAddresseeRequest, context: _Context
    ) -> lookup_pb2.CheckAddresseeResponse:
        state = await self._freshness.state_for_async(request.min_version, context.time_remaining())
        return self._mail.check_addressee(request, context, state=state)  # one row: inline on the loop

    async def CheckAddresseeStream(  # type: ignore[override]  # noqa: N802 - grpc.aio's reader/writer form
        self, request_iterator: AsyncIterator[lookup_pb2.CheckAddresseeBatch], context: _Context
    ) -> None:
        started = time.perf_counter()
        batches = rows = 0
        ended = "done"
        callers: dict[str, str] = {}

        async def next_batch() -> tuple[lookup_pb2.CheckAddresseeBatch, str] | None:
            batch = await self._progress(anext(request_iterator, None), "send its next batch")
            if batch is None:
                return None
            caller = callers.get(batch.caller)
            if caller is None:
                caller = callers[batch.caller] = self._mail.authorize_batch(batch)
            return batch, caller

        async def answer(
            request: tuple[lookup_pb2.CheckAddresseeBatch, str],
        ) -> lookup_pb2.CheckAddresseeBatchResult:
            batch, caller = request
            state = await self._freshness.state_for_async(batch.min_version, context.time_remaining())
            rows_in = max((len(getattr(batch, name)) for name in ("personnummer", "name")), default=0)
            if rows_in * TEXT_COST_FACTOR <= INLINE_BATCH_COST:
                return self._mail.answer_batch(batch, context, caller=caller, state=state)[0]
            here = contextvars.copy_context()  # the principal (a context variable) goes along to the thread

            def in_context() -> tuple[lookup_pb2.CheckAddresseeBatchResult, int, int]:
                return here.run(self._mail.answer_batch, batch, context, caller=caller, state=state)

            return (await self._in_bulk_executor(in_context))[0]

        async def write(result: lookup_pb2.CheckAddresseeBatchResult) -> None:
            nonlocal batches, rows
            await self._progress(context.write(result), "read its results")
            batches += 1
            rows += result.count

        try:
            await answer_in_order(next_batch, answer, write, depth=STREAM_PIPELINE_DEPTH)
        except BaseException as error:
            ended = type(error).__name__
            raise
        finally:
            _log.info(
                "check_addressee_stream",
                batches=batches,
                rows=rows,
                seconds=round(time.perf_counter() - started, 3),
                ended=ended,
            )

    # -- GetRegisterInfo ---------------------------------------------------------------------------
    async def GetRegisterInfo(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.GetRegisterInfoRequest, context: _Context
    ) -> lookup_pb2.RegisterInfo:
        described = await self._in_bulk_executor(self._describe_lists)  # takes the store's describe lock
        reply = register_info(described, started_at=self._started_at, server_version=self._server_version)
        principal = current_principal()
        if not principal.any_caller:  # only the lists of the principal's own callers
            # (the address register, caller "", stays out too: tests/test_security.py fixes only own lists)
            visible = [
                info for info in reply.lists if info.list.caller and principal.sees_lists_of(info.list.caller)
            ]
            del reply.lists[:]
            reply.lists.extend(visible)
        return reply
