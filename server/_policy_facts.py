"""The facts the NIX rules test, for one number (`OneFacts`) and for a batch (`BatchFacts`).

Each rule of the policy table is a condition over these facts. Facts are computed lazily and at most
once: a number decided by an early rule (invalid, opted out, exempt purpose) never pays for the register
lookup, and a batch whose purpose is exempt never touches the register at all.

Both classes answer the same questions with the same meaning; `OneFacts` asks the caller's lists
directly (a few scalar lookups), `BatchFacts` asks them through the caller's `CallerOverlay` (one
vectorised probe per batch). `tests/test_policy_agreement.py` holds the two to exact agreement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._policy_overlay import FOREVER, MAX_END_DAY, CallerHits, CallerOverlay
from nixlookup.server.index import Index
from nixlookup.server.numbering import LineType, ParsedBatch, ParsedNumber, Problem
from nixlookup.server.state import ListKind, ServingState
from nixlookup.server.vocabulary import Purpose

__all__ = [
    "EXEMPT_PURPOSES",
    "BatchFacts",
    "Mask",
    "OneFacts",
    "Positions",
    "Selection",
    "relationship_counts_until",
]

Mask = NDArray[np.bool_]
"""One bool per number of the batch."""

# Plain ints: reading an enum member costs a metaclass __getattr__ call on Python 3.11, per batch.
_OK = int(Problem.OK)
_MOBILE = int(LineType.MOBILE)
Positions = NDArray[np.intp]
"""Ascending positions in the batch: the cheap form of a mask that holds for few numbers."""
Selection = Mask | Positions | bool
"""Which numbers of a batch a rule applies to: a mask, positions, or all (True) / none (False)."""

_Owner = TypeVar("_Owner")
_Value = TypeVar("_Value")


class lazy(Generic[_Owner, _Value]):  # noqa: N801 - used like the decorator it replaces
    """`functools.cached_property` without its per-access lock (Python 3.11 takes an RLock on every read).

    A non-data descriptor: the first read computes the value and stores it in the instance's __dict__,
    which shadows the descriptor, so later reads are plain attribute reads. Facts objects live for one
    decision on one thread, so the lock bought nothing.
    """

    def __init__(self, compute: Callable[[_Owner], _Value]) -> None:
        self._compute = compute
        self._name = compute.__name__
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, instance: _Owner, owner: type[Any] | None = None) -> _Value: ...
    def __get__(self, instance: _Owner | None, owner: type[Any] | None = None) -> Self | _Value:
        if instance is None:
            return self
        value = self._compute(instance)
        instance.__dict__[self._name] = value
        return value


EXEMPT_PURPOSES: frozenset[Purpose] = frozenset(
    {
        Purpose.MARKET_RESEARCH,
        Purpose.PUBLIC_INFORMATION,
        Purpose.POLITICAL,
        Purpose.RELIGIOUS,
        Purpose.PUBLIC_INTEREST,
    }
)
"""Purposes outside the register's scope (nixtelefon.org/undantagen)."""


def relationship_counts_until(end_day: int, grace_days: int) -> int:
    """The last day a relationship that ended on `end_day` still counts (0 = it has not ended)."""
    return 0 if end_day == 0 else end_day + grace_days


class OneFacts:
    """What the rules need to know about one number, looked up on first use."""

    def __init__(
        self,
        state: ServingState,
        parsed: ParsedNumber,
        *,
        caller: str,
        purpose: Purpose,
        today: int,
        grace_days: int,
    ) -> None:
        self._state = state
        self._caller = caller
        self.key = parsed.key
        problem = parsed.problem
        self.problem = problem if type(problem) is Problem else Problem(problem)
        self.valid = self.problem == _OK
        self.exempt_purpose = purpose in EXEMPT_PURPOSES
        self.mobile = self.valid and parsed.line_type == _MOBILE
        self.today = today
        self.grace_days = grace_days

    def _list(self, kind: ListKind) -> Index | None:
        if not self._caller:  # no caller, no lists: the common dialer call skips three lookups
            return None
        return self._state.list_for(kind, self._caller)

    def _end_day(self, kind: ListKind) -> int | None:
        """The entry's end day on the caller's list of `kind` (0 = no end), None when not on it."""
        found = self._list(kind)
        if not self.valid or found is None or not found.contains(self.key):
            return None
        # Clamped like the bulk path's overlay (20-bit days, i.e. up to the year 4840).
        return min(found.value_of(self.key) or 0, MAX_END_DAY)

    @lazy
    def opted_out(self) -> bool:
        found = self._list(ListKind.OPT_OUT)
        return self.valid and found is not None and found.contains(self.key)

    @lazy
    def relationship_until(self) -> int | None:
        """Last day the caller's relationship counts (0 = ongoing); None when there is none."""
        end = self._end_day(ListKind.RELATIONSHIP)
        return None if end is None else relationship_counts_until(end, self.grace_days)

    @lazy
    def relationship_live(self) -> bool:
        until = self.relationship_until
        return until is not None and (until == 0 or until >= self.today)

    @lazy
    def consent_until(self) -> int | None:
        """Last day the consent counts (0 = no expiry); None when there is none."""
        return self._end_day(ListKind.CONSENT)

    @lazy
    def consent_live(self) -> bool:
        until = self.consent_until
        return until is not None and (until == 0 or until >= self.today)

    @lazy
    def registered(self) -> bool:
        return self.valid and self._state.register.contains(self.key)

    @property
    def mobile_flag(self) -> bool:
        """Mobile, purpose not exempt, and neither a live relationship nor a live consent."""
        return (
            self.mobile and not self.exempt_purpose and not self.relationship_live and not self.consent_live
        )

    def cap_day(self, kind: ListKind) -> int:
        """The day the answer's basis ends for a rule resting on list `kind` (0 = no end)."""
        if kind is ListKind.RELATIONSHIP:
            return self.relationship_until or 0
        if kind is ListKind.CONSENT:
            return self.consent_until or 0
        return 0


