"""Check replies built from the per-state template equal replies built field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from nixlookup.server.index import Index
from nixlookup.server.numbering import classify_key
from nixlookup.server.policy import Policy, PolicySettings
from nixlookup.server.rpc._convert import CheckResponses, check_response
from nixlookup.server.store import ListKind, ServingState
from nixlookup.v1.vocabulary import Purpose

REGISTERED = 46701234567
CUSTOMER = 46701234568
FREE = 4681234567
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _state(version: str) -> ServingState:
    register = Index.build(
        np.array([REGISTERED, CUSTOMER], np.uint64),
        version=version,
        source="test",
        register_date=datetime(2026, 11, 29, tzinfo=UTC),  # valid until 2027-01-29
    )
    ended = (NOW.date() - timedelta(days=340) - datetime(1970, 1, 1).date()).days  # counts to 2026-12-25
    relationships = Index.build(
        np.array([CUSTOMER], np.uint64), values=np.array([ended], np.uint32), version="r1", source="t"
    )
    return ServingState(register=register).replacing((ListKind.RELATIONSHIP, "acme"), relationships)


@pytest.mark.parametrize("key", [REGISTERED, CUSTOMER, FREE, 0, 12345])
@pytest.mark.parametrize("caller", ["", "acme"])
def test_template_reply_equals_field_by_field_reply(key: int, caller: str) -> None:
    """For every rule outcome (blocked, allowed, capped valid_until, invalid) both builders agree."""
    policy = Policy(PolicySettings())
    responses = CheckResponses()
    for version in ("v1", "v2"):  # a new state must not reuse the old state's template
        state = _state(version)
        parsed = classify_key(key)
        decision = policy.decide_one(state, parsed, caller=caller, purpose=Purpose.SALES, now=NOW)
        expected = check_response(state, parsed, decision, policy.lists_used(state, caller))
        for _ in range(2):  # first call builds the template, the second reuses it
            built = responses.build(
                state, caller, parsed, decision, uses=lambda s=state: policy.lists_used(s, caller)
            )
            assert built == expected
            assert built.register_version == version
