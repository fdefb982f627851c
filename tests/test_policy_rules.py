"""The NIX rule table, row by row and pair by pair, in-process against real `Index` objects.

Every case is decided twice, by `decide_one` and by `decide_many` (the number placed inside a batch of
bystanders), and both must give the case's expected answer. Expected verdicts come from this file's own
reading of the issue, not from the policy's table.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from types import MappingProxyType

import grpc
import numpy as np
import pytest

from nixlookup.server.errors import RegisterExpiredError
from nixlookup.server.index import Index
from nixlookup.server.lists import CALLER_LISTS
from nixlookup.server.numbering import classify_key, classify_keys
from nixlookup.server.policy import Decision, Policy, PolicySettings, valid_until_for
from nixlookup.server.policy._dates import day_number, day_of, midnight_of_day
from nixlookup.server.policy._facts import ALL_CODES, FACT_OF_LIST, REGISTERED, Fact
from nixlookup.server.policy._policy import NIX_RULES, RULE_MOBILE, RULE_REGISTERED, CodeTable, rules_for
from nixlookup.server.store import REGISTER_KEY, ListKey, ListKind, ServingState
from nixlookup.v1.vocabulary import Purpose, Reason, Verdict

NOW = datetime(2026, 3, 20, 9, 30, tzinfo=UTC)
TODAY = NOW.date()
REGISTER_DATE = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BASE_VALID_UNTIL = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)  # register date + 2 calendar months

MOBILE = 46701234567  # 070-123 45 67
FIXED = 4681234567  # 08-123 45 67
INVALID = 46123  # too short to be a Swedish number
BYSTANDERS = (46812345678, 4631123456, 46731112233, 46701234500, 4690123456)

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


def day(value: date) -> int:
    return day_number(value)


@dataclass
class World:
    """Register and callers' lists as plain Python sets and dicts, turned into a real `ServingState`."""

    register: set[int] = field(default_factory=set)
    opt_out: dict[str, set[int]] = field(default_factory=dict)
    relationships: dict[str, dict[int, int]] = field(default_factory=dict)  # caller -> key -> end day
    consents: dict[str, dict[int, int]] = field(default_factory=dict)  # caller -> key -> expiry day
    register_date: datetime = REGISTER_DATE

    def state(self) -> ServingState:
        lists: dict[ListKey, Index] = {}
        for caller, keys in self.opt_out.items():
            lists[(ListKind.OPT_OUT, caller)] = _index(keys, None, f"opt-{caller}")
        for kind, per_caller in (
            (ListKind.RELATIONSHIP, self.relationships),
            (ListKind.CONSENT, self.consents),
        ):
            for caller, ends in per_caller.items():
                lists[(kind, caller)] = _index(ends.keys(), ends.values(), f"{kind.slug}-{caller}")
        register = Index.build(
            np.array(sorted(self.register), dtype=np.uint64),
            version="reg-test",
            source="test",
            register_date=self.register_date,
        )
        return ServingState(register=register, lists=MappingProxyType(lists), generation=1)


def _index(keys: object, values: object, version: str) -> Index:
    key_array = np.array(list(keys), dtype=np.uint64)  # type: ignore[call-overload]
    value_array = None if values is None else np.array(list(values), dtype=np.uint32)  # type: ignore[call-overload]
    return Index.build(key_array, values=value_array, version=version, source="test")


def decide_both(
    policy: Policy,
    state: ServingState,
    number: int,
    *,
    caller: str,
    purpose: Purpose,
    now: datetime = NOW,
    position: int = 2,
) -> Decision:
    """Decide `number` alone and inside a batch; assert the two agree and return the single decision."""
    one = policy.decide_one(state, classify_key(number), caller=caller, purpose=purpose, now=now)
    keys = list(BYSTANDERS)
    keys.insert(position, number)
    batch = policy.decide_many(
        state, classify_keys(np.array(keys, dtype=np.uint64)), caller=caller, purpose=purpose, now=now
    )
    assert Reason(int(batch.reasons[position])) is one.reason
    assert bool(batch.blocked[position]) == (one.verdict is Verdict.BLOCKED)
    assert bool(batch.invalid[position]) == (one.verdict is Verdict.INVALID)
    assert bool(batch.mobile_flag[position]) == one.mobile_flag
    expected_day = 0 if one.valid_until is None else day_of(one.valid_until)
    assert int(batch.valid_until_days[position]) == expected_day
    assert batch.valid_until == valid_until_for(state.register.meta.register_date)
    return one


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
    after = before.replacing((ListKind.RELATIONSHIP, "acme"), _index([FIXED], [0], "rel-2"))
    assert decide_both(policy, after, FIXED, caller="acme", purpose=Purpose.SALES).reason is (
        Reason.CUSTOMER_RELATIONSHIP
    )
    dropped = after.replacing((ListKind.RELATIONSHIP, "acme"), None)
    assert decide_both(policy, dropped, FIXED, caller="acme", purpose=Purpose.SALES).reason is (
        Reason.NIX_REGISTERED
    )


