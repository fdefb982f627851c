"""Opening a data directory: clear what a crash left behind, restore every list, seed an empty directory.

Theory of operation:
- First what is never state: ``.trash`` (lists a crashed `Store.drop` had moved out, not yet deleted) and
  ``.build`` (a child build's scratch snapshots) are removed (`clean_leftovers`).
- Every list the directory holds (`discover_lists`) is restored by `ListTable.restore`: exactly its last
  acknowledged state, or the start is refused (`_recovery`).
- A directory without a register is seeded: from ``initial_register`` (read and validated as a reload
  would, `build_off_to_the_side`), else from a synthetic register (`generate_register`) marked synthetic.
  The seed is committed as a new list before the store serves it: a crash after this leaves a seeded
  directory, never half of one.
- A directory that has a real register is the source of truth: ``initial_register`` is not loaded (the
  log says so and how to load it). Replacing a synthetic register with the file is `Store.open`'s, as a
  validated reload once the store serves.
- The result is the first `ServingState`, swapped in by `Store.open` as one state of every list.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from types import MappingProxyType

from nixlookup.server.index import Index
from nixlookup.server.logs import get_logger
from nixlookup.server.store._datadir import discover_lists
from nixlookup.server.store._lists import ListTable
from nixlookup.server.store._registerfile import shown_path
from nixlookup.server.store._reload import ReloadRequest, build_off_to_the_side
from nixlookup.server.store._state import REGISTER_KEY, ListKey, ServingState
from nixlookup.server.store._types import StoreSettings

__all__ = ["clean_leftovers", "open_state"]

_log = get_logger("nixlookup.store")


def clean_leftovers(root: Path) -> None:
    """Remove what a crash may have left: half-deleted lists and child builds' scratch snapshots."""
    for leftover in (root / ".trash", root / ".build"):
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)


def open_state(
    root: Path,
    settings: StoreSettings,
    lists: ListTable,
    *,
    initial_register: Path | None,
    synthetic_size: int | None,
) -> ServingState:
    """Restore (or seed) every list of `root` into `lists`; the state that serves them."""
    started = time.perf_counter()
    keys = discover_lists(root)
    indexes: dict[ListKey, Index] = {}
    if REGISTER_KEY not in keys:
        indexes[REGISTER_KEY] = _seed_register(root, settings, lists, initial_register, synthetic_size)
    for key in keys:
        indexes[key] = lists.restore(key)
    register = indexes.pop(REGISTER_KEY)
    if initial_register is not None and REGISTER_KEY in keys and not register.meta.synthetic:
        _log.warning(
            "register_file_not_loaded_at_start",
            path=shown_path(initial_register),
            reason="the data directory holds a register and is the source of truth; "
            "send SIGHUP or use `nixlookup admin reload` to load the file",
        )
    _log.info(
        "store_opened",
        data_dir=str(root),
        lists=len(indexes) + 1,
        register_version=register.meta.version,
        register_count=register.meta.count,
        seconds=round(time.perf_counter() - started, 3),
    )
    return ServingState(register=register, lists=MappingProxyType(indexes))


def _seed_register(
    root: Path,
    settings: StoreSettings,
    lists: ListTable,
    initial_register: Path | None,
    synthetic_size: int | None,
) -> Index:
    if initial_register is not None:
        built = build_off_to_the_side(
            REGISTER_KEY, ReloadRequest(path=initial_register), max_bad_share=settings.max_bad_share
        )
        index, source = built.index, str(initial_register)
    else:
        from nixlookup.server.store._synthetic import DEFAULT_SYNTHETIC_SIZE, generate_register

        size = synthetic_size if synthetic_size is not None else DEFAULT_SYNTHETIC_SIZE
        seed = settings.synthetic_seed
        source = f"synthetic:size={size},seed={seed}"
        index = Index.build(generate_register(size, seed), version="", source=source, synthetic=True)
    _log.info("store_seeding", data_dir=str(root), source=shown_path(source), count=index.meta.count)
    return lists.create(REGISTER_KEY, index, event="snapshot", source=source)
