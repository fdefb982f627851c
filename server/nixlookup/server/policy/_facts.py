"""The facts the NIX rules test: for one number (`OneFacts`), and as one small code per number of a batch.

Each rule of the policy table is a condition over a `Facts`: is the number valid, opted out, on a live
relationship or consent, registered, mobile, and is the purpose exempt.

- `OneFacts` (the `Check` path) looks facts up lazily and at most once, so a number decided by an early
  rule (invalid, opted out, exempt purpose) never pays for the register lookup.
- A batch (the `CheckStream` path) holds its facts as one `Fact` bit set per number, a uint8 *code*.
  There are only 2**6 codes, so the policy evaluates the rule table once per code (`CodedFacts`, the same
  conditions as for one number) into lookup tables, and a batch's answers are a gather from them. The
  codes are filled by `batch_codes` (validity and line type), the caller's lists (`apply_caller_lists`,
  one compiled loop that also caps `valid_until` where a relationship or consent decided), and the
  register (`Fact.REGISTERED`), the last only for numbers whose answer can still depend on it.

`tests/test_policy_agreement.py` holds the two paths to exact agreement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntFlag
from types import MappingProxyType
from typing import Any, Generic, Protocol, Self, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.index import Index
from nixlookup.server.lists import CALLER_LISTS, ListRole, Register, lists_of, spec_of
from nixlookup.server.numbering import LineType, ParsedBatch, ParsedNumber, Problem
from nixlookup.server.policy._overlay import MAX_END_DAY, CallerOverlay
from nixlookup.server.store import ListKind, ServingState
from nixlookup.v1.vocabulary import Purpose

__all__ = [
    "ALL_CODES",
    "EXEMPTING_LISTS",
    "EXEMPT_PURPOSES",
    "FACT_OF_LIST",
    "REGISTERED",
    "CodedFacts",
    "Fact",
    "Facts",
    "OneFacts",
    "apply_caller_lists",
    "batch_codes",
    "relationship_counts_until",
]

# Plain ints: reading an enum member costs a metaclass __getattr__ call on Python 3.11, per batch.
_OK = int(Problem.OK)
_MOBILE = int(LineType.MOBILE)


class Fact(IntFlag):
    """The bits of a number's fact code that are not a list: the list bits come from `LIST_SPECS`."""

    INVALID = 1
    MOBILE = 2  # the line type; `CodedFacts.mobile` also needs the number to be valid


_LISTS = lists_of(Register.TELEFON)
FACT_OF_LIST: Mapping[ListKind, int] = MappingProxyType(
    {spec.kind: 4 << position for position, spec in enumerate(_LISTS)}
)
"""The fact-code bit each NIX-Telefon list kind sets: a live entry on the caller's list, or registered."""
REGISTERED = FACT_OF_LIST[ListKind.REGISTER]
EXEMPTING_LISTS: tuple[ListKind, ...] = tuple(
    spec.kind for spec in CALLER_LISTS if spec.role is ListRole.EXEMPTS
)
"""Lists whose live entry clears the mobile flag (a relationship, a consent)."""

ALL_CODES = 4 << len(_LISTS)
"""Every combination of fact bits: the size of the policy's per-code lookup tables."""

_MOBILE_BIT_SHIFT = int(Fact.MOBILE).bit_length() - 1


class Facts(Protocol):
    """What a rule's condition may read (both `OneFacts` and `CodedFacts` answer it)."""

    @property
    def valid(self) -> bool: ...
    @property
    def exempt_purpose(self) -> bool: ...
    def live(self, kind: ListKind) -> bool:
        """On the caller's list of `kind` with an entry that still counts today."""
        ...

    @property
    def registered(self) -> bool: ...
    @property
    def mobile(self) -> bool: ...
    @property
    def mobile_flag(self) -> bool: ...


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
        self._until: dict[ListKind, int | None] = {}

    def _list(self, kind: ListKind) -> Index | None:
        if not self._caller:  # no caller, no lists: the common dialer call skips three lookups
            return None
        return self._state.list_for(kind, self._caller)

    def until(self, kind: ListKind) -> int | None:
        """The last day the number's entry on the caller's list of `kind` counts (0 = no end), None when
        it is not on that list. Looked up once per kind."""
        if kind in self._until:
            return self._until[kind]
        found = self._list(kind)
        until: int | None = None
        if self.valid and found is not None and found.contains(self.key):
            spec = spec_of(kind)
            # Clamped like the bulk path's overlay (20-bit days, i.e. up to the year 4840).
            end = min(found.value_of(self.key) or 0, MAX_END_DAY) if spec.dated else 0
            until = relationship_counts_until(end, self.grace_days) if spec.grace else end
        self._until[kind] = until
        return until

    def live(self, kind: ListKind) -> bool:
        until = self.until(kind)
        return until is not None and (until == 0 or until >= self.today)

    @lazy
    def registered(self) -> bool:
        return self.valid and self._state.register.contains(self.key)

    @property
    def mobile_flag(self) -> bool:
        """Mobile, purpose not exempt, and no live entry on an exempting list (relationship, consent)."""
        return (
            self.mobile and not self.exempt_purpose and not any(self.live(kind) for kind in EXEMPTING_LISTS)
        )

    def cap_day(self, kind: ListKind) -> int:
        """The day the answer's basis ends for a rule resting on list `kind` (0 = no end)."""
        return self.until(kind) or 0


