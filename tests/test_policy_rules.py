"""The NIX rule table, row by row and pair by pair, in-process against real `Index` objects.

Every case is decided twice, by `decide_one` and by `decide_many` (the number placed inside a batch of
bystanders), and both must give the case's expected answer. Expected verdicts come from this file's own
reading of the issue, not from the policy's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from policy_world import (
    BASE_VALID_UNTIL,
    BYSTANDERS,
    FIXED,
    INVALID,
    MOBILE,
    NOW,
    TODAY,
    World,
    day,
    decide_both,
    list_index,
)

from nixlookup.server.numbering import classify_keys
from nixlookup.server.policy import Policy, PolicySettings
from nixlookup.server.policy._dates import day_of, midnight_of_day
from nixlookup.server.policy._policy import NIX_RULES, RULE_MOBILE, RULE_REGISTERED, rules_for
from nixlookup.server.store import REGISTER_KEY, ListKind
from nixlookup.v1.vocabulary import Purpose, Reason, Verdict

EXPECTED_VERDICT = {
    Reason.INVALID_NUMBER: Verdict.INVALID,
    Reason.COMPANY_OPT_OUT: Verdict.BLOCKED,
    Reason.EXEMPT_PURPOSE: Verdict.ALLOWED,
    Reason.CUSTOMER_RELATIONSHIP: Verdict.ALLOWED,
    Reason.CONSENT: Verdict.ALLOWED,
    Reason.NIX_REGISTERED: Verdict.BLOCKED,
    Reason.MOBILE_WITHOUT_RELATIONSHIP: Verdict.BLOCKED,
    Reason.NOT_REGISTERED: Verdict.ALLOWED,
}


DEFAULT_SETTINGS = PolicySettings()


@dataclass(frozen=True)
class Case:
    """One number, what the caller's lists and the register say about it, and the answer expected."""

    name: str
    expect: Reason
    number: int = FIXED
    registered: bool = False
    opt_out: bool = False
    relationship_end: date | None = None  # date(1970, 1, 1) stands for "ongoing" (day 0)
    consent_end: date | None = None
    purpose: Purpose = Purpose.SALES
    caller: str = "acme"
    settings: PolicySettings = DEFAULT_SETTINGS
    valid_until: datetime | None = BASE_VALID_UNTIL
    mobile_flag: bool = False

    def world(self) -> World:
        world = World()
        if self.registered:
            world.register.add(self.number)
        if self.opt_out:
            world.opt_out["acme"] = {self.number}
        if self.relationship_end is not None:
            world.relationships["acme"] = {self.number: day(self.relationship_end)}
        if self.consent_end is not None:
            world.consents["acme"] = {self.number: day(self.consent_end)}
        world.register.update(BYSTANDERS[:2])  # some bystanders registered, so the batch is mixed
        return world


ONGOING = date(1970, 1, 1)
BLOCK_MOBILES = PolicySettings(block_mobile_without_relationship=True)


def _midnight(value: date) -> datetime:
    return midnight_of_day(day(value))


