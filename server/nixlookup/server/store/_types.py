"""The store's settings and the plain values it answers with (the services convert them to protos)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nixlookup.server.index import Index
from nixlookup.server.store._history import VersionRecord
from nixlookup.server.store._state import ListKey

__all__ = ["DeltaResult", "ListDescription", "ReloadResult", "StoreSettings"]


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Thresholds of the store; each is explained where it is set."""

    max_bad_share: float = 0.01
    """A reload whose file has more unparseable lines than this share is refused: a file that is 1% garbage
    is more likely the wrong file (or a broken export) than a register with a few typos."""
    max_count_change_share: float = 0.05
    """A reload that shrinks or grows a list by more than this share is refused unless forced: the register
    changes by well under 1% a day, so a 5% drop means a truncated or partial file, and a 5% rise the wrong
    file (a 10x file is not a day's registrations)."""
    compact_after_records: int = 1000
    """Deltas journalled before the journal is folded into a new snapshot: bounds restart replay time."""
    compact_after_bytes: int = 64 * 1024 * 1024
    """...or journal bytes, whichever comes first (a few huge deltas)."""
    build_in_child_from_bytes: int = 4 * 1024 * 1024
    """Text and CSV files from this size up are parsed and built in a child process (`_build`): a
    1.5M-line register holds the GIL long enough in places to raise Check's p99 ~10x if built in-process.
    Smaller files, and snapshots (which load in milliseconds), are built in-process."""
    build_timeout_seconds: float = 300.0
    """A child build taking longer than this is abandoned and the reload refused."""
    history_limit: int = 50
    """Version events kept per list (GetRegisterInfo shows them; the file is trimmed on compaction)."""
    synthetic_seed: int = 2008
    """Seed of the synthetic register an empty directory is seeded with when no register file is given."""


@dataclass(frozen=True, slots=True)
class ListDescription:
    """What GetRegisterInfo says about one list (plain values; the service converts)."""

    key: ListKey
    version: str
    source: str
    count: int
    register_date: datetime
    loaded_at: datetime
    checksum: str
    synthetic: bool
    index_bytes: int
    journal_records: int
    history: tuple[VersionRecord, ...]
    """Newest first."""

    @classmethod
    def of(
        cls,
        key: ListKey,
        index: Index,
        *,
        loaded_at: datetime,
        index_bytes: int,
        journal_records: int = 0,
        history: tuple[VersionRecord, ...] = (),
    ) -> ListDescription:
        """A list's description: its serving `index`'s metadata, and what the index does not know."""
        meta = index.meta
        return cls(
            key=key,
            version=meta.version,
            source=meta.source,
            count=meta.count,
            register_date=meta.register_date,
            loaded_at=loaded_at,
            checksum=meta.checksum,
            synthetic=meta.synthetic,
            index_bytes=index_bytes,
            journal_records=journal_records,
            history=history,
        )


@dataclass(frozen=True, slots=True)
class ReloadResult:
    info: ListDescription
    previous_version: str
    """"" when the reload created the list."""
    lines: int
    bad_lines: int
    load_seconds: float


@dataclass(frozen=True, slots=True)
class DeltaResult:
    key: ListKey
    version: str
    previous_version: str
    added: int
    """Keys that were not in the list before."""
    removed: int
    """Keys that were in the list before and are gone."""
    count: int
    invalid: int
    """Numbers (texts or packed keys) that are not valid phone numbers: counted, not applied."""
