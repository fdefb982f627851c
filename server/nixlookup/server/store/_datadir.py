"""The data directory's layout on disk: where each list's files live and how they are replaced safely.

Theory of operation:
- Layout (see docs/data-dir.md)::

      <data-dir>/FORMAT                        "nixlookup-data-dir 1": refuse directories of another format
      <data-dir>/LOCK                          flock'd by the one writing process (holds its pid)
      <data-dir>/register/                     the NIX register
      <data-dir>/<kind>/<caller-dir>/          a caller's opt-out / relationship / consent list
          LIST                                 {"kind": ..., "caller": ...}: the real caller id
          CURRENT                              {"seq": N, "previous_seq": P}: the commit point
          <N>.snap  <N>.journal                current snapshot and the deltas since it
          <P>.snap  <P>.journal                previous snapshot, kept whole for a fallback
          history.jsonl                        one JSON line per version event (reload, delta, compact ...)
          quarantine/                          refused snapshots and cut-off journal tails, kept for people

- Every file that is replaced is replaced whole: written to a temporary name in the same directory,
  fsync'd, renamed over the old name, and the directory fsync'd (`write_file_atomically`). A reader sees
  the old file or the new one, never a mixture, also after a crash.
- CURRENT is the commit point of a reload or compaction: snapshot and journal files are made durable first,
  CURRENT is switched last. Files with a sequence above CURRENT's are leftovers of an operation that never
  committed (and was never acknowledged); `ListPaths.orphans` finds them.
- Caller ids are arbitrary strings; directory names are a safe, lower-case slug plus a hash of the real
  id whenever the slug is not the id itself (`caller_dir_name`), so no id can escape the directory, and
  ``Acme`` and ``acme`` never share files. The LIST file keeps the real id.
- A list directory that holds snapshots or journals but no readable CURRENT is damage, never a new list:
  `discover_lists` refuses it (`DataDirDamagedError`, naming the files and `repair_hint`) instead of letting
  the store seed over acknowledged state.
- `DataDirLock` takes an exclusive ``flock`` on LOCK: one writer per directory. The kernel drops the lock
  when the process dies (kill -9 included), so a restart never has to clean up after a crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixlookup.server.errors import DataDirDamagedError, StoreError
from nixlookup.server.lists import LIST_SPECS, spec_of
from nixlookup.server.store._journal import fsync_directory
from nixlookup.server.store._state import ListKey, ListKind

__all__ = [
    "DATA_DIR_FORMAT",
    "REPAIR_COMMAND",
    "CurrentPointer",
    "DataDirLock",
    "ListPaths",
    "caller_dir_name",
    "candidate_list_dirs",
    "discover_lists",
    "ensure_data_dir",
    "list_paths",
    "repair_hint",
    "write_file_atomically",
]

DATA_DIR_FORMAT = "nixlookup-data-dir 1"
REPAIR_COMMAND = "nixlookup-server repair"
"""The command that repairs a damaged data directory (`app` wires it; errors name it)."""
_SNAPSHOT_SUFFIX = ".snap"
_JOURNAL_SUFFIX = ".journal"
_SEQ_DIGITS = 8
_PLAIN_CALLER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_UNSAFE_RUN = re.compile(r"[^a-z0-9_.-]+")


def write_file_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old content or the new, never a mixture."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(path.parent)


def caller_dir_name(caller: str) -> str:
    """A file-system-safe directory name for a caller id, distinct for distinct ids."""
    if _PLAIN_CALLER.fullmatch(caller) and caller not in {".", ".."}:
        return caller
    slug = _UNSAFE_RUN.sub("_", caller.lower()).strip("._-")[:40] or "caller"
    digest = hashlib.sha256(caller.encode("utf-8")).hexdigest()[:12]
    return f"{slug}-{digest}"


@dataclass(frozen=True, slots=True)
class CurrentPointer:
    """What CURRENT says: the snapshot serving now and the one kept for a fallback (None on a new list)."""

    seq: int
    previous_seq: int | None

    def encode(self) -> bytes:
        return (json.dumps({"seq": self.seq, "previous_seq": self.previous_seq}) + "\n").encode("ascii")

    @classmethod
    def decode(cls, raw: bytes, path: Path) -> CurrentPointer:
        try:
            fields = json.loads(raw)
            seq = int(fields["seq"])
            previous = fields.get("previous_seq")
            return cls(seq=seq, previous_seq=None if previous is None else int(previous))
        except (ValueError, KeyError, TypeError) as error:
            raise DataDirDamagedError(
                f"{path} is unreadable ({error}), so which snapshot was committed is unknown",
                repair_hint(_data_dir_of(path.parent)),
            ) from error


@dataclass(frozen=True, slots=True)
class ListPaths:
    """The files of one list."""

    key: ListKey
    directory: Path

    @property
    def list_file(self) -> Path:
        return self.directory / "LIST"

    @property
    def current_file(self) -> Path:
        return self.directory / "CURRENT"

    @property
    def history_file(self) -> Path:
        return self.directory / "history.jsonl"

    @property
    def quarantine(self) -> Path:
        return self.directory / "quarantine"

    @property
    def data_dir(self) -> Path:
        """The data directory this list lives in."""
        return _data_dir_of(self.directory)

    def snapshot(self, seq: int) -> Path:
        return self.directory / f"{seq:0{_SEQ_DIGITS}d}{_SNAPSHOT_SUFFIX}"

    def journal(self, seq: int) -> Path:
        return self.directory / f"{seq:0{_SEQ_DIGITS}d}{_JOURNAL_SUFFIX}"

    def exists(self) -> bool:
        return self.current_file.exists()

    def create(self) -> None:
        """Make the directory and its LIST file (idempotent; refuses a directory owned by another caller)."""
        kind, caller = self.key
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.list_file.exists():
            owner = read_list_file(self.list_file)
            if owner != self.key:
                raise StoreError(f"{self.directory} belongs to {owner}, not {self.key}")
            return
        payload = json.dumps({"kind": kind.slug, "caller": caller}) + "\n"
        write_file_atomically(self.list_file, payload.encode("utf-8"))
        fsync_directory(self.directory.parent)

    def read_current(self) -> CurrentPointer | None:
        try:
            raw = self.current_file.read_bytes()
        except FileNotFoundError:
            return None
        return CurrentPointer.decode(raw, self.current_file)

    def write_current(self, pointer: CurrentPointer) -> None:
        write_file_atomically(self.current_file, pointer.encode())

    def sequences(self) -> list[int]:
        """Sequence numbers of every snapshot or journal file present, ascending."""
        found: set[int] = set()
        for entry in self.directory.iterdir():
            stem, suffix = entry.stem, entry.suffix
            if suffix in {_SNAPSHOT_SUFFIX, _JOURNAL_SUFFIX} and stem.isdigit():
                found.add(int(stem))
        return sorted(found)

    def data_files(self) -> list[Path]:
        """Every snapshot and journal file present (sorted by name, so by sequence)."""
        return sorted(
            entry
            for entry in self.directory.iterdir()
            if entry.suffix in {_SNAPSHOT_SUFFIX, _JOURNAL_SUFFIX} and entry.stem.isdigit()
        )

    def files_of(self, seq: int) -> Iterator[Path]:
        for path in (self.snapshot(seq), self.journal(seq)):
            if path.exists():
                yield path

    def quarantine_file(self, path: Path, label: str) -> Path:
        """Move `path` into quarantine/ (kept for people to inspect, never read again)."""
        self.quarantine.mkdir(exist_ok=True)
        target = self.quarantine / f"{path.name}.{label}"
        counter = 1
        while target.exists():
            counter += 1
            target = self.quarantine / f"{path.name}.{label}.{counter}"
        os.replace(path, target)
        fsync_directory(self.directory)
        return target

    def remove_files(self, seqs: list[int]) -> None:
        """Delete old or uncommitted files. Not fsync'd: a file that reappears after a crash is outside
        CURRENT's range and is removed again on the next start."""
        for seq in seqs:
            for path in self.files_of(seq):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def list_paths(root: Path, key: ListKey) -> ListPaths:
    """Where the list `key` lives under the data directory `root`."""
    kind, caller = key
    if not spec_of(kind).per_caller:
        return ListPaths(key, root / kind.slug)
    return ListPaths(key, root / kind.slug / caller_dir_name(caller))


