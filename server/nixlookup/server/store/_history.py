"""Version history of one list: what `GetRegisterInfo` shows, kept in ``history.jsonl``.

The history is a record for people, not a source of truth: the snapshots and the journal are. So it is
appended without an fsync of its own; a crash can lose its last lines, and `merge_journal` fills in the
deltas a replay finds in the journal but the history does not know yet. A torn last line is skipped.
The file is trimmed to the newest entries when a compaction rewrites it (atomically).
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from nixlookup.server.store._datadir import write_file_atomically
from nixlookup.server.store._journal import DeltaRecord

__all__ = ["HistoryLog", "VersionEvent", "VersionRecord"]

VersionEvent = Literal["snapshot", "reload", "delta", "compact", "replay", "repair"]
"""snapshot: seeded; reload: a new file; delta: adds/removes; compact: journal folded into a snapshot;
replay: the version a (re)start restored from snapshot + journal; repair: what `nixlookup-server repair`
made the list serve after damage."""


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One event in a list's history."""

    seq: int
    version: str
    kind: VersionEvent
    source: str
    count: int
    loaded_at: datetime
    adds: int = 0
    removes: int = 0

    def to_json(self) -> str:
        fields: dict[str, Any] = asdict(self)
        fields["loaded_at"] = self.loaded_at.isoformat()
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> VersionRecord:
        fields = json.loads(line)
        fields["loaded_at"] = datetime.fromisoformat(fields["loaded_at"])
        return cls(**fields)


class HistoryLog:
    """The newest `limit` events of one list, mirrored to its history file."""

    def __init__(self, path: Path, *, limit: int) -> None:
        self.path = path
        self.limit = limit
        self._events: deque[VersionRecord] = deque(maxlen=limit)
        self.skipped_lines = 0
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                self._events.append(VersionRecord.from_json(line))
            except (ValueError, TypeError, KeyError):
                self.skipped_lines += 1

    def newest_first(self) -> list[VersionRecord]:
        return list(reversed(self._events))

    @property
    def last_seq(self) -> int:
        return self._events[-1].seq if self._events else 0

    def append(self, event: VersionRecord) -> None:
        self._events.append(event)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (event.to_json() + "\n").encode("utf-8"))
        finally:
            os.close(fd)

    def merge_journal(self, records: Iterable[DeltaRecord], counts: Iterable[int], source: str) -> int:
        """Add delta events the history lost in a crash (records newer than its last entry)."""
        added = 0
        for record, count in zip(records, counts, strict=True):
            if record.seq > self.last_seq:
                self.append(
                    VersionRecord(
                        seq=record.seq,
                        version=record.version,
                        kind="delta",
                        source=source,
                        count=count,
                        loaded_at=datetime.fromtimestamp(record.written_at, UTC),
                        adds=len(record.add),
                        removes=len(record.remove),
                    )
                )
                added += 1
        return added

    def rewrite(self) -> None:
        """Trim the file to the events held in memory (atomically)."""
        text = "".join(event.to_json() + "\n" for event in self._events)
        write_file_atomically(self.path, text.encode("utf-8"))
