"""Answers from memory: the server's `Policy.decide_one`, memoised per serving state and fact signature.

Theory of operation:
- A decision depends only on the facts the rule table reads (`nixlookup.server.policy`): the number's
  problem and line type, whether the register holds it, the caller's entry (membership and end day) on
  each of its lists, the purpose, today's date and whether the register is usable now. `Answers`
  computes that raw signature per number (one register probe, one probe per caller list) and asks the
  server's own `Policy.decide_one` only the first time a signature is seen; later numbers with the same
  signature reuse its verdict, reason, valid_until, mobile flag and detail. So every answer comes from the
  same rule table as the server's `Check`, walked by the same function; nothing about the rules is
  written down here.
- The memo belongs to one serving state (one version of every list) and one stretch of time: it is
  cleared on a new state, at UTC midnight (lists' end days are compared with today), and at the moments
  the register becomes usable or expires (`valid_until_for`, `MAX_CLOCK_SKEW`). A decision that raises
  (an expired register) is never memoised: each such check raises again.
- The parts of a result that are the same for every number of a (state, caller) (register version and
  date, the lists used and their versions, the "caller has no lists" note the server adds) are built once
  per state; a result is then one `CheckResult` filled through its slots (~1 us instead of ~2 us through
  the frozen dataclass's `__init__`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from nixlookup.client.results import ANSWERED_BY_REPLICA, CheckResult, ListVersion
from nixlookup.server.index import Index
from nixlookup.server.lists import CALLER_LISTS
from nixlookup.server.numbering import ParsedNumber, Problem
from nixlookup.server.policy import Policy, valid_until_for
from nixlookup.server.store import MAX_CLOCK_SKEW, ServingState
from nixlookup.v1.vocabulary import Purpose

__all__ = ["MAX_MEMO_ENTRIES", "Answers"]

MAX_MEMO_ENTRIES = 65_536
"""Distinct fact signatures kept per state (register-only checks have at most a few dozen; end days on
a caller's lists make more); past it the memo starts over, which costs one `decide_one` per signature."""

_FIELDS = tuple(field.name for field in dataclasses.fields(CheckResult))
_ORDER = (
    "verdict", "reason", "e164", "line_type", "register_version", "register_date", "valid_until", "detail",
    "mobile_flag", "lists_used", "answered_by", "problem",
)  # fmt: skip
if _FIELDS != _ORDER:  # the unrolled fill in `Answers.answer` names every field once, in this order
    raise ImportError(f"CheckResult's fields changed ({_FIELDS}); update nixlookup.replica._answers")


def _setter(name: str) -> Callable[[Any, Any], None]:
    """The slot's own setter: fills a new frozen `CheckResult` without the frozen `__setattr__` detour."""
    setter: Callable[[Any, Any], None] = CheckResult.__dict__[name].__set__
    return setter


_set_verdict, _set_reason, _set_e164, _set_line_type = map(_setter, _ORDER[:4])
_set_register_version, _set_register_date, _set_valid_until, _set_detail = map(_setter, _ORDER[4:8])
_set_mobile_flag, _set_lists_used, _set_answered_by, _set_problem = map(_setter, _ORDER[8:])
_new = object.__new__
_OK = Problem.OK


@dataclasses.dataclass(frozen=True, slots=True)
class _CallerView:
    """What every answer for one caller from one state shares."""

    lists: tuple[tuple[Index, bool], ...]
    """The caller's lists in `CALLER_LISTS` order (absent ones left out), each with "is it dated?"."""
    lists_used: tuple[ListVersion, ...]
    note: str
    """Appended to the detail, as the server's Check does for a caller without lists."""


def _caller_view(state: ServingState, caller: str, policy: Policy) -> _CallerView:
    lists = []
    if caller:
        for spec in CALLER_LISTS:
            found = state.list_for(spec.kind, caller)
            if found is not None:
                lists.append((found, spec.dated))
    used = tuple(
        ListVersion(kind=use.key[0], caller=use.key[1], version=use.version, loaded_at=use.loaded_at)
        for use in policy.lists_used(state, caller)
    )
    note = ""
    if caller and len(used) == 1:
        note = f"; caller {caller!r} has no lists on this server: only the register answered"
    return _CallerView(tuple(lists), used, note)


def _epoch_end(state: ServingState, now: datetime) -> datetime:
    """Until when memoised decisions made at `now` from `state` hold: the next UTC midnight, or sooner
    when the register becomes usable or expires in between."""
    end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    register_date = state.register.meta.register_date
    for moment in (valid_until_for(register_date), _not_before(register_date)):
        if moment is not None and now < moment < end:
            end = moment
    return end


def _not_before(register_date: datetime) -> datetime | None:
    try:
        return register_date - MAX_CLOCK_SKEW
    except OverflowError:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class _Epoch:
    """The memo of one serving state for one stretch of time: read as a whole, replaced as a whole, so a
    check racing a swap in another thread never mixes one state's facts with another's decisions."""

    state: ServingState
    ends: float
    """time.time() at which its decisions may no longer hold (`_epoch_end`)."""
    views: dict[str, _CallerView]
    memo: dict[tuple[Any, ...], tuple[Any, ...]]


class Answers:
    """One replica's answers: see the module doc. Safe under threads: a race costs at most a repeated
    `decide_one` (each check works on one `_Epoch`; dict operations are atomic)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._epoch: _Epoch | None = None

    def _start_epoch(self, state: ServingState, now: float) -> _Epoch:
        epoch = _Epoch(state, _epoch_end(state, datetime.fromtimestamp(now, UTC)).timestamp(), {}, {})
        self._epoch = epoch
        return epoch

    def answer(
        self, state: ServingState, parsed: ParsedNumber, caller: str, purpose: Purpose, now: float
    ) -> CheckResult:
        """The answer for `parsed` as `caller` for `purpose` at `now` (time.time()), from `state`;
        raises what `decide_one` raises (an expired register)."""
        epoch = self._epoch
        if epoch is None or epoch.state is not state or now >= epoch.ends:
            epoch = self._start_epoch(state, now)
        view = epoch.views.get(caller)
        if view is None:
            view = epoch.views[caller] = _caller_view(state, caller, self.policy)
        key = parsed.key
        problem = parsed.problem
        # The problem leads every signature: IntEnums and bools compare equal across kinds (MOBILE == EMPTY
        # == True == 1), so only a leading field that differs keeps valid and invalid signatures apart.
        if problem is _OK:
            signature: tuple[Any, ...] = (
                problem,
                purpose,
                caller,
                parsed.line_type,
                state.register.contains(key),
            )
            for index, dated in view.lists:
                if index.contains(key):
                    signature += (index.value_of(key) if dated else 0,)
                else:
                    signature += (None,)
        else:
            signature = (problem, purpose, caller, parsed.line_type)
        memo = epoch.memo
        values = memo.get(signature)
        if values is None:
            values = self._decide(state, parsed=parsed, caller=caller, purpose=purpose, now=now, view=view)
            if len(memo) >= MAX_MEMO_ENTRIES:
                memo.clear()
            memo[signature] = values
        verdict, reason, _, line_type, version, register_date, valid_until, detail, mobile, used, by, _ = (
            values
        )
        result = _new(CheckResult)
        _set_verdict(result, verdict)
        _set_reason(result, reason)
        _set_e164(result, key)
        _set_line_type(result, line_type)
        _set_register_version(result, version)
        _set_register_date(result, register_date)
        _set_valid_until(result, valid_until)
        _set_detail(result, detail)
        _set_mobile_flag(result, mobile)
        _set_lists_used(result, used)
        _set_answered_by(result, by)
        _set_problem(result, problem)
        return result

    def _decide(
        self,
        state: ServingState,
        *,
        parsed: ParsedNumber,
        caller: str,
        purpose: Purpose,
        now: float,
        view: _CallerView,
    ) -> tuple[Any, ...]:
        decision = self.policy.decide_one(
            state, parsed, caller=caller, purpose=purpose, now=datetime.fromtimestamp(now, UTC)
        )
        meta = state.register.meta
        fields = {
            "verdict": decision.verdict,
            "reason": decision.reason,
            "e164": parsed.key,
            "line_type": parsed.line_type,
            "register_version": meta.version,
            "register_date": meta.register_date,
            "valid_until": decision.valid_until,
            "detail": decision.detail + view.note,
            "mobile_flag": decision.mobile_flag,
            "lists_used": view.lists_used,
            "answered_by": ANSWERED_BY_REPLICA,
            "problem": parsed.problem,
        }
        return tuple(fields[name] for name in _ORDER)
