"""What the client hands back: plain typed values decoded from the wire messages.

- `CheckResult`: the answer to one `check` (everything `CheckResponse` carries, and `answered_by`: a
  server over gRPC, or a `nixlookup.replica.LocalReplica` from its own memory).
- `BatchResult`: one `CheckStream` batch decoded into numpy arrays (bit fields unpacked LSB-first);
  the vectorised form, for callers that work on arrays. It keeps the wire message (`message`) so
  observers such as proof records see exactly what the server said.
- `BulkResult`: one number of a batch, what `check_many` yields, in input order.
- `RegisterInfo` / `ListInfo` / `VersionInfo`: `register_info()`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from numpy.typing import NDArray

from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import LineType, ListKind, Problem, Reason, Verdict

__all__ = [
    "ANSWERED_BY_REPLICA",
    "ANSWERED_BY_RPC",
    "BatchResult",
    "BulkResult",
    "CheckResult",
    "ListInfo",
    "ListVersion",
    "RegisterInfo",
    "VerdictFlags",
    "VersionInfo",
    "day_to_date",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)


def _datetime(stamp: Timestamp, present: bool = True) -> datetime | None:
    if not present or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def day_to_date(day: int) -> date | None:
    """A day number (days since 1970-01-01, as in ``valid_until_days_le``) as a date; 0 means none."""
    return None if day == 0 else _EPOCH_DAY + timedelta(days=int(day))


ANSWERED_BY_RPC = "rpc"
"""`CheckResult.answered_by`: a server answered the `Check` RPC."""
ANSWERED_BY_REPLICA = "replica"
"""`CheckResult.answered_by`: a `LocalReplica` answered from memory (`nixlookup[replica]`)."""


@dataclass(frozen=True, slots=True)
class ListVersion:
    """One list an answer rested on."""

    kind: ListKind
    caller: str
    version: str
    loaded_at: datetime | None

    @classmethod
    def from_proto(cls, message: lookup_pb2.ListVersion) -> ListVersion:
        return cls(
            kind=ListKind(message.list.kind),
            caller=message.list.caller,
            version=message.version,
            loaded_at=_datetime(message.loaded_at, message.HasField("loaded_at")),
        )


class VerdictFlags:
    """`blocked`, `allowed` and `invalid` of any answer with a `verdict` (a number's, an addressee's)."""

    __slots__ = ()
    verdict: Verdict

    @property
    def blocked(self) -> bool:
        return self.verdict is Verdict.BLOCKED

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOWED

    @property
    def invalid(self) -> bool:
        return self.verdict is Verdict.INVALID


@dataclass(frozen=True, slots=True)
class CheckResult(VerdictFlags):
    """The answer for one number."""

    verdict: Verdict
    reason: Reason
    e164: int
    line_type: LineType
    register_version: str
    register_date: datetime | None
    valid_until: datetime | None
    detail: str
    mobile_flag: bool
    lists_used: tuple[ListVersion, ...]
    answered_by: str = ANSWERED_BY_RPC
    """Who answered: `ANSWERED_BY_RPC` (a server) or `ANSWERED_BY_REPLICA` (a LocalReplica's memory)."""
    problem: Problem = Problem.OK
    """Why the number is invalid (`Problem.OK` when it is valid)."""

    @classmethod
    def from_proto(cls, message: lookup_pb2.CheckResponse) -> CheckResult:
        return cls(
            verdict=Verdict(message.verdict),
            reason=Reason(message.reason),
            e164=message.e164,
            line_type=LineType(message.line_type),
            register_version=message.register_version,
            register_date=_datetime(message.register_date, message.HasField("register_date")),
            valid_until=_datetime(message.valid_until, message.HasField("valid_until")),
            detail=message.detail,
            mobile_flag=message.mobile_flag,
            lists_used=tuple(ListVersion.from_proto(item) for item in message.lists_used),
            problem=_PROBLEMS.get(message.problem) or Problem(message.problem),
        )


@dataclass(frozen=True, slots=True)
class BulkResult:
    """One number's answer from `check_many`."""

    number: str | int
    """The input as given (a string as written, or an int key)."""
    verdict: Verdict
    reason: Reason
    e164: int
    """The normalised key; 0 when the number is invalid."""
    line_type: LineType
    valid_until: date | None
    register_version: str
    mobile_flag: bool
    problem: Problem = Problem.OK
    """Why the number is invalid (`Problem.OK` when it is valid)."""


_VERDICTS = {int(member): member for member in Verdict}
_REASONS = {int(member): member for member in Reason}
_LINE_TYPES = {int(member): member for member in LineType}
_PROBLEMS = {int(member): member for member in Problem}


def _unpack(bits: bytes, count: int) -> NDArray[np.bool_]:
    unpacked = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=count, bitorder="little")
    return unpacked.view(np.bool_)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One batch's answers as arrays, aligned with `inputs` (see the module doc)."""

    inputs: Sequence[str | int] | NDArray[np.uint64]
    e164: NDArray[np.uint64]
    blocked: NDArray[np.bool_]
    invalid: NDArray[np.bool_]
    mobile_flag: NDArray[np.bool_]
    reasons: NDArray[np.uint8] | None
    line_types: NDArray[np.uint8] | None
    valid_until_days: NDArray[np.uint32] | None
    register_version: str
    register_date: datetime | None
    valid_until: datetime | None
    message: lookup_pb2.CheckBatchResult
    problems: NDArray[np.uint8] | None = None
    """One `Problem` value per number (with the details; the wire sends them only for a batch holding
    an invalid number, so an all-valid batch decodes as zeros)."""

    @property
    def count(self) -> int:
        return int(self.blocked.size)

    def verdicts(self) -> NDArray[np.uint8]:
        """One `Verdict` value per number."""
        return np.where(
            self.invalid,
            np.uint8(Verdict.INVALID),
            np.where(self.blocked, np.uint8(Verdict.BLOCKED), np.uint8(Verdict.ALLOWED)),
        ).astype(np.uint8)

    def __iter__(self) -> Iterator[BulkResult]:
        """The per-number answers, in input order (needs the details: ``want_details=True``)."""
        if self.reasons is None or self.line_types is None or self.valid_until_days is None:
            raise ValueError("per-number results need the batch's details (want_details=True)")
        inputs = self.inputs.tolist() if isinstance(self.inputs, np.ndarray) else self.inputs
        verdicts = [_VERDICTS[value] for value in self.verdicts().tolist()]
        reasons = [_REASONS.get(value) or Reason(value) for value in self.reasons.tolist()]
        line_types = [_LINE_TYPES.get(value) or LineType(value) for value in self.line_types.tolist()]
        problems = (
            [_PROBLEMS.get(value) or Problem(value) for value in self.problems.tolist()]
            if self.problems is not None
            else [Problem.OK] * len(line_types)
        )
        dates: dict[int, date | None] = {}
        version = self.register_version
        for number, verdict, reason, key, line_type, day, flag, problem in zip(
            inputs,
            verdicts,
            reasons,
            self.e164.tolist(),
            line_types,
            self.valid_until_days.tolist(),
            self.mobile_flag.tolist(),
            problems,
            strict=True,
        ):
            until = dates.get(day)
            if until is None and day not in dates:
                until = dates[day] = day_to_date(day)
            yield BulkResult(number, verdict, reason, key, line_type, until, version, flag, problem)

    @classmethod
    def from_proto(
        cls,
        message: lookup_pb2.CheckBatchResult,
        inputs: Sequence[str | int] | NDArray[np.uint64],
        sent_keys: NDArray[np.uint64] | None,
    ) -> BatchResult:
        """Decode `message`; `sent_keys` are the packed keys sent (None when the batch was texts)."""
        count = int(message.count)
        invalid = _unpack(message.invalid, count)
        if message.e164_le:
            e164 = np.frombuffer(message.e164_le, dtype="<u8").astype(np.uint64)
        elif sent_keys is not None:
            e164 = np.where(invalid, np.uint64(0), sent_keys).astype(np.uint64)
        else:
            e164 = np.zeros(count, dtype=np.uint64)
        problems: NDArray[np.uint8] | None = None
        if message.problems:
            problems = np.frombuffer(message.problems, dtype=np.uint8)
        elif message.reasons:  # details without problems: every number of the batch is valid
            problems = np.zeros(count, dtype=np.uint8)
        return cls(
            inputs=inputs,
            e164=e164,
            blocked=_unpack(message.blocked, count),
            invalid=invalid,
            mobile_flag=_unpack(message.mobile_flag, count) if message.mobile_flag else np.zeros(count, bool),
            reasons=np.frombuffer(message.reasons, dtype=np.uint8) if message.reasons else None,
            line_types=np.frombuffer(message.line_types, dtype=np.uint8) if message.line_types else None,
            valid_until_days=(
                np.frombuffer(message.valid_until_days_le, dtype="<u4").astype(np.uint32)
                if message.valid_until_days_le
                else None
            ),
            register_version=message.register_version,
            register_date=_datetime(message.register_date, message.HasField("register_date")),
            valid_until=_datetime(message.valid_until, message.HasField("valid_until")),
            message=message,
            problems=problems,
        )


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: str
    source: str
    count: int
    loaded_at: datetime | None
    adds: int
    removes: int
    kind: str


