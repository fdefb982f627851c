"""The replica's memo of decisions (`nixlookup.replica._answers`) against the server's own `decide_one`.

Oracle: `Policy.decide_one` asked afresh for every number. Many numbers per state share a memo entry, so
any fact the memo's signature missed (an end day, a line type, a purpose, the day, an expired register)
shows up as a different answer. Real indexes (`Index.build`) and real serving states, no server needed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nixlookup.replica._answers import Answers
from nixlookup.server.errors import NixlookupError
from nixlookup.server.index import Index
from nixlookup.server.lists import CALLER_LISTS
from nixlookup.server.numbering import classify_key, parse_number
from nixlookup.server.policy import Policy, PolicySettings
from nixlookup.server.store import ListKind, ServingState
from nixlookup.v1.vocabulary import Purpose

_NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
_TODAY = int(_NOW.timestamp() // 86_400)
_POOL = [46701234560 + 7 * i for i in range(40)] + [4687654321, 46812345678, 46317654321, 4420794960000]
_TEXTS = ["070-12", "", "+46 70 123 45 6x", "0046 8 123 456 78", "12345678901234567"]


@st.composite
def _states(draw: st.DrawFn) -> tuple[ServingState, Policy]:
    age_days = draw(st.sampled_from([0, 10, 59, 70, -3]))  # 70: expired; -3: dated in the future
    register = Index.build(
        draw(st.lists(st.sampled_from(_POOL), max_size=30)),
        version="000001-aaaa",
        source="test",
        register_date=_NOW - timedelta(days=age_days),
    )
    lists = {}
    for spec in CALLER_LISTS:
        if draw(st.booleans()):
            keys = draw(st.lists(st.sampled_from(_POOL), max_size=15))
            ends = [draw(st.sampled_from([0, _TODAY - 400, _TODAY - 5, _TODAY, _TODAY + 9])) for _ in keys]
            values = np.asarray(ends, dtype=np.uint32) if spec.dated else None
            lists[(spec.kind, "acme")] = Index.build(
                keys, values=values, version=f"00000{spec.kind}-b", source="t"
            )
    policy = Policy(
        PolicySettings(
            relationship_grace_days=draw(st.sampled_from([0, 30, 365])),
            block_mobile_without_relationship=draw(st.booleans()),
        )
    )
    return ServingState(register=register, lists=MappingProxyType(lists)), policy


@settings(max_examples=150, deadline=None)
@given(
    drawn=_states(),
    numbers=st.lists(st.sampled_from(_POOL) | st.sampled_from(_TEXTS), min_size=1, max_size=25),
    caller=st.sampled_from(["", "acme", "other"]),
    purpose=st.sampled_from(list(Purpose)),
)
def test_memoised_answers_equal_decide_one_for_every_number(
    drawn: tuple[ServingState, Policy], numbers: list[int | str], caller: str, purpose: Purpose
) -> None:
    """Every number, caller, purpose, list end day, grace and register age: the memo answers exactly what
    `decide_one` decides, or raises where it raises."""
    state, policy = drawn
    answers = Answers(policy)
    for number in numbers:
        parsed = parse_number(number) if isinstance(number, str) else classify_key(number)
        try:
            expected = policy.decide_one(state, parsed, caller=caller, purpose=purpose, now=_NOW)
        except NixlookupError as error:
            with pytest.raises(type(error)):
                answers.answer(state, parsed, caller, purpose, _NOW.timestamp())
            continue
        got = answers.answer(state, parsed, caller, purpose, _NOW.timestamp())
        assert (got.verdict, got.reason, got.valid_until, got.mobile_flag) == (
            expected.verdict,
            expected.reason,
            expected.valid_until,
            expected.mobile_flag,
        )
        assert got.detail.startswith(expected.detail)
        assert (got.e164, got.line_type) == (parsed.key, parsed.line_type)
        assert got.register_version == state.register.meta.version
        kinds = [item.kind for item in got.lists_used]
        held = [
            spec.kind for spec in CALLER_LISTS if caller and state.list_for(spec.kind, caller) is not None
        ]
        assert kinds == [ListKind.REGISTER, *held]


def test_the_memo_starts_over_at_midnight() -> None:
    """A relationship ending today counts today and (grace 0) not tomorrow: the day is part of the memo."""
    key = 46701234567
    relationship = Index.build([key], values=np.array([_TODAY], np.uint32), version="000002-c", source="t")
    state = ServingState(
        register=Index.build([key], version="000001-d", source="t", register_date=_NOW - timedelta(days=1)),
        lists=MappingProxyType({(ListKind.RELATIONSHIP, "acme"): relationship}),
    )
    answers = Answers(Policy(PolicySettings(relationship_grace_days=0)))
    today = answers.answer(state, classify_key(key), "acme", Purpose.SALES, _NOW.timestamp())
    tomorrow = answers.answer(
        state, classify_key(key), "acme", Purpose.SALES, (_NOW + timedelta(days=1)).timestamp()
    )
    assert (today.reason.name, tomorrow.reason.name) == ("CUSTOMER_RELATIONSHIP", "NIX_REGISTERED")
