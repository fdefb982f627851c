"""The NIX rules: may this caller call this number for this purpose, why, and until when.

Theory of operation:
- The rules are one ordered table, `rules_for(settings)` (the default is `NIX_RULES`). Each row names a
  condition, the verdict and reason it gives, and the source it rests on. **The first row whose
  condition holds decides.** Reading the table top to bottom is reading the law and the industry rules
  in order of precedence:

  1. invalid number                                  -> INVALID / INVALID_NUMBER
  2. on the caller's own opt-out list                -> BLOCKED / COMPANY_OPT_OUT
  3. purpose exempt from NIX                         -> ALLOWED / EXEMPT_PURPOSE
  4. live customer relationship with the caller      -> ALLOWED / CUSTOMER_RELATIONSHIP
  5. live consent to the caller                      -> ALLOWED / CONSENT
  6. in the NIX register                             -> BLOCKED / NIX_REGISTERED
  6b. mobile (only with block_mobile_without_relationship) -> BLOCKED / MOBILE_WITHOUT_RELATIONSHIP
  7. otherwise                                       -> ALLOWED / NOT_REGISTERED

- Row 6b sits after the register so a registered mobile number keeps the legal reason
  (NIX_REGISTERED), and after relationship and consent so those still allow the call; being after
  row 3 it only ever applies to purposes the register applies to (sales, marketing, fundraising).
  Without the option, the same condition only raises `mobile_flag`, a hint, never a block.
- "Live": a relationship counts while its end day is 0 (ongoing) or end + `relationship_grace_days`
  >= today; a consent while its expiry is 0 (none) or expiry >= today. Today is `now`'s UTC date.
- `valid_until`: every valid answer is good until the register version's date + 2 calendar months
  (`valid_until_for`, the day clamped: Dec 31 -> Feb 28/29). Once that has passed (or when the register is
  dated in the future) a request whose purpose the register applies to fails with `RegisterExpiredError`
  instead of an answer, and exempt-purpose answers carry no valid_until (`_expiry`). An answer resting on a
  relationship or a consent is good only until the day that relationship (with grace) or consent ends,
  where that is sooner; then `valid_until` is 00:00 UTC of that day, and `valid_until_days` is that day
  number. INVALID answers have none (None / 0).
- `decide_one` (scalar, for `Check`) walks the table for one number over `OneFacts`, which looks facts
  up lazily (a number decided by an early row never touches the register).
- `decide_many` (vectorised, for `CheckStream`) holds each number's facts as a 6-bit code
  (`_policy_facts.Fact`). `CodeTable` walks the same table, with the same conditions, once per code
  (64 of them, per kind of purpose) at start-up; a batch is then answered by gathers from those tables.
  So both paths apply literally the same rows, and a property test holds them to exact agreement. Per
  batch: the parse gives INVALID and MOBILE; the caller's three lists are probed once through a cached
  overlay (`_policy_overlay`, `_policy_probe`) in one compiled loop that also caps `valid_until` where a
  relationship or consent decided; then the register is asked only for the numbers whose answer can
  still depend on it (not invalid, opted-out or live-relationship numbers; none for an exempt purpose).
- A decision is computed from one `ServingState`: the caller takes the state once per RPC or batch,
  and `lists_used` names the versions of everything that state offered for the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._jit import compile_counts
from nixlookup.server.index import Index
from nixlookup.server.lists import CALLER_LISTS
from nixlookup.server.logs import get_logger
from nixlookup.server.numbering import PROBLEM_TEXT, ParsedBatch, ParsedNumber, classify_keys
from nixlookup.server.policy._bulk import answer_batch, warm_up_batch
from nixlookup.server.policy._dates import (
    as_utc,
    day_of,
    midnight_of_day,
)
from nixlookup.server.policy._expiry import VALID_MONTHS, expired_error, valid_until_for, validity_of
from nixlookup.server.policy._facts import (
    ALL_CODES,
    EXEMPT_PURPOSES,
    REGISTERED,
    CodedFacts,
    Facts,
    OneFacts,
)
from nixlookup.server.policy._overlay import CallerOverlay, OverlayCache
from nixlookup.server.store import REGISTER_KEY, ListKey, ListKind, PerStateMemo, ServingState
from nixlookup.v1.vocabulary import Purpose, Reason, Verdict

__all__ = [
    "EXEMPT_PURPOSES",
    "NIX_RULES",
    "VALID_MONTHS",
    "VERDICT_OF_REASON",
    "BatchDecision",
    "CodeTable",
    "Decision",
    "ListUse",
    "Policy",
    "PolicySettings",
    "Rule",
    "first_rule",
    "rules_for",
    "valid_until_for",
]

_log = get_logger("nixlookup.policy")

SOURCE_NIX_FOR_FORETAG = "nixtelefon.org/for-foretag"
SOURCE_NIX_UNDANTAGEN = "nixtelefon.org/undantagen"
SOURCE_SWEDMA = (
    "Swedma/Kontakta, etiska regler för telefonförsäljning (mobilnummer: endast befintliga kunder)"
)
SOURCE_NUMBERING = "E.164 / PTS Swedish numbering plan (libphonenumber SE metadata)"


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Server options that change the rules (set once at start-up)."""

    relationship_grace_days: int = 365
    """Days a customer relationship still counts after it ended (NIX: normally at most 12 months)."""
    block_mobile_without_relationship: bool = False
    """Turn the Swedma/Kontakta mobile rule from a flag (`mobile_flag`) into a block (row 6b)."""

    def __post_init__(self) -> None:
        if not 0 <= self.relationship_grace_days <= 3660:
            raise ValueError(
                f"relationship_grace_days must be within 0..3660, got {self.relationship_grace_days}"
            )


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the policy table."""

    number: str
    name: str
    verdict: Verdict
    reason: Reason
    source: str
    explanation: str
    when: Callable[[Facts], bool]
    """Does the row apply to this number (given no earlier row did)?"""
    capped_by: ListKind | None = None
    """The list whose end day limits `valid_until` for answers this row gives."""


def _always(facts: Facts) -> bool:
    return True


RULE_INVALID = Rule(
    number="1",
    name="invalid-number",
    verdict=Verdict.INVALID,
    reason=Reason.INVALID_NUMBER,
    source=SOURCE_NUMBERING,
    explanation="not a valid phone number",
    when=lambda f: not f.valid,
)
RULE_OPT_OUT = Rule(
    number="2",
    name="company-opt-out",
    verdict=Verdict.BLOCKED,
    reason=Reason.COMPANY_OPT_OUT,
    source=f"{SOURCE_NIX_FOR_FORETAG} (the company's own spärrlista wins over every exemption)",
    explanation="on the caller's own opt-out list",
    when=lambda f: f.live(ListKind.OPT_OUT),
)
RULE_EXEMPT_PURPOSE = Rule(
    number="3",
    name="exempt-purpose",
    verdict=Verdict.ALLOWED,
    reason=Reason.EXEMPT_PURPOSE,
    source=f"{SOURCE_NIX_UNDANTAGEN} (market research, public information, political, religious, "
    "public interest)",
    explanation="the purpose is outside the NIX register's scope",
    when=lambda f: f.exempt_purpose,
)
RULE_RELATIONSHIP = Rule(
    number="4",
    name="customer-relationship",
    verdict=Verdict.ALLOWED,
    reason=Reason.CUSTOMER_RELATIONSHIP,
    source=f"{SOURCE_NIX_UNDANTAGEN} (existing customer relationship, counting up to 12 months after it"
    " ended)",
    explanation="a live customer relationship with the caller",
    when=lambda f: f.live(ListKind.RELATIONSHIP),
    capped_by=ListKind.RELATIONSHIP,
)
RULE_CONSENT = Rule(
    number="5",
    name="consent",
    verdict=Verdict.ALLOWED,
    reason=Reason.CONSENT,
    source=f"{SOURCE_NIX_UNDANTAGEN} (the person's explicit consent to the company)",
    explanation="a live consent to the caller",
    when=lambda f: f.live(ListKind.CONSENT),
    capped_by=ListKind.CONSENT,
)
RULE_REGISTERED = Rule(
    number="6",
    name="nix-registered",
    verdict=Verdict.BLOCKED,
    reason=Reason.NIX_REGISTERED,
    source=f"{SOURCE_NIX_FOR_FORETAG} (sales, marketing and fundraising calls)",
    explanation="in the NIX register",
    when=lambda f: f.registered,
)
RULE_MOBILE = Rule(
    number="6b",
    name="mobile-without-relationship",
    verdict=Verdict.BLOCKED,
    reason=Reason.MOBILE_WITHOUT_RELATIONSHIP,
    source=SOURCE_SWEDMA,
    explanation="a mobile number with no customer relationship or consent (server blocks the ethics rule)",
    when=lambda f: f.mobile,
)
RULE_NOT_REGISTERED = Rule(
    number="7",
    name="not-registered",
    verdict=Verdict.ALLOWED,
    reason=Reason.NOT_REGISTERED,
    source=f"{SOURCE_NIX_FOR_FORETAG} (a checked number may be called for 2 months from the register's date)",
    explanation="not in the NIX register",
    when=_always,
)

NIX_RULES: tuple[Rule, ...] = (
    RULE_INVALID,
    RULE_OPT_OUT,
    RULE_EXEMPT_PURPOSE,
    RULE_RELATIONSHIP,
    RULE_CONSENT,
    RULE_REGISTERED,
    RULE_NOT_REGISTERED,
)
"""The default table (mobile numbers flagged, not blocked)."""


def rules_for(settings: PolicySettings) -> tuple[Rule, ...]:
    """The ordered table for these settings: `NIX_RULES`, plus row 6b when mobiles are blocked."""
    if not settings.block_mobile_without_relationship:
        return NIX_RULES
    at = NIX_RULES.index(RULE_REGISTERED) + 1
    return (*NIX_RULES[:at], RULE_MOBILE, *NIX_RULES[at:])


VERDICT_OF_REASON: dict[Reason, Verdict] = {rule.reason: rule.verdict for rule in (*NIX_RULES, RULE_MOBILE)}
_BLOCKED_BY_REASON = np.zeros(256, dtype=np.bool_)
_VERDICT_BY_REASON = np.zeros(256, dtype=np.uint8)
for _reason, _verdict in VERDICT_OF_REASON.items():
    _BLOCKED_BY_REASON[_reason] = _verdict is Verdict.BLOCKED
    _VERDICT_BY_REASON[_reason] = _verdict


@dataclass(frozen=True, slots=True)
class ListUse:
    """One list an answer rested on, by version."""

    key: ListKey
    version: str
    loaded_at: datetime


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one number."""

    verdict: Verdict
    reason: Reason
    valid_until: datetime | None
    mobile_flag: bool
    detail: str
    rule: str = ""
    """The number of the table row that decided ("1" ... "7", "6b")."""


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """The answers for a batch, one entry per number, in order."""

    blocked: NDArray[np.bool_]
    invalid: NDArray[np.bool_]
    reasons: NDArray[np.uint8]
    mobile_flag: NDArray[np.bool_]
    valid_until_days: NDArray[np.uint32]
    """Per number, the day number (days since 1970-01-01) of its valid_until; 0 for INVALID (and for every
    number of an exempt-purpose batch answered while the register is expired)."""
    valid_until: datetime | None
    """Register date + 2 months: the valid_until of this batch's NOT_REGISTERED answers (None for an
    exempt-purpose batch answered while the register is expired)."""

    @property
    def count(self) -> int:
        return int(self.reasons.size)

    def verdicts(self) -> NDArray[np.uint8]:
        """One Verdict value per number."""
        return _VERDICT_BY_REASON[self.reasons]


