"""Seeding the NIX-Adresserat register of a store at start: ``--address-register FILE`` or a synthetic one.

Theory of operation:
- The address register is the list ``(ListKind.ADDRESS_REGISTER, "")`` of the one `Store`: the same
  index, snapshots, journal, history, change feed and Admin operations as every other list. Only its
  first version is made here, after `Store.open` restored whatever the data directory holds:
  - the directory has no address register: load `path` (a validated reload), else seed a SYNTHETIC one
    (`addressing.generate_address_register`, seeded, `synthetic_size` people) marked synthetic, as the
    synthetic phone register is;
  - the directory holds a synthetic address register and `path` is given: load `path` over it;
  - the directory holds a real one: it is the source of truth; `path` is not loaded (logged), as for phone.
- The synthetic register's keys are those `_addressfile` would read from its CSV (`register_row_keys`
  over the generator's columns), so a synthetic person's every variant matches as a real one would.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from nixlookup.server.addressing import (
    DEFAULT_ADDRESS_SEED,
    generate_address_register,
    register_columns,
    register_row_keys,
)
from nixlookup.server.index import Index
from nixlookup.server.logs import get_logger
from nixlookup.server.store._registerfile import shown_path
from nixlookup.server.store._state import ADDRESS_REGISTER_KEY
from nixlookup.server.store._store import Store

__all__ = [
    "ADDRESS_REGISTER_KEY",
    "DEFAULT_SYNTHETIC_ADDRESS_SIZE",
    "open_address_register",
    "synthetic_address_index",
]

DEFAULT_SYNTHETIC_ADDRESS_SIZE: Final = 2_000
"""People in the synthetic address register (keying costs ~0.2-1 ms per person on a loaded 2-core machine,
and every server start without --address-register pays it; --synthetic-address-size for more)."""

_log = get_logger("nixlookup.store")


def synthetic_address_index(size: int, seed: int = DEFAULT_ADDRESS_SEED) -> Index:
    """The synthetic register of `size` people as an index (every key `_addressfile` would store)."""
    register = generate_address_register(size, seed=seed)
    columns = {name: values.tolist() for name, values in register_columns(register).items()}
    keys, _rows, _checked = register_row_keys(columns, reference_date=datetime.now(UTC).date())
    source = f"synthetic-addresses:size={size},seed={seed}"
    return Index.build(keys, version="", source=source, synthetic=True)


def open_address_register(
    store: Store, path: Path | None, *, synthetic_size: int | None = None, seed: int = DEFAULT_ADDRESS_SEED
) -> None:
    """Give `store` its address register, from `path` or synthetic (see the module doc)."""
    current = store.holder.current().list_for(*ADDRESS_REGISTER_KEY)
    if current is not None:
        if path is None:
            return
        if current.meta.synthetic:
            _log.info("address_register_replacing_synthetic", path=shown_path(path))
            store.reload(ADDRESS_REGISTER_KEY, path, fmt=None)
        else:
            _log.warning(
                "address_register_file_not_loaded_at_start",
                path=shown_path(path),
                reason="the data directory holds an address register and is the source of truth; use "
                "`nixlookup admin reload --kind address-register` to load the file",
            )
        return
    if path is not None:
        store.reload(ADDRESS_REGISTER_KEY, path, fmt=None)
        return
    size = synthetic_size or DEFAULT_SYNTHETIC_ADDRESS_SIZE
    index = synthetic_address_index(size, seed)
    store.create_list(ADDRESS_REGISTER_KEY, index)
    _log.info("address_register_seeded", source=index.meta.source, count=index.meta.count)
