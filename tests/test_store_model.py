"""The store against a plain dict model (hypothesis): any mix of deltas, compactions and restarts agrees."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from conftest import make_mobile_keys, write_register
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from nixlookup.server.index import Index
from nixlookup.server.store import ListKind, Store, StoreSettings
from nixlookup.server.store._journal import DeltaRecord
from nixlookup.server.store._recovery import fold_deltas

_UNIVERSE = [int(key) for key in make_mobile_keys(40, seed=91)]
"""A small key space, so adds, removes and re-adds of the same keys collide often."""
_LIST = (ListKind.CONSENT, "acme")

_keys = st.lists(st.sampled_from(_UNIVERSE), max_size=6)
_days = st.integers(min_value=0, max_value=30_000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.dictionaries(st.sampled_from(_UNIVERSE), _days, max_size=20),
    steps=st.lists(st.tuples(_keys, st.lists(_days, min_size=6, max_size=6), _keys), max_size=6),
)
def test_fold_matches_one_with_delta_per_record(
    base: dict[int, int], steps: list[tuple[list[int], list[int], list[int]]]
) -> None:
    """Replaying many records in one fold gives exactly what applying them one by one gives."""
    index = Index.build(
        np.array(list(base), np.uint64),
        values=np.array(list(base.values()), np.uint32),
        version="",
        source="t",
    )
    stepwise = index
    records = []
    for seq, (add, days, remove) in enumerate(steps, start=1):
        add_keys = np.array(add, np.uint64)
        until = np.array(days[: len(add)], np.uint32)
        remove_keys = np.array(remove, np.uint64)
        stepwise = stepwise.with_delta(add_keys, remove_keys, add_values=until, version="", source="t")
        records.append(DeltaRecord(seq, "", "", 0.0, add_keys, remove_keys, until))
    keys, values = fold_deltas(index, records)
    folded = Index.build(keys, values=values, version="", source="t")
    assert np.array_equal(folded.sorted_keys(), stepwise.sorted_keys())
    assert values is not None
    assert np.array_equal(folded.sorted_values(), stepwise.sorted_values())  # type: ignore[arg-type]


class StoreMachine(RuleBasedStateMachine):
    """Deltas, compactions and restarts on a dated list, checked against a dict after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="nixlookup-store-model-"))
        register = write_register(self.directory / "register.txt", make_mobile_keys(50, seed=92))
        self.settings = StoreSettings(compact_after_records=4)
        self.store = Store.open(
            self.directory / "data", settings=self.settings, initial_register=register.path
        )
        self.model: dict[int, int] = {}

    @rule(add=_keys, days=st.lists(_days, min_size=6, max_size=6), remove=_keys)
    def apply_delta(self, add: list[int], days: list[int], remove: list[int]) -> None:
        self.store.apply_delta(
            _LIST,
            add=np.array(add, np.uint64),
            add_until_days=np.array(days[: len(add)], np.uint32),
            remove=np.array(remove, np.uint64),
        )
        for key, day in zip(add, days, strict=False):
            self.model[key] = day
        for key in remove:
            self.model.pop(key, None)

    @rule()
    def compact(self) -> None:
        self.store.compact(None)

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = Store.open(self.directory / "data", settings=self.settings)

    @invariant()
    def serves_the_model(self) -> None:
        index = self.store.holder.current().list_for(*_LIST)
        if index is None:
            assert not self.model
            return
        keys = np.array(_UNIVERSE, np.uint64)
        assert index.contains_many(keys).tolist() == [key in self.model for key in _UNIVERSE]
        assert index.values_many(keys).tolist() == [self.model.get(key, 0) for key in _UNIVERSE]

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)


StoreMachine.TestCase.settings = settings(
    max_examples=12, stateful_step_count=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_store_agrees_with_a_dict_across_restarts = StoreMachine.TestCase
test_store_agrees_with_a_dict_across_restarts.__doc__ = (
    "Any sequence of deltas, compactions, restarts agrees."
)