@pytest.mark.parametrize(
    ("register_date", "valid_until"),
    [
        (datetime(2026, 1, 15, 10, 30, tzinfo=UTC), datetime(2026, 3, 15, 10, 30, tzinfo=UTC)),
        (datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 2, 28, tzinfo=UTC)),
        (datetime(2027, 12, 31, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2027, 12, 30, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2026, 7, 31, tzinfo=UTC), datetime(2026, 9, 30, tzinfo=UTC)),
        (datetime(2026, 8, 31, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC)),
        (datetime(2026, 11, 30, tzinfo=UTC), datetime(2027, 1, 30, tzinfo=UTC)),
        (datetime(2026, 3, 10, 12, 0), datetime(2026, 5, 10, 12, 0, tzinfo=UTC)),  # naive is UTC
        (
            datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 4, 28, 22, 30, tzinfo=UTC),  # 2026-02-28 22:30 UTC + 2 months
        ),
    ],
)
def test_valid_until_is_two_calendar_months_clamped(register_date: datetime, valid_until: datetime) -> None:
    """valid_until_for adds 2 calendar months in UTC, clamping to the month's last day."""
    assert valid_until_for(register_date) == valid_until


def test_valid_until_follows_the_register_date_not_the_check() -> None:
    """The same check on a later day keeps the register version's valid_until."""
    world = World(register_date=datetime(2025, 12, 31, 6, 0, tzinfo=UTC))
    policy = Policy()
    for now in (datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 2, 20, tzinfo=UTC)):
        decision = decide_both(policy, world.state(), FIXED, caller="", purpose=Purpose.SALES, now=now)
        assert decision.valid_until == datetime(2026, 2, 28, 6, 0, tzinfo=UTC)


def test_an_expired_or_future_register_answers_no_register_dependent_check() -> None:
    """From date + 2 months on (and for a date more than a day ahead) SALES checks fail with
    FAILED_PRECONDITION naming the expiry; exempt purposes still answer, with no valid_until at all."""
    world = World(
        register={FIXED}, opt_out={"acme": {MOBILE}}, register_date=datetime(2026, 1, 10, tzinfo=UTC)
    )
    policy = Policy()
    state = world.state()
    expires = datetime(2026, 3, 10, tzinfo=UTC)
    keys = classify_keys(np.array([FIXED, MOBILE, 46123], dtype=np.uint64))
    just_before = decide_both(
        policy, state, FIXED, caller="", purpose=Purpose.SALES, now=expires - timedelta(seconds=1)
    )
    assert just_before.valid_until == expires
    for now in (expires, expires + timedelta(days=400), datetime(2026, 1, 8, 23, 59, tzinfo=UTC)):
        with pytest.raises(RegisterExpiredError) as refused:
            policy.decide_one(state, classify_key(FIXED), caller="", purpose=Purpose.SALES, now=now)
        assert refused.value.status_code is grpc.StatusCode.FAILED_PRECONDITION
        assert "2026-03-10" in str(refused.value) or "ahead of this server's clock" in str(refused.value)
        assert "reload" in str(refused.value)
        with pytest.raises(RegisterExpiredError):
            policy.decide_many(state, keys, caller="acme", purpose=Purpose.MARKETING, now=now)
        one = policy.decide_one(
            state, classify_key(MOBILE), caller="acme", purpose=Purpose.POLITICAL, now=now
        )
        assert (one.reason, one.valid_until) == (Reason.COMPANY_OPT_OUT, None)
        many = policy.decide_many(state, keys, caller="acme", purpose=Purpose.MARKET_RESEARCH, now=now)
        assert many.valid_until is None
        assert many.valid_until_days.tolist() == [0, 0, 0]
        assert many.reasons.tolist() == [Reason.EXEMPT_PURPOSE, Reason.COMPANY_OPT_OUT, Reason.INVALID_NUMBER]


