"""The index against the simplest thing that is obviously right: a Python set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from nixlookup.server.index import Index, sorted_unique
from nixlookup.server.store import generate_queries, generate_register, read_snapshot, write_snapshot

U64_MAX = 2**64 - 1
MOBILE_BASE = 46_700_000_000

# Keys from several worlds at once: dense mobile blocks, sparse fixed lines, 0 and 2**64-1, and neighbours
# of block edges, so every path of the batch structure (dense, sparse, overflow, out of range) is exercised.
keys_strategy = st.one_of(
    st.integers(MOBILE_BASE, MOBILE_BASE + 3 * 65_536),
    st.integers(4_610_000_000, 46_999_999_999),
    st.sampled_from([0, 1, U64_MAX, U64_MAX - 1, 2**63, 65_535, 65_536]),
    st.integers(0, U64_MAX),
)


def _array(values: list[int] | set[int]) -> np.ndarray:
    return np.array(sorted(values) if isinstance(values, set) else values, dtype=np.uint64)


def _dense_block(start: int, count: int) -> list[int]:
    """`count` keys packed into one 2**16-block, enough to make it a dense bitset block."""
    return list(range(start, start + count * 3, 3))


class IndexAgainstSet(RuleBasedStateMachine):
    """Adds, removes, rebuilds and batch queries: the index always answers like a set."""

    queries = Bundle("queries")

    def __init__(self) -> None:
        super().__init__()
        self.model: set[int] = set()
        self.index = Index.build(np.empty(0, np.uint64), version="v0", source="test")
        self.version = 0

    def _next_version(self) -> str:
        self.version += 1
        return f"v{self.version}"

    @rule(add=st.lists(keys_strategy, max_size=40), remove=st.lists(keys_strategy, max_size=10))
    def apply_delta(self, add: list[int], remove: list[int]) -> None:
        self.index = self.index.with_delta(
            _array(add), _array(remove), version=self._next_version(), source="delta"
        )
        self.model = (self.model | set(add)) - set(remove)

    @rule(start=st.integers(MOBILE_BASE, MOBILE_BASE + 200_000))
    def add_dense_block(self, start: int) -> None:
        block = _dense_block(start, 1_100)
        self.index = self.index.with_delta(
            _array(block), _array([]), version=self._next_version(), source="dense"
        )
        self.model |= set(block)

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def remove_existing(self, data: st.DataObject) -> None:
        victims = data.draw(st.lists(st.sampled_from(sorted(self.model)), max_size=20))
        self.index = self.index.with_delta(
            _array([]), _array(victims), version=self._next_version(), source="remove"
        )
        self.model -= set(victims)

    @rule()
    def rebuild(self) -> None:
        self.index = Index.build(_array(self.model), version=self._next_version(), source="rebuild")

    @rule(target=queries, extra=st.lists(keys_strategy, max_size=30), data=st.data())
    def make_queries(self, extra: list[int], data: st.DataObject) -> list[int]:
        hits = data.draw(st.lists(st.sampled_from(sorted(self.model)), max_size=30)) if self.model else []
        return extra + hits + hits[:3]  # duplicates on purpose

    @rule(query=queries)
    def batch_agrees(self, query: list[int]) -> None:
        expected = np.array([q in self.model for q in query], dtype=np.bool_)
        assert np.array_equal(self.index.contains_many(_array(query)), expected)

    @rule(query=queries)
    def single_agrees(self, query: list[int]) -> None:
        for key in query:
            assert self.index.contains(key) == (key in self.model)

    @invariant()
    def size_and_keys_agree(self) -> None:
        assert len(self.index) == len(self.model)
        assert self.index.sorted_keys().tolist() == sorted(self.model)

    @invariant()
    def empty_query_is_empty(self) -> None:
        assert self.index.contains_many(np.empty(0, np.uint64)).shape == (0,)


IndexAgainstSet.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestIndexAgainstSet = IndexAgainstSet.TestCase


def test_realistic_register_agrees_with_set() -> None:
    """On a synthetic Swedish register (dense mobile blocks, sparse fixed lines) batch == set membership."""
    register = generate_register(60_000, seed=7)
    index = Index.build(register, version="v1", source="synthetic")
    queries = generate_queries(register, 50_000, seed=3)
    model = set(register.tolist())
    expected = np.array([q in model for q in queries.tolist()])
    assert np.array_equal(index.contains_many(queries), expected)
    assert expected.mean() == pytest.approx(0.5, abs=0.02)


def test_sparse_table_overflow_is_searched() -> None:
    """Keys that spill out of full hash buckets are still found (and their neighbours are not)."""
    keys = np.arange(1, 200_001, 7919, dtype=np.uint64) * np.uint64(1_000_003)  # one key per block: sparse
    index = Index.build(keys, version="v", source="t")
    assert index.contains_many(keys).all()
    assert not index.contains_many(keys + np.uint64(1)).any()


@given(st.lists(keys_strategy, max_size=200), st.lists(keys_strategy, max_size=200))
@settings(max_examples=60, deadline=None)
def test_contains_many_matches_set(members: list[int], queries: list[int]) -> None:
    """Any keys, any queries (including 0 and 2**64-1): the batch answer is set membership."""
    index = Index.build(_array(members), version="v", source="t")
    model = set(members)
    expected = np.array([q in model for q in queries], dtype=np.bool_)
    assert np.array_equal(index.contains_many(_array(queries)), expected)


def test_values_follow_their_keys() -> None:
    """Per-key values (end days) survive build, deltas and lookups; the last value of a key wins."""
    index = Index.build(
        _array([5, 3, 5, 9]), values=np.array([10, 20, 30, 40], np.uint32), version="v1", source="t"
    )
    assert index.values_many(_array([3, 5, 9, 4])).tolist() == [20, 30, 40, 0]
    assert index.value_of(5) == 30
    assert index.value_of(4) is None
    updated = index.with_delta(
        _array([4, 9]), _array([3]), add_values=np.array([50, 60], np.uint32), version="v2", source="d"
    )
    assert updated.values_many(_array([3, 4, 5, 9])).tolist() == [0, 50, 30, 60]
    assert index.values_many(_array([3])).tolist() == [20], "the old version is untouched"


def test_index_is_immutable_to_callers() -> None:
    """Arrays handed out cannot be written, so no caller can corrupt a serving version."""
    index = Index.build(_array([1, 2, 3]), version="v", source="t")
    with pytest.raises(ValueError, match="read-only"):
        index.sorted_keys()[0] = 7


def test_metadata_and_sizes() -> None:
    """Metadata says what was built; equal key sets get equal checksums; sizes are reported."""
    a = Index.build(_array([3, 1, 2, 2]), version="a", source="file.txt")
    b = Index.build(_array([1, 2, 3]), version="b", source="other")
    assert a.meta.count == 3
    assert a.meta.checksum == b.meta.checksum
    assert a.meta.version == "a"
    assert a.nbytes_total >= a.nbytes_canonical > 0


def test_sorted_unique_matches_numpy() -> None:
    """The fast sort+dedupe helper equals np.unique."""
    values = np.random.default_rng(1).integers(0, 1000, 5000).astype(np.uint64)
    assert np.array_equal(sorted_unique(values), np.unique(values))


def test_negative_keys_are_refused() -> None:
    """Signed input with negative values is an error, not a silent wrap-around."""
    with pytest.raises(ValueError, match="non-negative"):
        Index.build(np.array([-1, 5]), version="v", source="t")


@given(st.lists(keys_strategy, max_size=300), st.integers(0, 5_000))
@settings(max_examples=60, deadline=None)
def test_bitmap_built_from_serialization_equals_pyroaring(members: list[int], dense_run: int) -> None:
    """Our direct portable serialization builds exactly pyroaring's bitmap (array and bitset containers)."""
    from pyroaring import FrozenBitMap64

    from nixlookup.server.index._roaring_build import bitmap_from_sorted_unique

    keys = sorted(set(members) | set(range(MOBILE_BASE, MOBILE_BASE + dense_run)))
    built = bitmap_from_sorted_unique(np.array(keys, dtype=np.uint64))
    assert built == FrozenBitMap64(keys)
    assert len(built) == len(keys)


