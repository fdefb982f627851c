"""NIX-Adresserat on the client side: requests and results of CheckAddressee and CheckAddresseeStream.

Theory of operation:
- An addressee is a mapping (or keyword arguments) with any of ``personnummer, name, street, postcode,
  city, care_of`` (`ADDRESSEE_FIELDS`); the server normalises and keys it, so the client sends the texts
  as written. `addressee_request` builds one CheckAddresseeRequest, `addressee_batches` cuts rows into
  CheckAddresseeBatch messages of `batch_size` rows as columns.
- `AddresseeResult` is one answer (verdict, reason, matched_on, the register version and date,
  valid_until, detail); `addressee_results` unpacks a batch result (bit-packed blocked/invalid, reason and
  matched_on bytes, per-row valid_until days, the invalid rows' problems) into one per row, in order.
- `Client.check_addressee` / `Client.check_addressees` and their `AsyncClient` twins are thin wrappers
  over these, so both clients build and read the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

import numpy as np

from nixlookup.client.results import ListVersion, VerdictFlags, _datetime, day_to_date
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import MatchedOn, Purpose, Reason, Verdict

__all__ = [
    "ADDRESSEE_FIELDS",
    "DEFAULT_MAIL_BATCH_ROWS",
    "AddresseeResult",
    "addressee_batches",
    "addressee_request",
    "addressee_results",
]

ADDRESSEE_FIELDS: Final = ("personnummer", "name", "street", "postcode", "city", "care_of")
DEFAULT_MAIL_BATCH_ROWS: Final = 10_000

Addressee = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class AddresseeResult(VerdictFlags):
    """The answer for one addressee."""

    verdict: Verdict
    reason: Reason
    matched_on: MatchedOn
    register_version: str
    register_date: datetime | None
    valid_until: date | datetime | None
    detail: str
    lists_used: tuple[ListVersion, ...] = ()

    @classmethod
    def from_proto(cls, message: lookup_pb2.CheckAddresseeResponse) -> AddresseeResult:
        return cls(
            verdict=Verdict(message.verdict),
            reason=Reason(message.reason),
            matched_on=MatchedOn(message.matched_on),
            register_version=message.register_version,
            register_date=_datetime(message.register_date, message.HasField("register_date")),
            valid_until=_datetime(message.valid_until, message.HasField("valid_until")),
            detail=message.detail,
            lists_used=tuple(ListVersion.from_proto(item) for item in message.lists_used),
        )


def _fields(addressee: Addressee) -> dict[str, str]:
    unknown = set(addressee) - set(ADDRESSEE_FIELDS)
    if unknown:
        raise ValueError(f"unknown addressee fields {sorted(unknown)}; use {', '.join(ADDRESSEE_FIELDS)}")
    return {name: str(addressee.get(name) or "") for name in ADDRESSEE_FIELDS}


def addressee_request(
    addressee: Addressee, *, caller: str = "", purpose: Purpose | int | str = Purpose.SALES
) -> lookup_pb2.CheckAddresseeRequest:
    """The CheckAddresseeRequest for one addressee."""
    chosen = int(Purpose.parse(purpose))
    return lookup_pb2.CheckAddresseeRequest(**_fields(addressee), caller=caller, purpose=chosen)  # type: ignore[arg-type]


def addressee_batches(
    rows: Iterable[Addressee],
    *,
    caller: str = "",
    purpose: Purpose | int | str = Purpose.SALES,
    batch_size: int = DEFAULT_MAIL_BATCH_ROWS,
) -> Iterator[lookup_pb2.CheckAddresseeBatch]:
    """`rows` as CheckAddresseeBatch messages of at most `batch_size` rows (with details)."""
    chosen = int(Purpose.parse(purpose))
    columns: dict[str, list[str]] = {name: [] for name in ADDRESSEE_FIELDS}
    batch_id = 0

    def flush() -> lookup_pb2.CheckAddresseeBatch:
        nonlocal batch_id
        batch = lookup_pb2.CheckAddresseeBatch(
            caller=caller,
            purpose=chosen,  # type: ignore[arg-type]
            want_details=True,
            batch_id=batch_id,
        )
        for name, values in columns.items():
            if any(values):
                getattr(batch, name).extend(values)
            values.clear()
        batch_id += 1
        return batch

    count = 0
    for row in rows:
        for name, value in _fields(row).items():
            columns[name].append(value)
        count += 1
        if count == batch_size:
            yield flush()
            count = 0
    if count:
        yield flush()


def _bits(packed: bytes, count: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(packed, np.uint8), bitorder="little")[:count].astype(bool)


def addressee_results(result: lookup_pb2.CheckAddresseeBatchResult) -> list[AddresseeResult]:
    """One `AddresseeResult` per row of a batch result (details requested), in order."""
    count = result.count
    invalid = _bits(result.invalid, count)
    blocked = _bits(result.blocked, count)
    reasons = np.frombuffer(result.reasons, np.uint8)
    matched = np.frombuffer(result.matched_on, np.uint8)
    days = np.frombuffer(result.valid_until_days_le, "<u4")
    problems = {problem.row: problem.detail for problem in result.problems}
    register_date = _datetime(result.register_date, result.HasField("register_date"))
    answers = []
    for row in range(count):
        verdict = Verdict.INVALID if invalid[row] else Verdict.BLOCKED if blocked[row] else Verdict.ALLOWED
        reason = Reason(int(reasons[row])) if len(reasons) else Reason.UNSPECIFIED
        answers.append(
            AddresseeResult(
                verdict=verdict,
                reason=reason,
                matched_on=MatchedOn(int(matched[row])) if len(matched) else MatchedOn.NONE,
                register_version=result.register_version,
                register_date=register_date,
                valid_until=day_to_date(int(days[row])) if len(days) else None,
                detail=problems.get(row, reason.name),
            )
        )
    return answers
