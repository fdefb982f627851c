"""The synthetic register looks like the real one: valid Swedish numbers, mostly mobile, seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import phonenumbers
import pytest

from nixlookup.server.store import generate_queries, generate_register, write_text_register
from nixlookup.server.store._synthetic import synthetic_index


def test_same_seed_same_register_sorted_unique() -> None:
    """(size, seed) fixes the register; keys are sorted and distinct; another seed differs."""
    first = generate_register(20_000, seed=1)
    assert first.size == 20_000
    assert np.array_equal(first, generate_register(20_000, seed=1))
    assert np.all(np.diff(first.astype(np.int64)) > 0)
    assert not np.array_equal(first, generate_register(20_000, seed=2))


def test_numbers_are_valid_and_mostly_mobile() -> None:
    """Every sampled number is valid for libphonenumber; about 80% are mobile, the rest fixed lines."""
    register = generate_register(50_000, seed=3)
    sample = np.random.default_rng(0).choice(register, 1_500, replace=False)
    kinds = {"mobile": 0, "fixed": 0}
    for key in sample.tolist():
        parsed = phonenumbers.parse(f"+{key}")
        assert phonenumbers.is_valid_number(parsed), f"invalid synthetic number ending {str(key)[-2:]}"
        kind = phonenumbers.number_type(parsed)
        kinds["mobile" if kind == phonenumbers.PhoneNumberType.MOBILE else "fixed"] += 1
    assert kinds["mobile"] / len(sample) == pytest.approx(0.8, abs=0.04)


def test_queries_are_half_hits() -> None:
    """Generated queries are seeded and half of them are in the register."""
    register = generate_register(30_000, seed=4)
    queries = generate_queries(register, 10_000, seed=9)
    assert queries.size == 10_000
    assert np.isin(queries, register).mean() == pytest.approx(0.5, abs=0.01)
    assert np.array_equal(queries, generate_queries(register, 10_000, seed=9))


def test_beyond_swedish_capacity_tops_up_with_nanp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registers larger than Swedish number space are topped up with +1 numbers."""
    monkeypatch.setattr("nixlookup.server.store._synthetic.SWEDISH_CAPACITY", 1_000)
    register = generate_register(1_500, seed=5)
    assert register.size == 1_500
    assert (register // np.uint64(10**10) == 1).sum() == 500, "+1 keys are 1NPANXXXXXX"


def test_index_is_flagged_synthetic_and_text_round_trips(tmp_path: Path) -> None:
    """The synthetic index says it is synthetic; text output holds one E.164 number per line."""
    index = synthetic_index(5_000, seed=6)
    assert index.meta.synthetic
    assert "synthetic" in index.meta.source
    path = tmp_path / "register.txt"
    write_text_register(path, index.sorted_keys(), national=True)
    lines = path.read_text().splitlines()
    assert len(lines) == 5_000
    assert all(line.startswith("0") for line in lines)