def test_incremental_delta_matches_a_rebuild(tmp_path: Path) -> None:
    """Small deltas patch the batch structure; every kind of block they touch answers like a rebuild."""
    register = generate_register(80_000, seed=21)
    base = Index.build(register, version="v1", source="t")
    rng = np.random.default_rng(4)
    present = register[rng.choice(register.size, 3_000, replace=False)]
    fresh = generate_queries(register, 6_000, hit_share=0.0, seed=8)  # mobile (dense) and fixed (sparse)
    add = np.concatenate([fresh, np.array([46_999_999_999], np.uint64)])  # a brand-new block too
    patched = base.with_delta(add, present, version="v2", source="delta")
    rebuilt = Index.build(np.setdiff1d(np.union1d(register, add), present), version="v2", source="rebuild")
    queries = np.concatenate([generate_queries(register, 20_000, seed=9), add, present])
    assert np.array_equal(patched.contains_many(queries), rebuilt.contains_many(queries))
    assert len(patched) == len(rebuilt)
    assert patched.meta.checksum == rebuilt.meta.checksum
    path = tmp_path / "patched.snap"
    write_snapshot(path, patched)
    assert np.array_equal(read_snapshot(path)[0].contains_many(queries), rebuilt.contains_many(queries))
    # The base version is untouched by the patch.
    assert base.contains_many(present).all()
    assert not base.contains_many(fresh).any()


def test_delta_outside_the_directory_range_falls_back_to_a_rebuild() -> None:
    """Keys below the first or beyond the last block still land correctly (full rebuild path)."""
    base = Index.build(generate_register(20_000, seed=2), version="v1", source="t")
    outside = np.array([5, 2**64 - 1, 10**10 + 2_015_550_123], dtype=np.uint64)
    changed = base.with_delta(outside, np.empty(0, np.uint64), version="v2", source="d")
    assert changed.contains_many(outside).all()
    assert len(changed) == len(base) + 3


def test_dense_bitsets_stay_within_their_memory_budget() -> None:
    """Blocks just busy enough for a generous bitset do not blow memory up: the frugal rule takes over."""
    blocks = np.arange(200, dtype=np.uint64) * np.uint64(1 << 16) + np.uint64(46_000_000_000)
    keys = (blocks[:, None] + np.arange(0, 300 * 200, 200, dtype=np.uint64)[None, :]).ravel()  # 300/block
    index = Index.build(keys, version="v", source="t")
    assert index.nbytes_total / len(index) < 16  # hash table + roaring; bitsets here would cost 27+ B
    assert index.contains_many(keys).all()
    assert not index.contains_many(keys + np.uint64(1)).any()
