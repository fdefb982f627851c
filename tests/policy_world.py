"""The test world of the policy tests: register and callers' lists as plain sets, and `decide_both`.

`World` turns Python sets and dicts into a real `ServingState`; `decide_both` decides one number alone
(`decide_one`) and inside a batch of bystanders (`decide_many`) and asserts the two paths agree, so every
policy test checks both. Shared by test_policy_rules.py, test_policy_valid_until.py and
test_policy_bulk_tables.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import MappingProxyType

import numpy as np

from nixlookup.server.index import Index
from nixlookup.server.numbering import classify_key, classify_keys
from nixlookup.server.policy import Decision, Policy, valid_until_for
from nixlookup.server.policy._dates import day_number, day_of
from nixlookup.server.store import ListKey, ListKind, ServingState
from nixlookup.v1.vocabulary import Purpose, Reason, Verdict

NOW = datetime(2026, 3, 20, 9, 30, tzinfo=UTC)
TODAY = NOW.date()
REGISTER_DATE = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BASE_VALID_UNTIL = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)  # register date + 2 calendar months

MOBILE = 46701234567  # 070-123 45 67
FIXED = 4681234567  # 08-123 45 67
INVALID = 46123  # too short to be a Swedish number
BYSTANDERS = (46812345678, 4631123456, 46731112233, 46701234500, 4690123456)


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
            lists[(ListKind.OPT_OUT, caller)] = list_index(keys, None, f"opt-{caller}")
        for kind, per_caller in (
            (ListKind.RELATIONSHIP, self.relationships),
            (ListKind.CONSENT, self.consents),
        ):
            for caller, ends in per_caller.items():
                lists[(kind, caller)] = list_index(ends.keys(), ends.values(), f"{kind.slug}-{caller}")
        register = Index.build(
            np.array(sorted(self.register), dtype=np.uint64),
            version="reg-test",
            source="test",
            register_date=self.register_date,
        )
        return ServingState(register=register, lists=MappingProxyType(lists), generation=1)


def list_index(keys: object, values: object, version: str) -> Index:
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
