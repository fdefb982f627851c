"""valid_until and the register's date: two calendar months from the register date, and no
register-dependent answer once a register has expired, is dated ahead, or carries an absurd date.
Decided by `decide_one` and `decide_many` alike (`policy_world.decide_both`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import grpc
import numpy as np
import pytest
from policy_world import (
    FIXED,
    MOBILE,
    NOW,
    World,
    decide_both,
)

from nixlookup.server.errors import RegisterExpiredError
from nixlookup.server.numbering import classify_key, classify_keys
from nixlookup.server.policy import Policy, valid_until_for
from nixlookup.v1.vocabulary import Purpose, Reason


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