@dataclass(frozen=True, slots=True)
class ListInfo:
    """One served list: the register or a caller's list."""

    kind: ListKind
    caller: str
    version: str
    source: str
    count: int
    register_date: datetime | None
    loaded_at: datetime | None
    checksum: str
    synthetic: bool
    index_bytes: int
    history: tuple[VersionInfo, ...]

    @classmethod
    def from_proto(cls, message: lookup_pb2.ListInfo) -> ListInfo:
        return cls(
            kind=ListKind(message.list.kind),
            caller=message.list.caller,
            version=message.version,
            source=message.source,
            count=message.count,
            register_date=_datetime(message.register_date, message.HasField("register_date")),
            loaded_at=_datetime(message.loaded_at, message.HasField("loaded_at")),
            checksum=message.checksum,
            synthetic=message.synthetic,
            index_bytes=message.index_bytes,
            history=tuple(
                VersionInfo(
                    version=item.version,
                    source=item.source,
                    count=item.count,
                    loaded_at=_datetime(item.loaded_at, item.HasField("loaded_at")),
                    adds=item.adds,
                    removes=item.removes,
                    kind=item.kind,
                )
                for item in message.history
            ),
        )


@dataclass(frozen=True, slots=True)
class RegisterInfo:
    """What the server serves: the register, the callers' lists, when it started, its version."""

    register: ListInfo
    lists: tuple[ListInfo, ...]
    server_started_at: datetime | None
    server_version: str

    @classmethod
    def from_proto(cls, message: lookup_pb2.RegisterInfo) -> RegisterInfo:
        return cls(
            register=ListInfo.from_proto(message.register),
            lists=tuple(ListInfo.from_proto(item) for item in message.lists),
            server_started_at=_datetime(message.server_started_at, message.HasField("server_started_at")),
            server_version=message.server_version,
        )