CASES = [
    # rule 1
    Case("invalid number is INVALID", Reason.INVALID_NUMBER, number=INVALID, valid_until=None),
    Case("invalid number stays INVALID for an exempt purpose", Reason.INVALID_NUMBER, number=INVALID,
         purpose=Purpose.POLITICAL, valid_until=None),
    # rule 2 and what it beats
    Case("opt-out blocks", Reason.COMPANY_OPT_OUT, opt_out=True),
    Case("opt-out beats a live relationship", Reason.COMPANY_OPT_OUT, opt_out=True,
         relationship_end=ONGOING, registered=True),
    Case("opt-out beats a live consent", Reason.COMPANY_OPT_OUT, opt_out=True, consent_end=ONGOING),
    Case("opt-out beats an exempt purpose", Reason.COMPANY_OPT_OUT, opt_out=True,
         purpose=Purpose.MARKET_RESEARCH),
    Case("another caller's opt-out does not apply", Reason.NOT_REGISTERED, opt_out=True, caller="beta"),
    Case("no caller means no caller lists", Reason.NIX_REGISTERED, opt_out=True, registered=True, caller=""),
    # rule 3: every exempt purpose beats the register
    *[
        Case(f"exempt purpose {purpose.name} beats the register", Reason.EXEMPT_PURPOSE, registered=True,
             purpose=purpose)
        for purpose in (Purpose.MARKET_RESEARCH, Purpose.PUBLIC_INFORMATION, Purpose.POLITICAL,
                        Purpose.RELIGIOUS, Purpose.PUBLIC_INTEREST)
    ],
    *[
        Case(f"{purpose.name} is not exempt", Reason.NIX_REGISTERED, registered=True, purpose=purpose)
        for purpose in (Purpose.SALES, Purpose.MARKETING, Purpose.FUNDRAISING)
    ],
    Case("exempt purpose comes before a relationship", Reason.EXEMPT_PURPOSE, relationship_end=ONGOING,
         purpose=Purpose.RELIGIOUS),
    # rule 4
    Case("ongoing relationship beats the register", Reason.CUSTOMER_RELATIONSHIP, registered=True,
         relationship_end=ONGOING),
    Case("relationship 11 months after its end still counts", Reason.CUSTOMER_RELATIONSHIP, registered=True,
         relationship_end=date(2025, 4, 20), valid_until=_midnight(date(2026, 4, 20))),
    Case("relationship 13 months after its end no longer counts", Reason.NIX_REGISTERED, registered=True,
         relationship_end=date(2025, 2, 20)),
    Case("expired relationship on an unregistered number: NOT_REGISTERED", Reason.NOT_REGISTERED,
         relationship_end=date(2025, 2, 20)),
    Case("relationship ended exactly grace days ago still counts (last day)", Reason.CUSTOMER_RELATIONSHIP,
         registered=True, relationship_end=TODAY - timedelta(days=365), valid_until=_midnight(TODAY)),
    Case("relationship ended grace + 1 days ago does not count", Reason.NIX_REGISTERED, registered=True,
         relationship_end=TODAY - timedelta(days=366)),
    Case("relationship ending in the future: valid_until stays the register's", Reason.CUSTOMER_RELATIONSHIP,
         registered=True, relationship_end=date(2026, 12, 31)),
    Case("grace 0: relationship ended yesterday does not count", Reason.NIX_REGISTERED, registered=True,
         relationship_end=TODAY - timedelta(days=1), settings=PolicySettings(relationship_grace_days=0)),
    Case("grace 0: relationship ending today counts", Reason.CUSTOMER_RELATIONSHIP, registered=True,
         relationship_end=TODAY, settings=PolicySettings(relationship_grace_days=0),
         valid_until=_midnight(TODAY)),
    Case("another caller's relationship does not apply", Reason.NIX_REGISTERED, registered=True,
         relationship_end=ONGOING, caller="beta"),
    Case("relationship comes before consent", Reason.CUSTOMER_RELATIONSHIP, registered=True,
         relationship_end=ONGOING, consent_end=date(2026, 4, 1)),
    Case("expired relationship falls through to a live consent", Reason.CONSENT, registered=True,
         relationship_end=date(2024, 1, 1), consent_end=ONGOING),
    # rule 5
    Case("live consent beats the register, valid until its expiry", Reason.CONSENT, registered=True,
         consent_end=date(2026, 4, 1), valid_until=_midnight(date(2026, 4, 1))),
    Case("consent without expiry", Reason.CONSENT, registered=True, consent_end=ONGOING),
    Case("consent expiring today still counts", Reason.CONSENT, registered=True, consent_end=TODAY,
         valid_until=_midnight(TODAY)),
    Case("consent expired yesterday does not count", Reason.NIX_REGISTERED, registered=True,
         consent_end=TODAY - timedelta(days=1)),
    # rules 6, 7
    Case("registered number is blocked", Reason.NIX_REGISTERED, registered=True),
    Case("unregistered number is allowed until register date + 2 months", Reason.NOT_REGISTERED),
    # the mobile flag (Swedma/Kontakta), default settings
    Case("unregistered mobile: allowed, flagged", Reason.NOT_REGISTERED, number=MOBILE, mobile_flag=True),
    Case("registered mobile: blocked, flagged", Reason.NIX_REGISTERED, number=MOBILE, registered=True,
         mobile_flag=True),
    Case("mobile with a relationship: not flagged", Reason.CUSTOMER_RELATIONSHIP, number=MOBILE,
         relationship_end=ONGOING),
    Case("mobile with a consent: not flagged", Reason.CONSENT, number=MOBILE, consent_end=ONGOING),
    Case("mobile with an expired relationship: flagged", Reason.NOT_REGISTERED, number=MOBILE,
         relationship_end=date(2024, 1, 1), mobile_flag=True),
    Case("mobile, exempt purpose: not flagged", Reason.EXEMPT_PURPOSE, number=MOBILE,
         purpose=Purpose.MARKET_RESEARCH),
    Case("fixed line: never flagged", Reason.NOT_REGISTERED, number=FIXED),
    # row 6b: block_mobile_without_relationship
    Case("blocking mobiles: unregistered mobile is blocked", Reason.MOBILE_WITHOUT_RELATIONSHIP,
         number=MOBILE, settings=BLOCK_MOBILES, mobile_flag=True),
    Case("blocking mobiles: a registered mobile keeps the legal reason", Reason.NIX_REGISTERED,
         number=MOBILE, registered=True, settings=BLOCK_MOBILES, mobile_flag=True),
    Case("blocking mobiles: a relationship still allows", Reason.CUSTOMER_RELATIONSHIP, number=MOBILE,
         relationship_end=ONGOING, settings=BLOCK_MOBILES),
    Case("blocking mobiles: a consent still allows", Reason.CONSENT, number=MOBILE, consent_end=ONGOING,
         settings=BLOCK_MOBILES),
    Case("blocking mobiles: exempt purposes are untouched", Reason.EXEMPT_PURPOSE, number=MOBILE,
         purpose=Purpose.PUBLIC_INTEREST, settings=BLOCK_MOBILES),
    Case("blocking mobiles: opt-out keeps its reason", Reason.COMPANY_OPT_OUT, number=MOBILE, opt_out=True,
         settings=BLOCK_MOBILES, mobile_flag=True),
    Case("blocking mobiles: fixed lines are untouched", Reason.NOT_REGISTERED, number=FIXED,
         settings=BLOCK_MOBILES),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_rule_table_case(case: Case) -> None:
    """The first applicable rule decides, identically in decide_one and decide_many."""
    policy = Policy(case.settings)
    decision = decide_both(
        policy, case.world().state(), case.number, caller=case.caller, purpose=case.purpose
    )
    assert decision.reason is case.expect
    assert decision.verdict is EXPECTED_VERDICT[case.expect]
    assert decision.valid_until == case.valid_until
    assert decision.mobile_flag is case.mobile_flag
    assert str(case.number)[-7:] not in decision.detail  # personal data stays out of messages


@pytest.mark.parametrize("position", [0, 3, 5])
def test_batch_position_does_not_matter(position: int) -> None:
    """A number gets the same answer wherever it sits in a batch."""
    world = Case("", Reason.COMPANY_OPT_OUT, opt_out=True).world()
    decision = decide_both(
        Policy(), world.state(), FIXED, caller="acme", purpose=Purpose.SALES, position=position
    )
    assert decision.reason is Reason.COMPANY_OPT_OUT


def test_mixed_batch_gets_every_reason_in_place() -> None:
    """One batch holding a number for each rule gets each number's own reason, in order."""
    numbers = [INVALID, 46701000001, 46701000002, 46701000003, 46701000004, 46701000005]
    world = World(
        register={46701000002, 46701000003, 46701000004},
        opt_out={"acme": {46701000001}},
        relationships={"acme": {46701000002: 0}},
        consents={"acme": {46701000003: day(date(2027, 1, 1))}},
    )
    batch = Policy().decide_many(
        world.state(),
        classify_keys(np.array(numbers, dtype=np.uint64)),
        caller="acme",
        purpose=Purpose.SALES,
        now=NOW,
    )
    assert [Reason(int(r)) for r in batch.reasons] == [
        Reason.INVALID_NUMBER,
        Reason.COMPANY_OPT_OUT,
        Reason.CUSTOMER_RELATIONSHIP,
        Reason.CONSENT,
        Reason.NIX_REGISTERED,
        Reason.NOT_REGISTERED,
    ]
    assert batch.blocked.tolist() == [False, True, False, False, True, False]
    assert batch.invalid.tolist() == [True, False, False, False, False, False]
    assert batch.mobile_flag.tolist() == [False, True, False, False, True, True]
    assert [Verdict(int(v)) for v in batch.verdicts()] == [
        Verdict.INVALID,
        Verdict.BLOCKED,
        Verdict.ALLOWED,
        Verdict.ALLOWED,
        Verdict.BLOCKED,
        Verdict.ALLOWED,
    ]
    assert batch.valid_until_days[0] == 0
    assert (batch.valid_until_days[1:] == day_of(BASE_VALID_UNTIL)).all()


def test_empty_batch() -> None:
    """An empty batch gets empty answers, not an error."""
    batch = Policy().decide_many(
        World().state(),
        classify_keys(np.empty(0, dtype=np.uint64)),
        caller="acme",
        purpose=Purpose.SALES,
        now=NOW,
    )
    assert batch.count == 0
    assert batch.valid_until == BASE_VALID_UNTIL


def test_a_new_list_version_is_used_at_once() -> None:
    """After a caller's list changes (a new state), the very next batch answers from the new version."""
    policy = Policy()
    before = World(register={FIXED}).state()
    assert decide_both(policy, before, FIXED, caller="acme", purpose=Purpose.SALES).reason is (
        Reason.NIX_REGISTERED
    )
    after = before.replacing((ListKind.RELATIONSHIP, "acme"), list_index([FIXED], [0], "rel-2"))
    assert decide_both(policy, after, FIXED, caller="acme", purpose=Purpose.SALES).reason is (
        Reason.CUSTOMER_RELATIONSHIP
    )
    dropped = after.replacing((ListKind.RELATIONSHIP, "acme"), None)
    assert decide_both(policy, dropped, FIXED, caller="acme", purpose=Purpose.SALES).reason is (
        Reason.NIX_REGISTERED
    )


def test_lists_used_names_register_and_the_callers_lists_only() -> None:
    """lists_used names the register and exactly the lists the caller has, with their versions."""
    world = World(
        opt_out={"acme": {FIXED}, "beta": {FIXED}},
        relationships={"acme": {MOBILE: 0}},
    )
    state = world.state()
    policy = Policy()
    assert [(use.key, use.version) for use in policy.lists_used(state, "acme")] == [
        (REGISTER_KEY, "reg-test"),
        ((ListKind.OPT_OUT, "acme"), "opt-acme"),
        ((ListKind.RELATIONSHIP, "acme"), "relationship-acme"),
    ]
    assert [use.key for use in policy.lists_used(state, "")] == [REGISTER_KEY]
    assert [use.key for use in policy.lists_used(state, "gamma")] == [REGISTER_KEY]
    assert all(use.loaded_at.tzinfo is not None for use in policy.lists_used(state, "acme"))


def test_table_shape() -> None:
    """The table starts with the invalid row, ends with an unconditional row and every row cites a source."""
    assert NIX_RULES[0].reason is Reason.INVALID_NUMBER
    assert NIX_RULES[-1].reason is Reason.NOT_REGISTERED
    assert [rule.number for rule in NIX_RULES] == ["1", "2", "3", "4", "5", "6", "7"]
    assert len({rule.reason for rule in NIX_RULES}) == len(NIX_RULES)
    assert all(rule.source and rule.explanation for rule in (*NIX_RULES, RULE_MOBILE))
    with_mobiles = rules_for(BLOCK_MOBILES)
    assert with_mobiles[with_mobiles.index(RULE_REGISTERED) + 1] is RULE_MOBILE
    assert RULE_MOBILE not in rules_for(PolicySettings())


@pytest.mark.parametrize("grace", [-1, 3661])
def test_settings_refuse_nonsense_grace(grace: int) -> None:
    """A negative or decade-long grace period is refused at start-up, naming the setting."""
    with pytest.raises(ValueError, match="relationship_grace_days"):
        PolicySettings(relationship_grace_days=grace)


def test_exempt_batch_answers_without_register_or_lists() -> None:
    """An exempt purpose with no caller lists decides the whole batch as EXEMPT (invalid ones INVALID)."""
    keys = np.array([INVALID, FIXED, MOBILE, *BYSTANDERS], dtype=np.uint64)
    batch = Policy().decide_many(
        World(register={FIXED, MOBILE}).state(),
        classify_keys(keys),
        caller="",
        purpose=Purpose.POLITICAL,
        now=NOW,
    )
    assert Reason(int(batch.reasons[0])) is Reason.INVALID_NUMBER
    assert set(batch.reasons[1:].tolist()) == {Reason.EXEMPT_PURPOSE}
    assert not batch.blocked.any()
    assert not batch.mobile_flag.any()


def test_world_relationship_index_carries_end_days() -> None:
    """The test world's relationship indexes hold the end days given (the fixture the cases rest on)."""
    index = list_index([FIXED], [day(date(2026, 1, 2))], "v")
    assert index.value_of(FIXED) == day(date(2026, 1, 2))
    assert index.value_of(MOBILE) is None
