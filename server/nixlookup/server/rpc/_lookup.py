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
- Backpressure: this is a sync grpc servicer. A stream's handler thread produces the next result only
  after grpc has handed the previous one to the transport, and reads the next batch only when it asks the
  request iterator for it; HTTP/2 flow control stops a client that sends faster than that. So a stream
  holds at most about one batch in and one result out in the server, whatever the client does.
- Who may ask (docs/security.md): the call's principal (`current_principal`, set by the guard) needs
  role ``check`` and a caller it may act as (`authorize`; a principal with one caller gets it when the
  request leaves it empty), checked per Check and once per caller on a stream. A caller without lists
  is answered from the register with `detail` saying so. GetRegisterInfo shows only the lists of the
  principal's own callers. Every answer is metered per principal and caller (`Meter`: counts only).
- Errors are raised as `NixlookupError`s and mapped to statuses in one place (`interceptors.RpcGuard`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import numpy as np

from nixlookup.server.errors import InvalidArgumentError
from nixlookup.server.logs import get_logger
from nixlookup.server.numbering import ParsedBatch, classify_key, classify_keys, parse_number, parse_numbers
from nixlookup.server.policy import Policy
from nixlookup.server.rpc._auth import authorize, current_principal
from nixlookup.server.rpc._convert import (
    CheckResponses,
    datetime_to_timestamp,
    list_versions,
    pack_bits,
    register_info,
)
from nixlookup.server.rpc._freshness import FreshnessGate
from nixlookup.server.rpc._metering import Meter
from nixlookup.server.rpc._principals import Role
from nixlookup.server.store import ListDescription, PerStateMemo, ServingState, StateHolder
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc
from nixlookup.v1.vocabulary import Purpose, Verdict

__all__ = ["ListDescriber", "LookupServicer", "ServiceLimits"]

_log = get_logger("nixlookup.service")

ListDescriber = Callable[[], Sequence[ListDescription]]
"""Describes every served list with its history (`Store.describe`)."""

_PURPOSES = frozenset(int(purpose) for purpose in Purpose)


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """Request limits the service enforces (and names in its errors)."""

    max_batch: int = 100_000


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
        limits: ServiceLimits | None = None,
        server_version: str = "",
        started_at: datetime | None = None,
        clock: Callable[[], datetime] = _utc_now,
        meter: Meter | None = None,
        freshness: FreshnessGate | None = None,
    ) -> None:
        self._holder = holder
        self._freshness = freshness or FreshnessGate(holder)
        self._policy = policy
        self._limits = limits or ServiceLimits()
        self._describe_lists = describe_lists
        self._server_version = server_version
        self._started_at = started_at or _utc_now()
        self._clock = clock
        self._meter = meter or Meter()
        self._responses = CheckResponses()
        self._result_headers: PerStateMemo[lookup_pb2.CheckBatchResult] = PerStateMemo()

    # -- Check -------------------------------------------------------------------------------------
    def Check(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> lookup_pb2.CheckResponse:
        which = request.WhichOneof("number")
        if which is None:
            raise InvalidArgumentError("CheckRequest carries no number: set `text` or `e164`")
        purpose = _purpose(request.purpose)
        principal = current_principal()
        caller = authorize(principal, Role.CHECK, request.caller)
        state = self._freshness.state_for(request.min_version, context.time_remaining())
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
    def CheckStream(  # noqa: N802 - the name is the RPC's
        self, request_iterator: Iterator[lookup_pb2.CheckBatch], context: grpc.ServicerContext
    ) -> Iterator[lookup_pb2.CheckBatchResult]:
        started = time.perf_counter()
        batches = numbers = blocked = invalid = 0
        principal = current_principal()
        callers: dict[str, str] = {}  # as requested -> as authorised (once per caller, not per batch)
        try:
            for batch in request_iterator:
                caller = callers.get(batch.caller)
                if caller is None:
                    caller = callers[batch.caller] = authorize(principal, Role.CHECK, batch.caller)
                result, batch_blocked, batch_invalid = self._answer_batch(batch, caller, context)
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
                yield result
        finally:
            _log.info(
                "check_stream",
                batches=batches,
                numbers=numbers,
                blocked=blocked,
                invalid=invalid,
                seconds=round(time.perf_counter() - started, 3),
                cancelled=not context.is_active(),
            )

    def _answer_batch(
        self, batch: lookup_pb2.CheckBatch, caller: str, context: grpc.ServicerContext
    ) -> tuple[lookup_pb2.CheckBatchResult, int, int]:
        """The result for one batch answered as `caller`, and how many of its numbers were blocked and
        invalid."""
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
        if count > self._limits.max_batch:
            raise InvalidArgumentError(
                f"CheckBatch holds {count} numbers, over the limit of {self._limits.max_batch} per batch; "
                "split it into smaller batches"
            )
        purpose = _purpose(batch.purpose)
        state = self._freshness.state_for(batch.min_version, context.time_remaining())
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
        if batch.want_details:
            result.reasons = decision.reasons.astype(np.uint8, copy=False).tobytes()
            result.line_types = parsed.line_types.astype(np.uint8, copy=False).tobytes()
            result.valid_until_days_le = decision.valid_until_days.astype("<u4", copy=False).tobytes()
            if text_count:
                result.e164_le = parsed.keys.astype("<u8", copy=False).tobytes()
        _log.debug("check_batch", count=count, register_version=result.register_version)
        return result, int(np.count_nonzero(decision.blocked)), int(np.count_nonzero(decision.invalid))

    def _result_header(self, state: ServingState, caller: str) -> lookup_pb2.CheckBatchResult:
        """What every batch result on `state` for `caller` starts with: the versions it answers from."""
        meta = state.register.meta
        return lookup_pb2.CheckBatchResult(
            register_version=meta.version,
            register_date=datetime_to_timestamp(meta.register_date),
            lists_used=list_versions(self._policy.lists_used(state, caller)),
        )

    # -- GetRegisterInfo ---------------------------------------------------------------------------
    def GetRegisterInfo(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.GetRegisterInfoRequest, context: grpc.ServicerContext
    ) -> lookup_pb2.RegisterInfo:
        reply = register_info(
            self._describe_lists(),
            started_at=self._started_at,
            server_version=self._server_version,
        )
        principal = current_principal()
        if not principal.any_caller:  # only the lists of the principal's own callers
            visible = [info for info in reply.lists if principal.sees_lists_of(info.list.caller)]
            del reply.lists[:]
            reply.lists.extend(visible)
        return reply
