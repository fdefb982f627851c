"""CheckAddressee and CheckAddresseeStream (NIX-Adresserat): proto in, keys and rules out. No rules here.

Theory of operation:
- Conversion only: a request's fields (or a batch's columns) become `addressing.addressee_keys`, the
  mail rules decide (`policy._mail.decide_mail`), and the answer is converted back. One state per
  request or batch (``holder.current()`` once, or the `FreshnessGate` for ``min_version``), so every
  batch answers from exactly one register version, and says which.
- The methods are plain functions of ``(request, context)`` (plus an optional state already taken), so a
  thin sync or async wrapper in the servicer calls them; `LookupServicer` does (`_lookup`).
- Who may ask: exactly as for Check (docs/security.md): role ``check`` and a caller the principal may act
  as (`authorize`); a principal with one caller gets it when the request leaves it empty. A caller's
  mail lists are only ever read for that caller, so one company's lists never touch another's answers.
- Limits are checked before any work and named in the error: at most `max_batch` rows per batch, every
  non-empty column of a batch as long as the row count, each field at most `MAX_FIELD_CHARS` characters.
- An invalid personnummer or an incomplete address is an answer (INVALID / INVALID_ADDRESSEE with the
  reason in ``detail`` or ``problems``), never an error; no digit of a personnummer is ever in a log
  line or an error message.
- Expiry: once the address register's date + ``--address-validity-months`` has passed, a request whose
  purpose the register applies to fails with FAILED_PRECONDITION naming the date, as Check does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from nixlookup.server.addressing import (
    ADDRESSEE_COLUMNS,
    AddresseeKeys,
    AddressKeyCache,
    addressee_keys,
    row_count,
    row_problem,
)
from nixlookup.server.errors import InvalidArgumentError
from nixlookup.server.policy._dates import midnight_of_day
from nixlookup.server.policy._mail import MailDecisions, MailSettings, decide_mail, mail_lists_used
from nixlookup.server.rpc._auth import authorize, current_principal
from nixlookup.server.rpc._convert import datetime_to_timestamp, list_versions, pack_bits
from nixlookup.server.rpc._freshness import FreshnessGate
from nixlookup.server.rpc._limits import ServiceLimits
from nixlookup.server.rpc._metering import Meter
from nixlookup.server.rpc._principals import Role
from nixlookup.server.store import ServingState, StateHolder
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import MatchedOn, Purpose, Reason, Verdict

__all__ = ["MAX_FIELD_CHARS", "MailLookup"]

MAX_FIELD_CHARS: Final = 256
"""The longest field a row may carry (a name, street ...): longer is malformed, not a person."""
_PURPOSES: Final = frozenset(int(purpose) for purpose in Purpose)
_RULE_TEXT: Final = {
    Reason.INVALID_ADDRESSEE: "invalid addressee",
    Reason.COMPANY_OPT_OUT: "on the company's own 'no more mail' list",
    Reason.EXEMPT_PURPOSE: "purpose outside NIX-Adresserat's scope",
    Reason.CUSTOMER_RELATIONSHIP: "live customer relationship with the company",
    Reason.CONSENT: "the person's live consent to the company",
    Reason.NIX_ADRESSERAT_REGISTERED: "registered in NIX-Adresserat: no addressed direct mail",
    Reason.NOT_REGISTERED: "not in NIX-Adresserat",
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _purpose(value: int) -> Purpose:
    if value not in _PURPOSES:
        raise InvalidArgumentError(
            f"purpose {value} is not a known Purpose; use one of "
            + ", ".join(f"{p.name}={int(p)}" for p in Purpose)
        )
    return Purpose(value)


def _check_fields(columns: dict[str, Sequence[str]]) -> None:
    for name, values in columns.items():
        longest = max(map(len, values), default=0)
        if longest > MAX_FIELD_CHARS:
            raise InvalidArgumentError(
                f"{name} has an entry of {longest} characters, over the limit of {MAX_FIELD_CHARS}"
            )


class MailLookup:
    """The NIX-Adresserat part of the Lookup service (see the module doc)."""

    def __init__(
        self,
        holder: StateHolder,
        settings: MailSettings,
        *,
        limits: ServiceLimits | None = None,
        meter: Meter | None = None,
        freshness: FreshnessGate | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._holder = holder
        self._settings = settings
        self._limits = limits or ServiceLimits()
        self._meter = meter or Meter()
        self._freshness = freshness or FreshnessGate(holder)
        self._clock = clock
        self._cache = AddressKeyCache()

    def _state(self, min_version: Sequence[lookup_pb2.ListPosition], context: Any) -> ServingState:
        remaining = context.time_remaining() if context is not None else None
        return self._freshness.state_for(min_version, remaining)

    def _decide(
        self, state: ServingState, columns: dict[str, Sequence[str]], caller: str, purpose: Purpose
    ) -> tuple[AddresseeKeys, MailDecisions]:
        _check_fields(columns)
        today = self._clock().date()
        keys = addressee_keys(columns, reference_date=today, cache=self._cache)
        decisions = decide_mail(
            state, keys, caller=caller, purpose=purpose, now=self._clock(), settings=self._settings
        )
        return keys, decisions

    def _count(self, caller: str, decisions: MailDecisions) -> tuple[int, int]:
        blocked = int(np.count_nonzero(decisions.verdicts == int(Verdict.BLOCKED)))
        invalid = int(np.count_nonzero(decisions.verdicts == int(Verdict.INVALID)))
        self._meter.count(
            current_principal().name,
            caller,
            allowed=len(decisions.verdicts) - blocked - invalid,
            blocked=blocked,
            invalid=invalid,
        )
        return blocked, invalid

    # -- CheckAddressee -----------------------------------------------------------------------------
    def check_addressee(
        self, request: lookup_pb2.CheckAddresseeRequest, context: Any, *, state: ServingState | None = None
    ) -> lookup_pb2.CheckAddresseeResponse:
        """One addressee's answer (`state`: one already taken for the request's min_version)."""
        purpose = _purpose(request.purpose)
        caller = authorize(current_principal(), Role.CHECK, request.caller)
        if state is None:
            state = self._state(request.min_version, context)
        columns: dict[str, Sequence[str]] = {name: [getattr(request, name)] for name in ADDRESSEE_COLUMNS}
        keys, decisions = self._decide(state, columns, caller, purpose)
        verdict, reason = Verdict(int(decisions.verdicts[0])), Reason(int(decisions.reasons[0]))
        register = decisions.register.meta
        response = lookup_pb2.CheckAddresseeResponse(
            verdict=int(verdict),  # type: ignore[arg-type]
            reason=int(reason),  # type: ignore[arg-type]
            matched_on=int(decisions.matched_on[0]),  # type: ignore[arg-type]
            register_version=register.version,
            register_date=datetime_to_timestamp(register.register_date),
            lists_used=list_versions(mail_lists_used(state, caller)),
        )
        until = int(decisions.valid_until_days[0])
        if until:
            response.valid_until.CopyFrom(datetime_to_timestamp(midnight_of_day(until)))
        detail = row_problem(keys, 0) if verdict is Verdict.INVALID else _RULE_TEXT.get(reason, reason.name)
        matched = MatchedOn(int(decisions.matched_on[0]))
        if matched is not MatchedOn.NONE:
            detail += f" (matched on {matched.slug})"
        if caller and len(response.lists_used) == 1:
            detail += f"; caller {caller!r} has no mail lists on this server: only the register answered"
        response.detail = detail
        self._count(caller, decisions)
        return response

    # -- CheckAddresseeStream -----------------------------------------------------------------------
    def authorize_batch(self, batch: lookup_pb2.CheckAddresseeBatch) -> str:
        """The caller a batch acts as (a stream calls it once per distinct caller)."""
        return authorize(current_principal(), Role.CHECK, batch.caller)

    def answer_batch(
        self,
        batch: lookup_pb2.CheckAddresseeBatch,
        context: Any,
        *,
        caller: str | None = None,
        state: ServingState | None = None,
    ) -> tuple[lookup_pb2.CheckAddresseeBatchResult, int, int]:
        """One batch's result, and how many of its rows were blocked and invalid."""
        if caller is None:
            caller = self.authorize_batch(batch)
        purpose = _purpose(batch.purpose)
        columns: dict[str, Sequence[str]] = {name: getattr(batch, name) for name in ADDRESSEE_COLUMNS}
        count = row_count(columns)
        if count > self._limits.max_batch.value:
            raise InvalidArgumentError(
                f"CheckAddresseeBatch holds {count} rows, over the limit of {self._limits.max_batch.named()} "
                "per batch; split it into smaller batches"
            )
        for name, values in columns.items():
            if values and len(values) != count:
                raise InvalidArgumentError(
                    f"CheckAddresseeBatch.{name} has {len(values)} entries for {count} rows: every "
                    "non-empty column needs one entry per row"
                )
        if state is None:
            state = self._state(batch.min_version, context)
        result = lookup_pb2.CheckAddresseeBatchResult(count=count, batch_id=batch.batch_id)
        if count == 0:
            return result, 0, 0
        keys, decisions = self._decide(state, columns, caller, purpose)
        register = decisions.register.meta
        result.register_version = register.version
        result.register_date.CopyFrom(datetime_to_timestamp(register.register_date))
        result.lists_used.extend(list_versions(mail_lists_used(state, caller)))
        result.blocked = pack_bits(decisions.verdicts == int(Verdict.BLOCKED))
        result.invalid = pack_bits(decisions.verdicts == int(Verdict.INVALID))
        if decisions.valid_until is not None:
            result.valid_until.CopyFrom(datetime_to_timestamp(decisions.valid_until))
        if batch.want_details:
            result.reasons = decisions.reasons.tobytes()
            result.matched_on = decisions.matched_on.tobytes()
            result.valid_until_days_le = decisions.valid_until_days.astype("<u4", copy=False).tobytes()
            result.problems.extend(
                lookup_pb2.RowProblem(row=int(row), detail=row_problem(keys, int(row)))
                for row in np.flatnonzero(keys.invalid)
            )
        blocked, invalid = self._count(caller, decisions)
        return result, blocked, invalid