class BatchFacts:
    """What the rules need to know about a batch of numbers, as masks, computed on first use."""

    def __init__(
        self,
        state: ServingState,
        parsed: ParsedBatch,
        *,
        overlay: CallerOverlay | None,
        purpose: Purpose,
        today: int,
    ) -> None:
        """`overlay` holds the caller's lists with the grace period already applied."""
        self._state = state
        self._overlay = overlay
        self.keys = parsed.keys
        self.size = int(parsed.keys.size)
        self.invalid: Mask = parsed.problems != _OK
        self.exempt_purpose = purpose in EXEMPT_PURPOSES
        self._line_types = parsed.line_types
        self.today = today

    @lazy
    def hits(self) -> CallerHits | None:
        """The numbers on any of the caller's lists (None: none are, or the caller has no lists)."""
        if self._overlay is None:
            return None
        return self._overlay.lookup(self.keys)

    def _select(self, at_hits: Mask) -> Positions | bool:
        """Batch positions of the hits where `at_hits` holds (False when none do)."""
        hits = self.hits
        if hits is None or not at_hits.any():
            return False
        selected: Positions = hits.positions[at_hits]
        return selected

    @lazy
    def relationship_live_at_hits(self) -> Mask:
        hits = self.hits
        if hits is None:
            return np.zeros(0, dtype=np.bool_)
        live: Mask = hits.relationship_until >= self.today
        return live

    @lazy
    def consent_live_at_hits(self) -> Mask:
        hits = self.hits
        if hits is None:
            return np.zeros(0, dtype=np.bool_)
        live: Mask = hits.consent_until >= self.today
        return live

    @lazy
    def opted_out(self) -> Positions | bool:
        hits = self.hits
        if hits is None:
            return False
        return self._select(hits.opted_out)

    @lazy
    def relationship_live(self) -> Positions | bool:
        return self._select(self.relationship_live_at_hits)

    @lazy
    def consent_live(self) -> Positions | bool:
        return self._select(self.consent_live_at_hits)

    @lazy
    def registered(self) -> Mask:
        return self._state.register.contains_many(self.keys)

    @lazy
    def mobile(self) -> Mask:
        mobile: Mask = self._line_types == _MOBILE
        np.logical_and(mobile, ~self.invalid, out=mobile)
        return mobile

    @lazy
    def mobile_flag(self) -> Mask:
        """Mobile, purpose not exempt, and neither a live relationship nor a live consent."""
        if self.exempt_purpose:
            return np.zeros(self.size, dtype=np.bool_)
        hits = self.hits
        if hits is None:
            return self.mobile
        flag = self.mobile.copy()
        flag[hits.positions[self.relationship_live_at_hits | self.consent_live_at_hits]] = False
        return flag

    def cap_days_at_hits(self, kind: ListKind) -> NDArray[np.int64]:
        """Per hit, the last day the basis of a rule resting on list `kind` counts (FOREVER = no end)."""
        hits = self.hits
        if hits is None:
            return np.zeros(0, dtype=np.int64)
        if kind is ListKind.RELATIONSHIP:
            return hits.relationship_until
        if kind is ListKind.CONSENT:
            return hits.consent_until
        return np.full(hits.positions.size, FOREVER, dtype=np.int64)