def read_list_file(path: Path) -> ListKey:
    try:
        fields: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        kinds = {kind.slug: kind for kind in ListKind}
        return (kinds[str(fields["kind"])], str(fields["caller"]))
    except (OSError, ValueError, KeyError) as error:
        raise DataDirDamagedError(
            f"{path} is unreadable ({error}), so whose list this is is unknown",
            repair_hint(_data_dir_of(path.parent)),
        ) from error


def repair_hint(root: Path) -> str:
    """What an operator should run when a data directory is damaged (ends every such error)."""
    return (
        f"the server will not guess: run `{REPAIR_COMMAND} {root}` to see what a repair keeps and what it "
        f"would lose, then `{REPAIR_COMMAND} {root} --yes` to do it (every file it removes is moved into "
        "the list's quarantine/ folder), or restore the directory from a backup"
    )


def _data_dir_of(list_directory: Path) -> Path:
    parent = list_directory.parent
    registers = {spec.slug for spec in LIST_SPECS if not spec.per_caller}
    return parent if list_directory.name in registers else parent.parent


def candidate_list_dirs(root: Path) -> list[tuple[ListKind, Path]]:
    """Every directory under `root` where a list may live (existing ones only), the register first."""
    found: list[tuple[ListKind, Path]] = []
    for kind in sorted(ListKind, key=lambda kind: (spec_of(kind).per_caller, kind)):
        if not spec_of(kind).per_caller:
            if (root / kind.slug).is_dir():
                found.append((kind, root / kind.slug))
            continue
        parent = root / kind.slug
        if parent.is_dir():
            found.extend((kind, child) for child in sorted(parent.iterdir()) if child.is_dir())
    return found


