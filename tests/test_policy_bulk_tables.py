"""The bulk path's tables: which fact codes ask the register, the refusal of a table the bulk path would
answer wrongly, and the compiled loops (warmed up front, imported only once a caller has lists).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from nixlookup.server.lists import CALLER_LISTS
from nixlookup.server.policy import Policy
from nixlookup.server.policy._facts import ALL_CODES, FACT_OF_LIST, REGISTERED, Fact
from nixlookup.server.policy._policy import NIX_RULES, RULE_REGISTERED, CodeTable
from nixlookup.v1.vocabulary import Reason


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


def test_numba_loads_only_for_callers_with_lists() -> None:
    """A server whose callers have no lists never imports numba (~0.3 s, ~45 MB); preparing a state with
    caller lists compiles the loops before that state serves."""
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
    assert "after plain: False" in done.stdout
    assert "after lists: True" in done.stdout
    assert f"reasons: {[int(Reason.NIX_REGISTERED), int(Reason.COMPANY_OPT_OUT)]}" in done.stdout