def first_rule(rules: tuple[Rule, ...], facts: Facts) -> Rule:
    """The row that decides: the first whose condition holds (the table ends in an "otherwise" row)."""
    return next(rule for rule in rules if rule.when(facts))


@dataclass(frozen=True, slots=True)
class CodeTable:
    """The rule table evaluated once per fact code (`_policy_facts.Fact`), for one kind of purpose.

    The bulk path's answers are gathers from these arrays, so they come from the very rows and
    conditions `decide_one` walks; nothing about the rules is written down a second time.
    """

    reasons: NDArray[np.uint8]
    blocked: NDArray[np.bool_]
    mobile_flag: NDArray[np.bool_]
    capped_by: NDArray[np.uint8]
    """The `ListKind` whose end day caps valid_until for the answer of each code; 0 for none."""
    register_matters: NDArray[np.bool_]
    """Per code (without the REGISTERED bit): would that bit change the answer? Not for invalid, opted-out,
    live-relationship or live-consent numbers, nor for any number when the purpose is exempt: those skip
    the register lookup."""
    needs_register: bool
    """Does the register matter for any code? Not for an exempt purpose: such batches never touch it."""

    @classmethod
    def build(cls, rules: tuple[Rule, ...], *, exempt: bool) -> CodeTable:
        decided = [first_rule(rules, CodedFacts(code, exempt)) for code in range(ALL_CODES)]
        reasons = np.array([rule.reason for rule in decided], dtype=np.uint8)
        capped_by = np.array([rule.capped_by or 0 for rule in decided], dtype=np.uint8)
        mobile_flag = np.array([CodedFacts(code, exempt).mobile_flag for code in range(ALL_CODES)])
        registered = np.arange(ALL_CODES) | REGISTERED
        if (capped_by != capped_by[registered]).any():
            # The bulk path caps valid_until before it asks the register (so that numbers the caller's
            # lists decide skip the register); that needs rows capped by a list to precede the register row.
            raise ValueError("a rule capped by a caller list must come before the register rule")
        register_matters = (reasons != reasons[registered]) | (mobile_flag != mobile_flag[registered])
        return cls(
            reasons=reasons,
            blocked=_BLOCKED_BY_REASON[reasons],
            mobile_flag=mobile_flag.astype(np.bool_),
            capped_by=capped_by,
            register_matters=register_matters,
            needs_register=bool(register_matters.any()),
        )


