"""The bulk path's caller-list machinery: `KeyProbe` against a dict, `CallerOverlay` and
`apply_caller_lists` against the lists, `OverlayCache` reuse and replacement."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nixlookup.server.index import Index
from nixlookup.server.policy import Policy
from nixlookup.server.policy._facts import FACT_OF_LIST, apply_caller_lists
from nixlookup.server.policy._overlay import FOREVER, MAX_END_DAY, CallerOverlay, OverlayCache
from nixlookup.server.policy._policy import NIX_RULES, CodeTable
from nixlookup.server.policy._probe import KeyProbe
from nixlookup.server.store import ListKind, ServingState

U64 = np.uint64


def _check_against_dict(mapping: dict[int, int], queries: list[int]) -> None:
    keys = np.array(list(mapping), dtype=np.uint64)
    probe = KeyProbe(keys, np.array(list(mapping.values()), dtype=np.uint64))
    positions, payloads = probe.find(np.array(queries, dtype=np.uint64))
    expected = [(i, mapping[q]) for i, q in enumerate(queries) if q in mapping]
    assert list(zip(positions.tolist(), payloads.tolist(), strict=True)) == expected


@settings(max_examples=200, deadline=None)
@given(
    mapping=st.dictionaries(
        st.one_of(st.integers(min_value=0, max_value=2**64 - 1), st.integers(46_700_000_000, 46_700_000_400)),
        st.integers(min_value=0, max_value=2**64 - 1),
        max_size=60,
    ),
    extra=st.lists(st.one_of(st.just(2**64 - 1), st.integers(min_value=0, max_value=2**64 - 1)), max_size=30),
    data=st.data(),
)
def test_probe_equals_a_dict(mapping: dict[int, int], extra: list[int], data: st.DataObject) -> None:
    """For any keys and payloads, find() reports exactly the queries that are keys, with their payloads."""
    members = list(mapping)
    picked = data.draw(st.lists(st.sampled_from(members), max_size=30)) if members else []
    queries = data.draw(st.permutations([*picked, *extra]))
    _check_against_dict(mapping, queries)


def test_probe_with_overflowing_buckets() -> None:
    """A large key set (whose fullest buckets spill into the overflow array) is still answered exactly."""
    rng = np.random.default_rng(5)
    keys = np.unique(rng.integers(46_700_000_000, 46_800_000_000, size=50_000, dtype=np.uint64))
    payloads = rng.integers(0, 2**63, size=keys.size, dtype=np.uint64)
    probe = KeyProbe(keys, payloads)
    assert probe._overflow_keys.size > 0  # the case this test exists for
    queries = np.concatenate(
        [keys, rng.integers(46_700_000_000, 46_800_000_000, size=50_000, dtype=np.uint64)]
    )
    rng.shuffle(queries)
    positions, found = probe.find(queries)
    lookup = dict(zip(keys.tolist(), payloads.tolist(), strict=True))
    expected_positions = [i for i, q in enumerate(queries.tolist()) if q in lookup]
    assert positions.tolist() == expected_positions
    assert found.tolist() == [lookup[q] for q in queries[positions].tolist()]


def test_empty_probe_finds_nothing() -> None:
    """A probe over no keys answers every query with nothing, including the empty-slot marker."""
    probe = KeyProbe(np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint64))
    positions, payloads = probe.find(np.array([0, 2**64 - 1, 46701234567], dtype=np.uint64))
    assert positions.size == 0
    assert payloads.size == 0


def _index(entries: dict[int, int] | list[int], version: str) -> Index:
    if isinstance(entries, list):
        return Index.build(np.array(entries, dtype=np.uint64), version=version, source="test")
    return Index.build(
        np.array(list(entries), dtype=np.uint64),
        values=np.array(list(entries.values()), dtype=np.uint32),
        version=version,
        source="test",
    )


def test_caller_lists_fold_into_codes_caps_and_the_register_s_share() -> None:
    """Through the compiled loop: each listed number gets its facts (opted out; relationship live while
    end + grace >= today, ongoing without an end, far-future ends clamped; consent live until its expiry),
    valid_until is capped by the list that decided, and only numbers the lists left undecided go on to
    the register."""
    overlay = CallerOverlay.build(
        (
            _index([1, 2], "o"),
            _index({2: 20_000, 3: 0, 4: 2**32 - 1, 7: 19_000}, "r"),
            _index({3: 21_000, 5: 0}, "c"),
        ),
        relationship_grace_days=365,
    )
    assert overlay is not None
    assert overlay.count == 6
    table = CodeTable.build(NIX_RULES, exempt=False)
    keys = np.array([9, 1, 2, 3, 4, 5, 6, 7], dtype=np.uint64)
    codes = np.zeros(keys.size, dtype=np.uint8)
    no_cap = 2**32 - 1
    days = np.full(keys.size, no_cap, dtype=np.uint32)
    undecided, undecided_keys = apply_caller_lists(
        overlay,
        keys,
        codes,
        days,
        today=20_000,
        capped_by=table.capped_by,
        register_matters=table.register_matters,
    )
    opted, live, consent = (
        FACT_OF_LIST[kind] for kind in (ListKind.OPT_OUT, ListKind.RELATIONSHIP, ListKind.CONSENT)
    )
    assert codes.tolist() == [0, opted, opted | live, live | consent, live, consent, 0, 0]
    # Opt-outs are not capped; relationship (FOREVER when ongoing; MAX_END_DAY + grace) and consent are.
    assert days.tolist() == [no_cap, no_cap, no_cap, FOREVER, MAX_END_DAY + 365, FOREVER, no_cap, no_cap]
    assert undecided.tolist() == [0, 6, 7]  # 7's relationship ended 19,000 + 365 < today
    assert undecided_keys.tolist() == [9, 6, 7]
    # 2's relationship ended on day 20,000: with 365 days of grace it counts through 20,365, not after.
    for today, expected in ((20_365, opted | live), (20_366, opted)):
        codes[:] = 0
        apply_caller_lists(
            overlay,
            keys[2:3],
            codes[2:3],
            days[2:3],
            today=today,
            capped_by=table.capped_by,
            register_matters=table.register_matters,
        )
        assert codes[2] == expected, today


def test_overlay_of_empty_lists_is_none() -> None:
    """Lists that exist but hold nothing need no overlay."""
    assert CallerOverlay.build((_index([], "o"), None, None), relationship_grace_days=365) is None


def test_cache_reuses_and_replaces_per_caller() -> None:
    """Same list objects: the same overlay; a new version: a new one; the previous version stays usable."""
    cache = OverlayCache(relationship_grace_days=365, max_callers=2)
    first = (_index([1], "o1"), None, None)
    second = (_index([1, 2], "o2"), None, None)
    built = cache.get("acme", first)
    assert cache.get("acme", first) is built
    replaced = cache.get("acme", second)
    assert replaced is not built
    assert cache.get("acme", first) is built  # still cached: batches on the old state do not rebuild
    cache.get("beta", first)
    cache.get("gamma", first)  # evicts the least recently used caller (acme)
    assert cache.get("acme", second) is not replaced


def test_prepare_builds_every_callers_overlay_once() -> None:
    """Policy.prepare builds overlays for each caller with lists; batches then reuse them."""
    register = _index([46701234567], "reg")
    state = ServingState(
        register=register,
        lists={
            (ListKind.OPT_OUT, "acme"): _index([46701234567], "o"),
            (ListKind.CONSENT, "beta"): _index({1: 0}, "c"),
        },
    )
    policy = Policy()
    assert policy.prepare(state) == 2
    assert policy._overlay_for(state, "acme") is policy._overlay_for(state, "acme")
    assert policy._overlay_for(state, "nobody") is None


def test_keys_too_large_to_quotient_are_found_exactly() -> None:
    """Keys whose quotient needs more than 32 bits (not Swedish numbers; up to 2**64 - 1) live in the
    overflow array; they and their neighbours are answered exactly, beside ordinary keys."""
    huge = [2**64 - 1, 2**64 - 2, 2**63, 10**18 + 7]
    ordinary = [46701234567, 46701234568]
    keys = np.array(huge + ordinary, dtype=np.uint64)
    payloads = np.arange(1, keys.size + 1, dtype=np.uint64)
    probe = KeyProbe(keys, payloads)
    assert probe.overflow_count >= len(huge)
    queries = [2**64 - 3, *huge, 0, 46701234569, *ordinary, 2**63 + 1]
    _check_against_dict(dict(zip(keys.tolist(), payloads.tolist(), strict=True)), queries)


def test_zero_is_not_an_empty_slot() -> None:
    """Key 0 is stored as quotient 0 + 1, so an empty slot (0) never answers for it, and it is found when
    listed."""
    _check_against_dict({1: 5, 2: 6}, [0, 1, 2])
    _check_against_dict({0: 9, 1: 5}, [0, 1, 2])


def test_probe_is_compact() -> None:
    """The table stays near 13 bytes per key (a slot is 8 bytes at 5 keys per 8-slot bucket) plus a
    filter of 8-16 bits per key: small enough to share the cache with the register."""
    rng = np.random.default_rng(11)
    keys = np.unique(rng.integers(46_700_000_000, 46_800_000_000, size=600_000, dtype=np.uint64))
    probe = KeyProbe(keys, rng.integers(0, 1_000, size=keys.size, dtype=np.uint64))
    assert probe.nbytes < 16 * keys.size
    assert probe.overflow_count < 0.05 * keys.size
