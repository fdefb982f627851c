"""decide_one and decide_many agree exactly, and both agree with a plain if-chain reading of the rules.

Hypothesis draws random worlds (register, two callers' opt-out / relationship / consent lists with end
days around today), random batches (valid mobile and fixed numbers, invalid ones, repeats), callers,
purposes, days and settings. The oracle below is written straight from the issue's text, independently
of the policy's table and facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_world import World

from nixlookup.server.numbering import LineType, classify_key, classify_keys
from nixlookup.server.policy import Policy, PolicySettings
from nixlookup.server.policy._dates import add_calendar_months, day_number, day_of
from nixlookup.v1.vocabulary import Purpose, Reason

BASE_DAY = date(2026, 3, 20)
POOL = (
    46701234567,
    46701234568,
    46731112233,
    46761000000,
    46799999999,
    4681234567,
    46812345678,
    4631123456,
    46311234567,
    4690123456,
    46123,  # invalid: too short
    999,  # invalid: not Swedish
    0,  # invalid: empty key
)
CALLERS = ("", "acme", "acme", "beta", "gamma")  # gamma never has lists; acme most often
EXEMPT = {
    Purpose.MARKET_RESEARCH,
    Purpose.PUBLIC_INFORMATION,
    Purpose.POLITICAL,
    Purpose.RELIGIOUS,
    Purpose.PUBLIC_INTEREST,
}

valid_keys = st.sampled_from(POOL[:10])
TODAY = day_number(BASE_DAY)


def end_days(grace: int) -> st.SearchStrategy[int]:
    """End days that hit the edges on purpose: none, around today, around today - grace, anywhere."""
    near = st.one_of(st.just(0), st.integers(min_value=-2, max_value=2))
    return st.one_of(
        st.just(0),
        near.map(lambda d: TODAY + d),
        near.map(lambda d: TODAY - grace + d),
        st.integers(min_value=-800, max_value=400).map(lambda d: TODAY + d),
    )


@dataclass(frozen=True)
class Scenario:
    world: World
    grace: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    grace = draw(st.sampled_from([0, 30, 365]))
    world = World(
        register=draw(st.sets(valid_keys)),
        # Set relative to the check's time in the test: within the register's 2 months of validity (an
        # expired register answers no register-dependent check; test_policy_rules covers that).
        register_date=datetime(2026, 1, 1, tzinfo=UTC) - timedelta(minutes=draw(st.integers(0, 58 * 1440))),
    )
    ends = end_days(grace)
    for caller in ("acme", "beta"):
        if draw(st.booleans()):
            world.opt_out[caller] = draw(st.sets(valid_keys, max_size=3))
        if draw(st.booleans()):
            world.relationships[caller] = draw(st.dictionaries(valid_keys, ends, max_size=5))
        if draw(st.booleans()):
            world.consents[caller] = draw(st.dictionaries(valid_keys, ends, max_size=5))
    return Scenario(world, grace)


def oracle(  # noqa: PLR0911 - one return per rule is the point
    world: World, key: int, *, caller: str, purpose: Purpose, today: int, cfg: PolicySettings
) -> Reason:
    """The rules as the issue words them, one `if` per rule."""
    parsed = classify_key(key)
    if parsed.problem != 0:
        return Reason.INVALID_NUMBER
    if key in world.opt_out.get(caller, set()):
        return Reason.COMPANY_OPT_OUT
    if purpose in EXEMPT:
        return Reason.EXEMPT_PURPOSE
    end = world.relationships.get(caller, {}).get(key)
    if end is not None and (end == 0 or end + cfg.relationship_grace_days >= today):
        return Reason.CUSTOMER_RELATIONSHIP
    expiry = world.consents.get(caller, {}).get(key)
    if expiry is not None and (expiry == 0 or expiry >= today):
        return Reason.CONSENT
    if key in world.register:
        return Reason.NIX_REGISTERED
    if cfg.block_mobile_without_relationship and parsed.line_type == LineType.MOBILE:
        return Reason.MOBILE_WITHOUT_RELATIONSHIP
    return Reason.NOT_REGISTERED


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=scenarios(),
    batch=st.tuples(st.permutations(POOL), st.lists(st.sampled_from(POOL), max_size=20)).map(
        lambda parts: [*parts[0], *parts[1]]  # every pool number, in random order, plus repeats
    ),
    caller=st.sampled_from(CALLERS),
    purpose=st.one_of(  # mostly purposes the lists and the register apply to
        st.sampled_from([Purpose.SALES, Purpose.MARKETING, Purpose.FUNDRAISING]),
        st.sampled_from(list(Purpose)),
    ),
    day_offset=st.one_of(st.just(0), st.integers(min_value=-400, max_value=400)),
    block_mobiles=st.booleans(),
)
def test_scalar_batch_and_oracle_agree(  # noqa: PLR0917 - hypothesis passes the drawn values
    scenario: Scenario,
    batch: list[int],
    caller: str,
    purpose: Purpose,
    day_offset: int,
    block_mobiles: bool,
) -> None:
    """For random worlds and batches, decide_many equals decide_one per number, and both equal the oracle."""
    world, grace = scenario.world, scenario.grace
    cfg = PolicySettings(relationship_grace_days=grace, block_mobile_without_relationship=block_mobiles)
    policy = Policy(cfg)
    now = datetime(2026, 3, 20, 23, 59, tzinfo=UTC) + timedelta(days=day_offset)  # BASE_DAY
    world.register_date = now - (datetime(2026, 1, 1, tzinfo=UTC) - world.register_date)
    state = world.state()
    today = day_of(now)
    many = policy.decide_many(
        state, classify_keys(np.array(batch, dtype=np.uint64)), caller=caller, purpose=purpose, now=now
    )
    assert many.valid_until == add_calendar_months(world.register_date, 2)
    for position, key in enumerate(batch):
        one = policy.decide_one(state, classify_key(key), caller=caller, purpose=purpose, now=now)
        assert one.reason is oracle(world, key, caller=caller, purpose=purpose, today=today, cfg=cfg)
        assert int(many.reasons[position]) == one.reason
        assert bool(many.blocked[position]) == (one.verdict.name == "BLOCKED")
        assert bool(many.invalid[position]) == (one.verdict.name == "INVALID")
        assert bool(many.mobile_flag[position]) is one.mobile_flag
        expected_day = 0 if one.valid_until is None else day_of(one.valid_until)
        assert int(many.valid_until_days[position]) == expected_day
        if one.valid_until is not None:
            assert one.valid_until <= many.valid_until
