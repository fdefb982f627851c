"""The audit log: one durable record per Admin action, in ``<data-dir>/audit.jsonl``.

Theory of operation:
- Every Admin call (Reload, Upload, ApplyDelta, Compact, DropList), allowed or refused, appends one JSON
  line: time, principal, peer, operation, list, version before and after, counts, outcome (``OK`` or the
  status code's name) and, for a refusal, the message (which never holds a full number). No number of a
  list goes into the log, only counts.
- Durable before the reply: the line is written with one ``write`` on an ``O_APPEND`` descriptor and
  fsync'd (the directory too when the file is new), so an acknowledged change always has its record.
- A crash can tear the last line. Opening the log ends a torn line with a newline first, so the next
  record starts on its own line; `read` skips lines that are not whole records and counts them.
- The log is append-only here; rotating it (``mv audit.jsonl audit-2026.jsonl``) is the operator's, and a
  new file is started on the next record.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nixlookup.server.store._journal import fsync_directory

__all__ = ["AUDIT_FILE_NAME", "AuditLog", "AuditRecord"]

AUDIT_FILE_NAME = "audit.jsonl"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One Admin action. `list_kind` is the ListKind's name ("" when the action names no list)."""

    time: datetime
    principal: str
    peer: str
    operation: str
    list_kind: str = ""
    caller: str = ""
    version_before: str = ""
    version_after: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    outcome: str = "OK"
    detail: str = ""

    def to_json(self) -> str:
        fields: dict[str, Any] = asdict(self)
        fields["time"] = self.time.isoformat()
        return json.dumps(fields, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> AuditRecord:
        fields = json.loads(line)
        fields["time"] = datetime.fromisoformat(fields["time"])
        counts = fields.get("counts", {})
        if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
            raise ValueError("counts must map names to integers")
        return cls(**fields)


class AuditLog:
    """Appends and reads ``audit.jsonl`` in one data directory; see the module doc."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / AUDIT_FILE_NAME
        self._lock = threading.Lock()
        self._end_torn_line()

    def _end_torn_line(self) -> None:
        try:
            with self.path.open("rb+") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell() == 0:
                    return
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
                    handle.flush()
                    os.fsync(handle.fileno())
        except FileNotFoundError:
            return

    def append(self, record: AuditRecord) -> None:
        """Write `record` durably (fsync'd) before returning."""
        line = (record.to_json() + "\n").encode("utf-8")
        with self._lock:
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_directory(self.path.parent)

    def read(self, *, limit: int = 0, since: datetime | None = None) -> tuple[list[AuditRecord], int]:
        """The newest `limit` records (0 = all) at or after `since`, oldest first, and how many lines
        were skipped as not whole records."""
        kept: deque[AuditRecord] = deque(maxlen=limit or None)
        skipped = 0
        try:
            with self.path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    try:
                        record = AuditRecord.from_json(line)
                    except (ValueError, TypeError, KeyError):
                        skipped += 1
                        continue
                    if since is None or record.time >= since:
                        kept.append(record)
        except FileNotFoundError:
            pass
        return list(kept), skipped
