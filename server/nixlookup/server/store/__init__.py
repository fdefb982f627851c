"""Versions, files and durability: snapshots, register files, the data directory, the journal, reloads,
deltas, recovery, history, the change feed followers replicate from (and the follower's `Replica`), and the
one swappable `ServingState` every reader takes once per RPC or batch."""

from __future__ import annotations

from nixlookup.server.store._addresses import (
    DEFAULT_SYNTHETIC_ADDRESS_SIZE,
    open_address_register,
    synthetic_address_index,
)
from nixlookup.server.store._audit import (
    AUDIT_FILE_NAME,
    AuditLog,
    AuditRecord,
)
from nixlookup.server.store._feed import (
    DEFAULT_MAX_PENDING,
    ChangeFeed,
    ListChange,
    Subscription,
)
from nixlookup.server.store._freshness import (
    Behind,
    behind,
)
from nixlookup.server.store._history import (
    VersionRecord,
)
from nixlookup.server.store._recovery import (
    version_seq,
)
from nixlookup.server.store._register_dates import (
    EARLIEST_REGISTER_DATE,
    MAX_CLOCK_SKEW,
)
from nixlookup.server.store._registerfile import (
    load_register_file,
    shown_path,
)
from nixlookup.server.store._reload import (
    check_reload_path,
)
from nixlookup.server.store._repair import (
    ListRepair,
    RepairReport,
    repair_data_dir,
)
from nixlookup.server.store._replica import (
    ReceivedChange,
    Replica,
    ReplicaDivergedError,
    SyncResult,
)
from nixlookup.server.store._replication import (
    CatchUp,
)
from nixlookup.server.store._snapshot import (
    is_snapshot,
    read_snapshot,
    write_snapshot,
)
from nixlookup.server.store._state import (
    ADDRESS_REGISTER_KEY,
    REGISTER_KEY,
    ListKey,
    ListKind,
    PerStateMemo,
    ServingState,
    StateHolder,
    list_name,
)
from nixlookup.server.store._store import (
    ListDescription,
    Store,
    StoreSettings,
    check_list_key,
)
from nixlookup.server.store._synthetic import (
    DEFAULT_SEED,
    DEFAULT_SYNTHETIC_SIZE,
    SyntheticFileFormat,
    generate_queries,
    generate_register,
    write_synthetic_file,
    write_text_register,
)
from nixlookup.server.store._types import (
    ReloadResult,
)
from nixlookup.server.store._watch import (
    RegisterSourceWatcher,
)

__all__ = [
    "ADDRESS_REGISTER_KEY",
    "AUDIT_FILE_NAME",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_SEED",
    "DEFAULT_SYNTHETIC_ADDRESS_SIZE",
    "DEFAULT_SYNTHETIC_SIZE",
    "EARLIEST_REGISTER_DATE",
    "MAX_CLOCK_SKEW",
    "REGISTER_KEY",
    "AuditLog",
    "AuditRecord",
    "Behind",
    "CatchUp",
    "ChangeFeed",
    "ListChange",
    "ListDescription",
    "ListKey",
    "ListKind",
    "ListRepair",
    "PerStateMemo",
    "ReceivedChange",
    "RegisterSourceWatcher",
    "ReloadResult",
    "RepairReport",
    "Replica",
    "ReplicaDivergedError",
    "ServingState",
    "StateHolder",
    "Store",
    "StoreSettings",
    "Subscription",
    "SyncResult",
    "SyntheticFileFormat",
    "VersionRecord",
    "behind",
    "check_list_key",
    "check_reload_path",
    "generate_queries",
    "generate_register",
    "is_snapshot",
    "list_name",
    "load_register_file",
    "open_address_register",
    "read_snapshot",
    "repair_data_dir",
    "shown_path",
    "synthetic_address_index",
    "version_seq",
    "write_snapshot",
    "write_synthetic_file",
    "write_text_register",
]
