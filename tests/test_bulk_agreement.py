"""The bulk path's compiled loops agree exactly with the numpy passes they replaced and with the scalar path.

Hypothesis draws registers that mix dense blocks (>= 256 keys of one 2**16-block, bitsets) with thin
ones (the hash table, its overflow), and queries around them (hits, near misses, out-of-range blocks
on both sides, the hash table's empty marker). The scalar reference is a Python `set`.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlookup.server._jit import bulk_compiled, set_bulk_path
from nixlookup.server.index import Index
from nixlookup.server.numbering import classify_key, classify_keys

BASE = 46_701_000_000 & ~0xFFFF  # a 2**16-aligned block of mobile numbers
_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def registers(draw: st.DrawFn) -> set[int]:
    keys: set[int] = set()
    for block in draw(st.lists(st.integers(0, 40), max_size=4, unique=True)):  # dense blocks
        start = BASE + (block << 16)
        keys.update(range(start, start + 300 * 7, 7))
    keys.update(draw(st.sets(st.integers(BASE - 2**20, BASE + 2**22), max_size=200)))  # thin blocks
    keys.update(draw(st.sets(st.sampled_from([0, 1, 2, 4_631_123_456]), max_size=2)))
    return keys


@_SETTINGS
@given(keys=registers(), extra=st.lists(st.integers(0, 2**64 - 1), max_size=20), seed=st.integers(0, 2**32))
def test_register_probe_compiled_numpy_and_set_agree(keys: set[int], extra: list[int], seed: int) -> None:
    """`contains_many` (compiled), its numpy reference and a Python set give the same answers."""
    assert bulk_compiled()  # the default path is the compiled one
    index = Index.build(np.array(sorted(keys), dtype=np.uint64), version="t", source="t")
    rng = np.random.default_rng(seed)
    listed = np.array(sorted(keys), dtype=np.uint64)
    near = (
        listed[rng.integers(0, listed.size, 200)] + rng.integers(0, 3, 200).astype(np.uint64)
        if keys
        else listed
    )
    queries = np.concatenate([near, np.array([*extra, 0, 2**64 - 1, BASE - 1], dtype=np.uint64)])
    compiled = index.contains_many(queries)
    numpy_path = index._batch.contains_many_numpy(queries)
    expected = np.array([int(q) in keys for q in queries.tolist()], dtype=np.bool_)
    assert np.array_equal(compiled, expected)
    assert np.array_equal(numpy_path, expected)


_KEY_EDGES = [0, 1, 9, 10, 46, 460, 4612, 468123456, 4681234567, 46_700_000_000, 46_799_999_999, 47 * 10**10,
              10**18, 10**19 - 1, 10**19, 2**64 - 1, 4_631_123_456, 46_0701_234_567]  # fmt: skip
keys_drawn = st.one_of(
    st.sampled_from(_KEY_EDGES),
    st.integers(46 * 10**6, 47 * 10**13),  # Swedish ranges of every length, and their gaps
    st.integers(0, 2**64 - 1),
)


@_SETTINGS
@given(values=st.lists(keys_drawn, max_size=80))
def test_key_classification_compiled_numpy_and_scalar_agree(values: list[int]) -> None:
    """`classify_keys` (compiled), its numpy chunks and `classify_key` one by one give the same results."""
    keys = np.array(values, dtype=np.uint64)
    compiled = classify_keys(keys)
    previous = set_bulk_path("numpy")
    try:
        numpy_path = classify_keys(keys)
    finally:
        set_bulk_path(previous)
    for name in ("keys", "problems", "line_types"):
        assert np.array_equal(getattr(compiled, name), getattr(numpy_path, name)), name
    for row, value in enumerate(values):
        assert compiled[row] == classify_key(value)