@dataclass(frozen=True, slots=True)
class CodedFacts:
    """The facts of one fact code, read as `Facts` (the policy evaluates its table over all 64 codes)."""

    code: int
    exempt_purpose: bool

    def _has(self, fact: Fact) -> bool:
        return bool(self.code & fact)

    @property
    def valid(self) -> bool:
        return not self._has(Fact.INVALID)

    def live(self, kind: ListKind) -> bool:
        return self.valid and bool(self.code & FACT_OF_LIST[kind])

    @property
    def registered(self) -> bool:
        return self.valid and bool(self.code & REGISTERED)

    @property
    def mobile(self) -> bool:
        return self.valid and self._has(Fact.MOBILE)

    @property
    def mobile_flag(self) -> bool:
        """Mobile, purpose not exempt, and no live entry on an exempting list (relationship, consent)."""
        return (
            self.mobile and not self.exempt_purpose and not any(self.live(kind) for kind in EXEMPTING_LISTS)
        )


_FIELDS = (
    np.array([FACT_OF_LIST[spec.kind] for spec in CALLER_LISTS], dtype=np.uint8),
    np.array([int(spec.kind) for spec in CALLER_LISTS], dtype=np.uint8),
)
"""Per overlay payload field (`CALLER_LISTS` order): the fact bit it sets and the list kind it caps."""


def batch_codes(parsed: ParsedBatch) -> NDArray[np.uint8]:
    """Each number's code with the facts the parse gives: `Fact.INVALID` and `Fact.MOBILE`."""
    codes: NDArray[np.uint8] = (parsed.problems != _OK).view(np.uint8)  # INVALID is bit 0
    mobile = (parsed.line_types == _MOBILE).view(np.uint8)
    codes |= mobile << np.uint8(_MOBILE_BIT_SHIFT)
    return codes


def apply_caller_lists(
    overlay: CallerOverlay,
    keys: NDArray[np.uint64],
    codes: NDArray[np.uint8],
    valid_until_days: NDArray[np.uint32],
    *,
    today: int,
    capped_by: NDArray[np.uint8],
    register_matters: NDArray[np.bool_],
) -> tuple[NDArray[np.intp], NDArray[np.uint64]]:
    """Fold the caller's lists into a batch: set each list's fact bit (`FACT_OF_LIST`) in `codes`,
    and where the code's deciding row rests on a relationship or consent (`capped_by`, per code: the
    ListKind, 0 for none) that ends before `valid_until_days`, make that day the answer's valid_until.
    Returns the positions (ascending) and keys of the numbers whose answer can still depend on the
    register (`register_matters`, per code): the ones the caller's lists did not decide.

    A relationship or consent is live while the last day it counts (grace applied, FOREVER without an
    end, 0 = not on that list) is today or later: the same rule as `OneFacts`, whose "0 = ongoing" is
    FOREVER here. The caps read the code before the register is asked: `CodeTable` checks that rows
    capped by a list come before the register row, so the REGISTERED bit never changes a cap.
    """
    from nixlookup.server.policy._kernels import apply_caller_lists_kernel  # numba loads on first use

    undecided: NDArray[np.intp]
    undecided_keys: NDArray[np.uint64]
    undecided, undecided_keys = apply_caller_lists_kernel(
        keys, codes, valid_until_days, today, capped_by, register_matters, *_FIELDS, *overlay.probe_parts
    )
    return undecided, undecided_keys
