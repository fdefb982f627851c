"""The serving state: one reference, swapped whole, with caches warmed before readers see a version."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import numpy as np
import pytest

from nixlookup.server.errors import UnavailableError
from nixlookup.server.index import Index
from nixlookup.server.store import ListKind, PerStateMemo, ServingState, StateHolder


def _index(version: str, *keys: int) -> Index:
    return Index.build(np.array(keys, dtype=np.uint64), version=version, source="test")


def test_preparers_run_before_the_swap_and_failures_do_not_block_it() -> None:
    """A preparer sees the new state while readers still get the old one; a failing one is only logged."""
    holder = StateHolder(ServingState(register=_index("v1", 1)))
    seen: list[tuple[str, str]] = []

    def record(state: ServingState) -> None:
        seen.append((state.register.meta.version, holder.current().register.meta.version))

    def broken(state: ServingState) -> None:
        raise RuntimeError("cache build failed")

    holder.add_preparer(record)
    holder.add_preparer(broken)
    holder.swap(ServingState(register=_index("v2", 2)))
    assert seen == [("v1", "v1"), ("v2", "v1")]
    assert holder.current().register.meta.version == "v2"


def test_replacing_builds_a_new_state_and_leaves_the_old_one_alone() -> None:
    """Replacing or dropping a caller's list yields a new state; the old state is unchanged."""
    old = ServingState(register=_index("r1", 1))
    optout = _index("o1", 5)
    new = old.replacing((ListKind.OPT_OUT, "acme"), optout)
    assert new.list_for(ListKind.OPT_OUT, "acme") is optout
    assert old.list_for(ListKind.OPT_OUT, "acme") is None
    assert new.replacing((ListKind.OPT_OUT, "acme"), None).list_for(ListKind.OPT_OUT, "acme") is None
    assert new.generation == old.generation + 1
    with pytest.raises(ValueError, match="cannot be dropped"):
        old.replacing((ListKind.REGISTER, ""), None)


def test_no_state_yet_is_unavailable() -> None:
    """Before anything is loaded, readers get UNAVAILABLE with advice, not an AttributeError."""
    with pytest.raises(UnavailableError, match="retry"):
        StateHolder().current()


def test_per_state_memo_computes_once_per_state_and_key() -> None:
    """Values are computed once per (state, key); a new state starts afresh and lets the old one go."""
    memo: PerStateMemo[str] = PerStateMemo()
    first = ServingState(register=_index("v1", 1))
    calls: list[str] = []

    def compute(label: str) -> Callable[[], str]:
        def run() -> str:
            calls.append(label)
            return label

        return run

    assert memo.get(first, "acme", compute("a1")) == "a1"
    assert memo.get(first, "acme", compute("again")) == "a1"
    assert memo.get(first, "beta", compute("b1")) == "b1"
    second = ServingState(register=_index("v2", 2))
    assert memo.get(second, "acme", compute("a2")) == "a2"
    assert calls == ["a1", "b1", "a2"]
    released = weakref.ref(first.register)
    del first
    gc.collect()
    assert released() is None  # the memo moved on to `second` and holds nothing of the first state
