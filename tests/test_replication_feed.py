"""Replication in-process: the store's change feed, through the wire format, into a follower's `Replica`.

The oracle is the writer's own serving state: after every sync point a follower must hold exactly the
writer's lists (version, count, checksum, keys, end days), list by list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import RegisterFile, make_mobile_keys, write_register

from nixlookup.server.errors import InvalidArgumentError
from nixlookup.server.rpc import ChangeAssembler
from nixlookup.server.rpc._replication import change_events
from nixlookup.server.store import (
    REGISTER_KEY,
    ChangeFeed,
    ListChange,
    ListKey,
    ListKind,
    Replica,
    ReplicaDivergedError,
    ServingState,
    Store,
    StoreSettings,
    Subscription,
)

OPT_OUT = (ListKind.OPT_OUT, "acme")
CONSENT = (ListKind.CONSENT, "Acme AB")


@pytest.fixture(name="register")
def fixture_register(tmp_path: Path) -> RegisterFile:
    return write_register(tmp_path / "register.txt", make_mobile_keys(3_000, seed=14))


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path, register: RegisterFile) -> Iterator[Store]:
    settings = StoreSettings(compact_after_records=10_000)
    store = Store.open(tmp_path / "data", initial_register=register.path, settings=settings)
    try:
        yield store
    finally:
        store.close()


def _deliver(replica: Replica, changes: Sequence[ListChange], part_keys: int = 700) -> None:
    """Send `changes` through the wire format (split into small parts) and sync once."""
    assembler = ChangeAssembler()
    for change in changes:
        for event in change_events(change, part_keys=part_keys):
            received = assembler.add(event.change)
            if received is not None:
                replica.add(received)
    assert not assembler.incomplete
    replica.sync()


def _lists(state: ServingState) -> dict[ListKey, tuple[str, int, str, list[int], list[int] | None]]:
    lists = {REGISTER_KEY: state.register, **state.lists}
    described = {}
    for key, index in lists.items():
        values = index.sorted_values()
        described[key] = (
            index.meta.version,
            index.meta.count,
            index.meta.checksum,
            index.sorted_keys().tolist(),
            None if values is None else values.tolist(),
        )
    return described


def _follow(store: Store, replica: Replica) -> Subscription:
    catch_up = store.replication_start(replica.versions())
    replica.begin_stream()
    _deliver(replica, catch_up.changes)
    return catch_up.subscription


def _random_change(store: Store, rng: np.random.Generator, tmp_path: Path, step: int) -> None:
    choice = rng.integers(0, 10)
    keys = make_mobile_keys(40, seed=int(rng.integers(0, 2**31)))
    if choice < 5:
        key = [REGISTER_KEY, OPT_OUT, CONSENT][int(rng.integers(0, 3))]
        until = rng.integers(0, 30_000, size=keys.size).astype(np.uint32) if key == CONSENT else None
        serving = store.holder.current().list_for(*key)
        remove = serving.sorted_keys()[:5] if serving is not None else None
        store.apply_delta(key, add=keys, add_until_days=until, remove=remove)
    elif choice < 7:
        path = tmp_path / f"opt-out-{step}.txt"
        path.write_text("".join(f"+{int(k)}\n" for k in keys), encoding="ascii")
        store.reload(OPT_OUT, path, force=True)
    elif choice < 8 and OPT_OUT in store.holder.current().lists:
        store.drop(OPT_OUT)
    else:
        store.compact()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_follower_holds_exactly_the_writers_lists_after_every_sync(
    store: Store, tmp_path: Path, seed: int
) -> None:
    """Random deltas, reloads, drops and compactions: after each sync the follower equals the writer."""
    replica = Replica()
    subscription = _follow(store, replica)
    assert _lists(replica.holder.current()) == _lists(store.holder.current())
    rng = np.random.default_rng(seed)
    for step in range(25):
        _random_change(store, rng, tmp_path, step)
        if rng.integers(0, 3) == 0:
            continue  # let changes pile up: several in one sync point
        _deliver(replica, subscription.take())
        assert _lists(replica.holder.current()) == _lists(store.holder.current())
    _deliver(replica, subscription.take())
    assert _lists(replica.holder.current()) == _lists(store.holder.current())


def test_a_follower_resumes_with_only_the_deltas_it_lacks(store: Store) -> None:
    """A reconnecting follower holding a version still in the journal gets just the later deltas."""
    replica = Replica()
    _follow(store, replica).close()
    for seed in range(5):
        store.apply_delta(REGISTER_KEY, add=make_mobile_keys(10, seed=100 + seed))
    catch_up = store.replication_start(replica.versions())
    assert (catch_up.resumed_lists, catch_up.snapshot_lists) == (1, 0)
    assert [change.kind.name for change in catch_up.changes] == ["DELTA"] * 5
    _deliver(replica, catch_up.changes)
    assert _lists(replica.holder.current()) == _lists(store.holder.current())
    catch_up.subscription.close()


def test_a_follower_behind_the_last_compaction_gets_a_fresh_snapshot(store: Store) -> None:
    """Once the journal no longer reaches back to the follower's version, the list is resent whole."""
    replica = Replica()
    _follow(store, replica).close()
    store.apply_delta(REGISTER_KEY, add=make_mobile_keys(10, seed=7))
    store.compact()
    store.apply_delta(REGISTER_KEY, add=make_mobile_keys(10, seed=8))
    catch_up = store.replication_start(replica.versions())
    assert (catch_up.resumed_lists, catch_up.snapshot_lists) == (0, 1)
    _deliver(replica, catch_up.changes)
    assert _lists(replica.holder.current()) == _lists(store.holder.current())
    catch_up.subscription.close()