class Policy:
    """Applies the ordered rule table to numbers, one at a time or a batch at a time."""

    def __init__(self, settings: PolicySettings | None = None) -> None:
        self.settings = settings if settings is not None else PolicySettings()
        self.rules = rules_for(self.settings)
        self._code_tables = {exempt: CodeTable.build(self.rules, exempt=exempt) for exempt in (False, True)}
        self._overlays = OverlayCache(relationship_grace_days=self.settings.relationship_grace_days)
        self._overlays_of_state: PerStateMemo[CallerOverlay | None] = PerStateMemo()
        self._warmed_up = False

    def decide_one(
        self, state: ServingState, parsed: ParsedNumber, *, caller: str, purpose: Purpose, now: datetime
    ) -> Decision:
        """The answer for one number (the `Check` path)."""
        facts = OneFacts(
            state,
            parsed,
            caller=caller,
            purpose=purpose if type(purpose) is Purpose else Purpose(purpose),
            today=day_of(now),
            grace_days=self.settings.relationship_grace_days,
        )
        validity = validity_of(state.register.meta.register_date)
        usable = validity.usable_at(now)
        if not usable and not facts.exempt_purpose:
            raise expired_error(state.register.meta, now)
        rule = first_rule(self.rules, facts)
        if rule is RULE_INVALID:
            detail = f"rule 1 {rule.name}: {PROBLEM_TEXT.get(facts.problem, 'not a valid phone number')}"
            return Decision(rule.verdict, rule.reason, None, False, detail, rule.number)
        detail = f"rule {rule.number} {rule.name}: {rule.explanation}"
        if not usable:  # an exempt purpose: the answer never touched the register, nothing dates it
            return Decision(rule.verdict, rule.reason, None, facts.mobile_flag, detail, rule.number)
        valid_until = validity.valid_until
        if rule.capped_by is not None:
            cap = facts.cap_day(rule.capped_by)
            if cap and cap < day_of(valid_until):
                valid_until = midnight_of_day(cap)
        return Decision(rule.verdict, rule.reason, valid_until, facts.mobile_flag, detail, rule.number)

    def decide_many(
        self, state: ServingState, parsed: ParsedBatch, *, caller: str, purpose: Purpose, now: datetime
    ) -> BatchDecision:
        """The answers for a batch (the `CheckStream` path), vectorised, equal to `decide_one` per number."""
        exempt = Purpose(purpose) in EXEMPT_PURPOSES
        validity = validity_of(state.register.meta.register_date)
        valid_until: datetime | None = validity.valid_until
        if not validity.usable_at(now):
            if not exempt:
                raise expired_error(state.register.meta, now)
            valid_until = None  # exempt answers never touch the register: nothing dates them
        table = self._code_tables[exempt]
        until_day = 0 if valid_until is None else day_of(valid_until)
        blocked, invalid, reasons, mobile_flag, valid_until_days = answer_batch(
            table,
            state.register,
            self._overlay_for(state, caller),
            parsed,
            until_day=until_day,
            today=day_of(now),
        )
        return BatchDecision(
            blocked=blocked,
            invalid=invalid,
            reasons=reasons,
            mobile_flag=mobile_flag,
            valid_until_days=valid_until_days,
            valid_until=valid_until,
        )

    def lists_used(self, state: ServingState, caller: str) -> tuple[ListUse, ...]:
        """The register and every list the state holds for `caller`, with their versions."""
        used = [ListUse(REGISTER_KEY, state.register.meta.version, as_utc(state.register.meta.created_at))]
        if caller:
            for spec in CALLER_LISTS:
                found = state.list_for(spec.kind, caller)
                if found is not None:
                    used.append(
                        ListUse((spec.kind, caller), found.meta.version, as_utc(found.meta.created_at))
                    )
        return tuple(used)

    def warm_up(self, state: ServingState | None = None) -> float:
        """Load the bulk path's compiled loops (`_kernels`, `index`, `numbering`) from numba's on-disk
        cache, or compile them where the cache has none: ~5-10 s on a machine that never ran them, well
        under a second cached (most of it importing numba). With `state`, also for the array types of
        its register and caller overlays (a mapped snapshot's read-only arrays are a type of their own).
        `prepare` calls it before each state serves, so no batch pays for it. The first call logs how
        long it took and how many loops were compiled rather than loaded. Returns the seconds it took."""
        started = time.perf_counter()
        first = not self._warmed_up
        key = np.array([46701234567], dtype=np.uint64)
        if first:
            classify_keys(key)
            listed = Index.build(
                key, values=np.zeros(1, dtype=np.uint32), version="warm-up", source="warm-up"
            )
            listed.contains_many(key)
            overlay = CallerOverlay.build([listed] * len(CALLER_LISTS), relationship_grace_days=0)
            for table in self._code_tables.values():
                warm_up_batch(table, listed, overlay)
                warm_up_batch(table, listed, None)
        if state is not None:
            state.register.contains_many(key)
            overlays = [
                self._overlay_for(state, caller) for caller in {caller for (_, caller) in state.lists}
            ]
            for table in self._code_tables.values():
                for overlay in {id(o): o for o in [None, *overlays]}.values():
                    warm_up_batch(table, state.register, overlay)
        seconds = time.perf_counter() - started
        if first:
            self._warmed_up = True
            _log.info("bulk_kernels_ready", seconds=round(seconds, 3), **compile_counts())
        return seconds

    def prepare(self, state: ServingState) -> int:
        """Build the bulk path's per-caller structures for every caller with lists in `state`, and load
        the compiled loops for its arrays (`warm_up`).

        Optional: without it the first batch for a caller after a list change builds them (~0.2-0.5 s for
        600k listed numbers), and the first batch compiles the loops. Call it before swapping in a new
        state to take that off the request path. Returns how many callers were prepared.
        """
        callers = {caller for (_, caller) in state.lists}
        for caller in callers:
            self._overlay_for(state, caller)
        self.warm_up(state)
        return len(callers)

    def _overlay_for(self, state: ServingState, caller: str) -> CallerOverlay | None:
        if not caller:
            return None
        return self._overlays_of_state.get(state, caller, lambda: self._find_overlay(state, caller))

    def _find_overlay(self, state: ServingState, caller: str) -> CallerOverlay | None:
        lists = tuple(state.list_for(spec.kind, caller) for spec in CALLER_LISTS)
        if all(found is None for found in lists):
            return None
        return self._overlays.get(caller, lists)
