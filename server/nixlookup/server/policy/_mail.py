"""The NIX-Adresserat rules: may this company send addressed direct mail to this addressee, why, until when.

Theory of operation:
- The rules are one ordered table, `MAIL_RULES`; **the first row whose condition holds decides**, as in
  the phone table (`_policy`). Reading it top to bottom is reading the rules in order of precedence:

  1. invalid addressee (bad personnummer, or no whole key)   -> INVALID / INVALID_ADDRESSEE
  2. on the company's own "no more mail" list               -> BLOCKED / COMPANY_OPT_OUT
  3. purpose outside the register's scope                    -> ALLOWED / EXEMPT_PURPOSE
  4. live customer relationship with the company             -> ALLOWED / CUSTOMER_RELATIONSHIP
  5. live consent to the company                             -> ALLOWED / CONSENT
  6. in NIX-Adresserat                                       -> BLOCKED / NIX_ADRESSERAT_REGISTERED
  7. otherwise                                               -> ALLOWED / NOT_REGISTERED

  Exempt purposes for mail (NIX-Adresserat company information): market research and surveys, public
  information, political and religious messages. PUBLIC_INTEREST (a phone category) is not among them:
  when in doubt, block. Unaddressed mail never reaches this check.
- Facts: each row of a batch gets a 6-bit code (`MailFact`). The lists are the register's own rows of
  the `ListSpec` table (`lists_of(Register.ADRESSERAT)`): the register and each caller list sets the fact
  of its row, looked up by both keys of the addressee: the personnummer key and, for block lists, the
  name-address block key; for exempting lists (relationship, consent) the strict exempt key (loose
  where it blocks, strict where it exempts: docs/addresses.md). A list's role (`ListRole`) says which
  key is probed and whether its entries are dated (relationship: end + `relationship_grace_days`;
  consent: its expiry; 0 = no end).
- The table is walked once per (code, exempt purpose) at import (128 entries) and a batch is answered
  by gathers; `decide_mail` serves CheckAddressee (a batch of one) and the stream alike, so both answer
  with literally the same rows.
- `matched_on`: for an answer a list decided, the key that was found on it (the personnummer first);
  NONE otherwise.
- `valid_until`: the register's date + `validity_months` calendar months (default 3: companies need not
  wash more often than every third month), capped at the end of the relationship or consent it rested on.
  Once that has passed, a request whose purpose the register applies to is refused
  (`RegisterExpiredError`, FAILED_PRECONDITION) as for phone; exempt answers then carry no valid_until.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import IntFlag
from typing import Final

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.addressing import AddresseeKeys
from nixlookup.server.errors import FailedPreconditionError, RegisterExpiredError
from nixlookup.server.index import Index
from nixlookup.server.lists import ListRole, ListSpec, Register, lists_of, register_of
from nixlookup.server.policy._dates import add_calendar_months, as_utc, day_number, day_of
from nixlookup.server.policy._policy import ListUse
from nixlookup.server.store import ADDRESS_REGISTER_KEY, MAX_CLOCK_SKEW, ServingState
from nixlookup.v1.vocabulary import ListKind, MatchedOn, Purpose, Reason, Verdict

__all__ = [
    "DEFAULT_MAIL_VALIDITY_MONTHS",
    "MAIL_EXEMPT_PURPOSES",
    "MAIL_RULES",
    "MailDecisions",
    "MailFact",
    "MailRule",
    "MailSettings",
    "decide_mail",
    "mail_lists_used",
    "mail_valid_until",
]

DEFAULT_MAIL_VALIDITY_MONTHS: Final = 3
MAIL_EXEMPT_PURPOSES: Final = frozenset(
    {Purpose.MARKET_RESEARCH, Purpose.PUBLIC_INFORMATION, Purpose.POLITICAL, Purpose.RELIGIOUS}
)
SOURCE_ADRESSERAT: Final = "nixadresserat.org (company information, Swedma) / NIX-nämnden"
_LISTS: Final = lists_of(Register.ADRESSERAT)


class MailFact(IntFlag):
    """What holds for one addressee; one bit per list of the register (table order) plus two."""

    INVALID = 1
    EXEMPT_PURPOSE = 2
    REGISTERED = 4
    OPT_OUT = 8
    RELATIONSHIP = 16
    CONSENT = 32


FACT_OF_LIST: Final = {
    ListKind.ADDRESS_REGISTER: MailFact.REGISTERED,
    ListKind.MAIL_OPT_OUT: MailFact.OPT_OUT,
    ListKind.MAIL_RELATIONSHIP: MailFact.RELATIONSHIP,
    ListKind.MAIL_CONSENT: MailFact.CONSENT,
}
if set(FACT_OF_LIST) != {spec.kind for spec in _LISTS}:
    raise ImportError("every NIX-Adresserat list needs its fact bit")


@dataclass(frozen=True, slots=True)
class MailRule:
    """One row of the mail table."""

    number: str
    name: str
    verdict: Verdict
    reason: Reason
    source: str
    explanation: str
    when: Callable[[MailFact], bool]
    decided_by: ListKind | None = None
    """The list whose entry decides when this row applies (matched_on; a dated one caps valid_until)."""


MAIL_RULES: Final = (
    MailRule("1", "invalid-addressee", Verdict.INVALID, Reason.INVALID_ADDRESSEE,
             "personnummer (Skatteverket) / docs/addresses.md",
             "an invalid personnummer, or neither a personnummer nor a whole name and address",
             lambda f: MailFact.INVALID in f),
    MailRule("2", "company-no-mail", Verdict.BLOCKED, Reason.COMPANY_OPT_OUT,
             f"{SOURCE_ADRESSERAT} (the company's own list wins over a relationship)",
             "on the company's own 'no more mail' list", lambda f: MailFact.OPT_OUT in f,
             ListKind.MAIL_OPT_OUT),
    MailRule("3", "exempt-purpose", Verdict.ALLOWED, Reason.EXEMPT_PURPOSE,
             f"{SOURCE_ADRESSERAT} (market research, public information, political, religious)",
             "the purpose is outside NIX-Adresserat's scope", lambda f: MailFact.EXEMPT_PURPOSE in f),
    MailRule("4", "customer-relationship", Verdict.ALLOWED, Reason.CUSTOMER_RELATIONSHIP,
             f"{SOURCE_ADRESSERAT} (same kind of goods or services; normally at most a year after it ended)",
             "a live customer relationship with the company", lambda f: MailFact.RELATIONSHIP in f,
             ListKind.MAIL_RELATIONSHIP),
    MailRule("5", "consent", Verdict.ALLOWED, Reason.CONSENT, f"{SOURCE_ADRESSERAT} (explicit consent)",
             "the person's live consent to the company's mail", lambda f: MailFact.CONSENT in f,
             ListKind.MAIL_CONSENT),
    MailRule("6", "nix-adresserat-registered", Verdict.BLOCKED, Reason.NIX_ADRESSERAT_REGISTERED,
             f"{SOURCE_ADRESSERAT} (Marknadsföringslagen 21 §: a clear objection)",
             "in NIX-Adresserat: no addressed direct mail", lambda f: MailFact.REGISTERED in f,
             ListKind.ADDRESS_REGISTER),
    MailRule("7", "not-registered", Verdict.ALLOWED, Reason.NOT_REGISTERED, SOURCE_ADRESSERAT,
             "not in NIX-Adresserat", lambda f: True),
)  # fmt: skip
"""The mail rules in order of precedence (see the module doc)."""


def _first_rule(facts: MailFact) -> int:
    return next(position for position, rule in enumerate(MAIL_RULES) if rule.when(facts))


_RULE_OF_CODE: Final = np.array([_first_rule(MailFact(code)) for code in range(64)], dtype=np.uint8)
_VERDICT_OF_RULE: Final = np.array([int(rule.verdict) for rule in MAIL_RULES], dtype=np.uint8)
_REASON_OF_RULE: Final = np.array([int(rule.reason) for rule in MAIL_RULES], dtype=np.uint8)
_SPEC_OF_KIND: Final = {spec.kind: spec for spec in _LISTS}
_LIST_OF_RULE: Final = [
    None if rule.decided_by is None else _SPEC_OF_KIND[rule.decided_by] for rule in MAIL_RULES
]
"""Per rule: the list whose entry decided (for matched_on and the valid_until cap), None for the others."""


@dataclass(frozen=True, slots=True)
class MailSettings:
    relationship_grace_days: int = 365
    validity_months: int = DEFAULT_MAIL_VALIDITY_MONTHS


@dataclass(frozen=True, slots=True)
class MailDecisions:
    """Per row, in order: verdict, reason, matched_on (uint8 codes) and valid_until day (0 = none)."""

    verdicts: NDArray[np.uint8]
    reasons: NDArray[np.uint8]
    matched_on: NDArray[np.uint8]
    valid_until_days: NDArray[np.uint32]
    register: Index
    valid_until: datetime | None
    """For NOT_REGISTERED answers (None when the register is expired and the purpose exempt)."""


def mail_valid_until(register: Index, settings: MailSettings) -> datetime:
    return add_calendar_months(as_utc(register.meta.register_date), settings.validity_months)


def _address_register(state: ServingState) -> Index:
    found = state.list_for(*ADDRESS_REGISTER_KEY)
    if found is None:
        raise FailedPreconditionError(
            "this server serves no NIX-Adresserat register: start it with --address-register FILE or load "
            "one (nixlookup admin reload --kind address-register FILE)"
        )
    return found


def _probe(
    spec: ListSpec, index: Index, keys: AddresseeKeys, today: int, grace: int
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.uint32]]:
    """Per row: found by personnummer, found by name and address, and the deciding end day (0 = none)."""
    name_address = keys.exempt if spec.role is ListRole.EXEMPTS else keys.block
    by_pn = (keys.personnummer != 0) & index.contains_many(keys.personnummer)
    by_address = (name_address != 0) & index.contains_many(name_address)
    ends = np.zeros(len(keys), np.uint32)
    if spec.dated:
        extra = grace if spec.grace else 0
        pn_end = np.where(by_pn, index.values_many(keys.personnummer), 0).astype(np.int64)
        ad_end = np.where(by_address, index.values_many(name_address), 0).astype(np.int64)

        def live(found: NDArray[np.bool_], end: NDArray[np.int64]) -> NDArray[np.bool_]:
            alive: NDArray[np.bool_] = found & ((end == 0) | (end + extra >= today))
            return alive

        by_pn, by_address = live(by_pn, pn_end), live(by_address, ad_end)
        # the last day the live entries count (grace applied; 0 = no end wins), as for phone
        forever = np.iinfo(np.int64).max
        pn_cap = np.where(by_pn, np.where(pn_end == 0, forever, pn_end + extra), 0)
        ad_cap = np.where(by_address, np.where(ad_end == 0, forever, ad_end + extra), 0)
        cap = np.maximum(pn_cap, ad_cap)
        ends = np.where((cap > 0) & (cap < forever), cap, 0).astype(np.uint32)
    return by_pn, by_address, ends


def decide_mail(
    state: ServingState,
    keys: AddresseeKeys,
    *,
    caller: str,
    purpose: Purpose,
    now: datetime,
    settings: MailSettings,
) -> MailDecisions:
    """Answer every row of `keys` from one state (the first matching row of `MAIL_RULES` decides)."""
    register = _address_register(state)
    valid_until = mail_valid_until(register, settings)
    exempt = purpose in MAIL_EXEMPT_PURPOSES
    usable = as_utc(register.meta.register_date) - MAX_CLOCK_SKEW <= now < valid_until
    if not usable and not exempt:
        raise RegisterExpiredError(
            f"the serving NIX-Adresserat register {register.meta.version} (dated "
            f"{as_utc(register.meta.register_date):%Y-%m-%d}) expired at {valid_until:%Y-%m-%d %H:%M} UTC: "
            f"its answers hold {settings.validity_months} months from its date. Load a current register "
            "(nixlookup admin reload --kind address-register FILE)"
        )
    count = len(keys)
    today = day_of(now)
    codes = np.where(keys.invalid, np.uint8(MailFact.INVALID), np.uint8(0)).astype(np.uint8)
    if exempt:
        codes |= np.uint8(MailFact.EXEMPT_PURPOSE)
    found: dict[ListKind, tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.uint32]]] = {}
    valid = ~keys.invalid
    for spec in _LISTS:
        index = state.list_for(spec.kind, "" if not spec.per_caller else caller)
        if index is None or (spec.per_caller and not caller):
            continue
        by_pn, by_address, ends = _probe(spec, index, keys, today, settings.relationship_grace_days)
        by_pn &= valid
        by_address &= valid
        found[spec.kind] = (by_pn, by_address, ends)
        codes |= np.where(by_pn | by_address, np.uint8(FACT_OF_LIST[spec.kind]), np.uint8(0)).astype(np.uint8)
    rules = _RULE_OF_CODE[codes]
    matched = np.zeros(count, np.uint8)
    until = np.full(count, day_number(valid_until.date()) if usable else 0, np.uint32)
    for position, decider in enumerate(_LIST_OF_RULE):
        if decider is None or decider.kind not in found:
            continue
        by_pn, by_address, ends = found[decider.kind]
        decided = rules == position
        matched[decided & by_address] = int(MatchedOn.NAME_AND_ADDRESS)
        matched[decided & by_pn] = int(MatchedOn.PERSONNUMMER)
        if decider.dated:
            capped = decided & (ends != 0) & ((ends < until) | (until == 0))
            until[capped] = ends[capped]
    until[keys.invalid] = 0
    return MailDecisions(
        verdicts=_VERDICT_OF_RULE[rules],
        reasons=_REASON_OF_RULE[rules],
        matched_on=matched,
        valid_until_days=until,
        register=register,
        valid_until=valid_until if usable else None,
    )


def mail_lists_used(state: ServingState, caller: str) -> tuple[ListUse, ...]:
    """The address register and every mail list the state holds for `caller`, with their versions."""
    used: list[ListUse] = []
    for spec in _LISTS:
        key = (spec.kind, caller if spec.per_caller else "")
        if spec.per_caller and not caller:
            continue
        found = state.list_for(*key)
        if found is not None:
            used.append(ListUse(key, found.meta.version, as_utc(found.meta.created_at)))
    return tuple(used)


if register_of(Register.ADRESSERAT).kind is not ADDRESS_REGISTER_KEY[0]:
    raise ImportError("ADDRESS_REGISTER_KEY must name NIX-Adresserat's own row")