def discover_lists(root: Path) -> list[ListKey]:
    """Every list with a committed CURRENT pointer under `root`, the register first.

    A list directory with snapshot or journal files but no CURRENT is refused (`DataDirDamagedError`):
    seeding or skipping it would drop whatever was acknowledged in those files.
    """
    found: list[ListKey] = []
    for _kind, directory in candidate_list_dirs(root):
        if not (directory / "CURRENT").exists():
            paths = ListPaths((ListKind.REGISTER, ""), directory)  # only to list its files
            files = [path.name for path in paths.data_files()]
            if files:
                raise DataDirDamagedError(
                    f"{directory} has no CURRENT pointer but holds {', '.join(files)}: acknowledged state "
                    "may be in them, so the list is neither re-seeded nor skipped",
                    repair_hint(root),
                )
            continue
        key = read_list_file(directory / "LIST")
        if list_paths(root, key).directory != directory:
            raise StoreError(f"{directory} holds {key}, which belongs elsewhere")
        found.append(key)
    return found


def ensure_data_dir(root: Path) -> None:
    """Create `root` with its FORMAT file, or check that an existing one is ours."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "FORMAT"
    try:
        text = marker.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        entries = [entry.name for entry in root.iterdir() if entry.name != "LOCK"]
        if entries:
            raise StoreError(
                f"{root} is not empty and is not a nixlookup data directory (no FORMAT file)"
            ) from None
        write_file_atomically(marker, (DATA_DIR_FORMAT + "\n").encode("ascii"))
        return
    if text != DATA_DIR_FORMAT:
        raise StoreError(f"{root} has format {text!r}; this server reads {DATA_DIR_FORMAT!r}")


class DataDirLock:
    """An exclusive flock on ``<data-dir>/LOCK``: one writing process per data directory."""

    def __init__(self, root: Path) -> None:
        self.path = root / "LOCK"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            os.close(self._fd)
            if error.errno in {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}:
                raise StoreError(f"data directory {root} is in use by pid {holder}") from error
            raise
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode("ascii"), 0)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1