@pytest.mark.parametrize(
    "register_date", [datetime(9999, 12, 31, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)]
)
def test_a_register_with_an_absurd_date_is_refused_not_a_crash(register_date: datetime) -> None:
    """A data directory written before dates were checked may hold 9999-12-31 or 1970-01-01: every
    register-dependent check is FAILED_PRECONDITION (never an overflow), exempt ones still answer."""
    state = World(register={FIXED}, register_date=register_date).state()
    policy = Policy()
    keys = classify_keys(np.array([FIXED], dtype=np.uint64))
    with pytest.raises(RegisterExpiredError):
        policy.decide_one(state, classify_key(FIXED), caller="", purpose=Purpose.SALES, now=NOW)
    with pytest.raises(RegisterExpiredError):
        policy.decide_many(state, keys, caller="", purpose=Purpose.SALES, now=NOW)
    assert policy.decide_many(state, keys, caller="", purpose=Purpose.POLITICAL, now=NOW).valid_until is None


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


def test_code_tables_skip_the_register_only_where_it_cannot_matter() -> None:
    """The bulk path asks the register only for numbers whose answer can depend on it: not for invalid,
    opted-out, live-relationship or live-consent numbers, and never when the purpose is exempt."""
    tables = {exempt: CodeTable.build(NIX_RULES, exempt=exempt) for exempt in (False, True)}
    assert not tables[True].needs_register
    sales = tables[False]
    assert sales.needs_register
    decided_before_register = Fact.INVALID | sum(FACT_OF_LIST[spec.kind] for spec in CALLER_LISTS)
    for code in range(ALL_CODES):
        if code & REGISTERED:
            continue  # the bit the lookup sets: never in a code before it
        assert bool(sales.register_matters[code]) == (not code & decided_before_register), code


def test_code_table_refuses_a_cap_after_the_register() -> None:
    """The bulk path caps valid_until before it asks the register, which is only right while rows capped
    by a caller list precede the register row; a table breaking that is refused, not silently wrong."""
    reordered = tuple(rule for rule in NIX_RULES if rule.capped_by is None)
    at = reordered.index(RULE_REGISTERED) + 1
    broken = (*reordered[:at], *(rule for rule in NIX_RULES if rule.capped_by is not None), *reordered[at:])
    with pytest.raises(ValueError, match="before the register"):
        CodeTable.build(broken, exempt=False)


def test_warm_up_compiles_the_bulk_loops() -> None:
    """warm_up runs every compiled loop once (so the first batch with a caller does not compile)."""
    assert Policy().warm_up() >= 0.0


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
    index = _index([FIXED], [day(date(2026, 1, 2))], "v")
    assert index.value_of(FIXED) == day(date(2026, 1, 2))
    assert index.value_of(MOBILE) is None


def test_numba_loads_when_a_state_is_prepared() -> None:
    """The bulk path is compiled end to end, so numba loads (and the loops compile or load from its cache)
    when the first state is prepared, before it serves, not on the first batch; importing the policy and
    the index alone does not load it."""
    script = """
import sys
from datetime import UTC, datetime
import numpy as np
from nixlookup.server.index import Index
from nixlookup.server.numbering import classify_keys
from nixlookup.server.policy import Policy
from nixlookup.server.store import ListKind, ServingState
from nixlookup.v1.vocabulary import Purpose
keys = np.array([46701234567, 46701234568], dtype=np.uint64)
register = Index.build(keys[:1], version="r", source="t")
policy = Policy()
plain = ServingState(register=register)
print("before prepare:", "numba" in sys.modules)
policy.prepare(plain)
policy.decide_many(plain, classify_keys(keys), caller="", purpose=Purpose.SALES, now=datetime.now(UTC))
print("after plain:", "numba" in sys.modules)
listed = plain.replacing((ListKind.OPT_OUT, "acme"), Index.build(keys[1:], version="o", source="t"))
policy.prepare(listed)
print("after lists:", "numba" in sys.modules)
decision = policy.decide_many(listed, classify_keys(keys), caller="acme", purpose=Purpose.SALES,
                              now=datetime.now(UTC))
print("reasons:", decision.reasons.tolist())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert "before prepare: False" in done.stdout
    assert "after plain: True" in done.stdout
    assert "after lists: True" in done.stdout
    assert f"reasons: {[int(Reason.NIX_REGISTERED), int(Reason.COMPANY_OPT_OUT)]}" in done.stdout