def test_a_list_the_writer_dropped_while_the_follower_was_away_is_dropped(store: Store) -> None:
    """Resuming drops lists the writer no longer has and sends lists it gained."""
    store.apply_delta(OPT_OUT, add=make_mobile_keys(10, seed=9))
    replica = Replica()
    _follow(store, replica).close()
    store.drop(OPT_OUT)
    store.apply_delta(CONSENT, add=make_mobile_keys(10, seed=10))
    catch_up = store.replication_start(replica.versions())
    _deliver(replica, catch_up.changes)
    assert set(replica.holder.current().lists) == {CONSENT}
    assert _lists(replica.holder.current()) == _lists(store.holder.current())
    catch_up.subscription.close()


def test_a_delta_that_does_not_apply_is_refused_and_nothing_changes(store: Store) -> None:
    """A delta onto another version than the follower holds: refused, served state kept, list forgotten."""
    replica = Replica()
    subscription = _follow(store, replica)
    before = replica.holder.current()
    store.apply_delta(REGISTER_KEY, add=make_mobile_keys(10, seed=11))
    store.apply_delta(REGISTER_KEY, add=make_mobile_keys(10, seed=12))
    changes = subscription.take()
    with pytest.raises(ReplicaDivergedError, match="applies to"):
        _deliver(replica, changes[1:])  # the first delta is missing
    assert replica.holder.current() is before
    assert REGISTER_KEY not in replica.versions()  # the next stream resends the register whole
    subscription.close()


def test_a_part_of_another_change_inside_a_change_is_a_protocol_error(store: Store) -> None:
    """The assembler refuses interleaved parts instead of mixing two versions."""
    store.apply_delta(OPT_OUT, add=make_mobile_keys(10, seed=13))
    state = store.holder.current()
    register = next(change_events(ListChange.snapshot(REGISTER_KEY, state.register), part_keys=100))
    other = next(change_events(ListChange.snapshot(OPT_OUT, state.lists[OPT_OUT]), part_keys=100))
    assembler = ChangeAssembler()
    assert assembler.add(register.change) is None
    with pytest.raises(InvalidArgumentError, match="arrived inside"):
        assembler.add(other.change)


def test_a_follower_that_stops_reading_is_cut_off_not_buffered_forever(store: Store) -> None:
    """Past max_pending queued changes the subscription overflows and holds nothing more."""
    feed = ChangeFeed(max_pending=3)
    subscription = feed.subscribe()
    for _ in range(5):
        feed.publish(ListChange.compact(REGISTER_KEY, "000001-00000000"))
    assert subscription.overflowed
    assert subscription.take() == []
    assert feed.position == 5
