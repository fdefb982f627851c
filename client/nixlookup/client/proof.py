"""Proof records: what a wash rested on, written beside its output, and the check that they still hold.

When a consumer complains to NIX-nämnden, the company must show that it checked the number, against which
register version, for which purpose, and that the call list it dialled is the one that was checked. A
proof record (``OUT.csv.proof.json``) says exactly that:

- who checked and for what: caller, purpose, the server address, the tool and its version;
- when: start and end of the wash (UTC);
- against what: every list version the server answered from (the register and the caller's opt-out,
  relationship and consent lists), with its load time, the register's date and the answers' valid_until,
  and how many rows each version answered (a wash spanning a reload names both versions);
- what came out: row counts per verdict and per reason;
- which files: SHA-256 digest, size and encoding of the input (digested *before* it was washed, so a wash
  that overwrote its input could never be proven) and of the output;
- whether the register was SYNTHETIC (made-up numbers): such a proof proves nothing about real calls,
  and `verify_proof` says so.

`ProofCollector` gathers the facts from the `CheckBatchResult` messages as a wash receives them;
`write_proof` writes the record atomically (temp file, fsync, rename); `verify_proof` recomputes the
digests and reports each file as OK or as a mismatch naming the file, and warns about a synthetic
register or an input that was standard input (nothing to re-check). Everything here is a pure function
of its inputs except the file reads and writes that are its job.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from nixlookup.client._files import STDIO
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import ListKind, Reason

__all__ = [
    "PROOF_FORMAT",
    "PROOF_SUFFIX",
    "FileCheck",
    "FileDigest",
    "ListRecord",
    "ProofCollector",
    "ProofError",
    "ProofRecord",
    "digest_file",
    "proof_path_for",
    "read_proof",
    "tool_version",
    "verify_proof",
    "write_proof",
]

PROOF_FORMAT = "nixlookup-proof/1"
PROOF_SUFFIX = ".proof.json"
_CHUNK_BYTES = 1 << 20  # 1 MiB reads: digesting a multi-GB call list needs no more memory than this


class ProofError(ValueError):
    """A proof record cannot be read: not JSON, wrong format, a field missing."""


def tool_version() -> str:
    """The installed nixlookup version ("unknown" when running from a tree that is not installed)."""
    try:
        return metadata.version("nixlookup")
    except metadata.PackageNotFoundError:
        return "unknown"


def _iso(moment: datetime) -> str:
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.isoformat().replace("+00:00", "Z")


def _timestamp_iso(stamp: Any) -> str:
    """A protobuf Timestamp as ISO-8601 UTC ("" when unset)."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return ""
    return _iso(datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, tz=UTC))


@dataclass(frozen=True, slots=True)
class FileDigest:
    """One file's identity: where it was (``-`` for standard input/output), its SHA-256, size, encoding."""

    path: str
    sha256: str
    bytes: int
    encoding: str = ""


def digest_file(path: Path) -> FileDigest:
    """SHA-256 and size of `path`, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return FileDigest(path=str(path.resolve()), sha256=digest.hexdigest(), bytes=size)


@dataclass(frozen=True, slots=True)
class ListRecord:
    """One version of one list that answered rows of the wash."""

    kind: str  # "register", "opt-out", "relationship", "consent"
    caller: str
    version: str
    loaded_at: str  # ISO-8601 UTC, "" when the server did not say
    rows: int  # rows answered while this version served
    register_date: str = ""  # the register only: the version's date
    valid_until: str = ""  # the register only: until when its NOT_REGISTERED answers hold
    synthetic: bool = False  # the register only: made-up numbers, not the NIX register


@dataclass(frozen=True, slots=True)
class ProofRecord:
    """Everything a proof record says; `to_json` / `from_json` are its file format."""

    caller: str
    purpose: str
    server: str
    started_at: str
    finished_at: str
    rows_total: int
    rows_by_verdict: Mapping[str, int]
    rows_by_reason: Mapping[str, int]
    lists: tuple[ListRecord, ...]
    input_file: FileDigest
    output_file: FileDigest
    tool_version: str = field(default_factory=tool_version)
    format: str = PROOF_FORMAT

    @property
    def synthetic_register(self) -> bool:
        """True when any register version the wash used was SYNTHETIC."""
        return any(item.synthetic for item in self.lists if item.kind == ListKind.REGISTER.slug)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "tool": {"name": "nixlookup", "version": self.tool_version},
            "caller": self.caller,
            "purpose": self.purpose,
            "server": self.server,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "synthetic_register": self.synthetic_register,
            "rows": {
                "total": self.rows_total,
                "by_verdict": dict(sorted(self.rows_by_verdict.items())),
                "by_reason": dict(sorted(self.rows_by_reason.items())),
            },
            "lists": [
                {
                    "kind": item.kind,
                    "caller": item.caller,
                    "version": item.version,
                    "loaded_at": item.loaded_at,
                    "rows": item.rows,
                    **({"register_date": item.register_date} if item.register_date else {}),
                    **({"valid_until": item.valid_until} if item.valid_until else {}),
                    **({"synthetic": True} if item.synthetic else {}),
                }
                for item in self.lists
            ],
            "files": {
                "input": _digest_json(self.input_file),
                "output": _digest_json(self.output_file),
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProofRecord:
        try:
            if data["format"] != PROOF_FORMAT:
                raise ProofError(f"unknown proof format {data['format']!r}; expected {PROOF_FORMAT!r}")
            rows = data["rows"]
            files = data["files"]
            return cls(
                caller=str(data["caller"]),
                purpose=str(data["purpose"]),
                server=str(data["server"]),
                started_at=str(data["started_at"]),
                finished_at=str(data["finished_at"]),
                rows_total=int(rows["total"]),
                rows_by_verdict={str(k): int(v) for k, v in rows["by_verdict"].items()},
                rows_by_reason={str(k): int(v) for k, v in rows["by_reason"].items()},
                lists=tuple(
                    ListRecord(
                        kind=str(item["kind"]),
                        caller=str(item["caller"]),
                        version=str(item["version"]),
                        loaded_at=str(item["loaded_at"]),
                        rows=int(item["rows"]),
                        register_date=str(item.get("register_date", "")),
                        valid_until=str(item.get("valid_until", "")),
                        synthetic=bool(item.get("synthetic", False)),
                    )
                    for item in data["lists"]
                ),
                input_file=_digest_from_json(files["input"]),
                output_file=_digest_from_json(files["output"]),
                tool_version=str(data["tool"]["version"]),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ProofError(f"proof record is missing or mistypes a field: {error}") from error


def _digest_json(digest: FileDigest) -> dict[str, Any]:
    encoding = {"encoding": digest.encoding} if digest.encoding else {}
    return {"path": digest.path, "sha256": digest.sha256, "bytes": digest.bytes, **encoding}


def _digest_from_json(data: Mapping[str, Any]) -> FileDigest:
    return FileDigest(
        path=str(data["path"]),
        sha256=str(data["sha256"]),
        bytes=int(data["bytes"]),
        encoding=str(data.get("encoding", "")),
    )


def _kind_slug(kind: int) -> str:
    try:
        return ListKind(kind).slug
    except ValueError:
        return str(kind)


def _popcount(packed: bytes, count: int) -> int:
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=count, bitorder="little")
    return int(np.count_nonzero(bits))


class ProofCollector:
    """Accumulates the proof facts from each `CheckBatchResult` of a wash, in any order."""

    def __init__(self, *, caller: str, purpose: int, server: str, started_at: datetime | None = None) -> None:
        self.caller = caller
        self.purpose = lookup_pb2.Purpose.Name(lookup_pb2.Purpose.ValueType(purpose))
        self.server = server
        self.started_at = started_at or datetime.now(UTC)
        self.rows_total = 0
        self._verdicts: Counter[str] = Counter()
        self._reasons: Counter[str] = Counter()
        self._lists: dict[tuple[str, str, str], dict[str, Any]] = {}

    def observe(self, result: lookup_pb2.CheckBatchResult) -> None:
        """Count one batch's answers and the list versions they came from."""
        count = int(result.count)
        if count == 0:
            return
        self.rows_total += count
        invalid = _popcount(result.invalid, count)
        blocked = _popcount(result.blocked, count)
        self._verdicts.update({"INVALID": invalid, "BLOCKED": blocked, "ALLOWED": count - invalid - blocked})
        if result.reasons:
            values, counts = np.unique(np.frombuffer(result.reasons, dtype=np.uint8), return_counts=True)
            for value, times in zip(values.tolist(), counts.tolist(), strict=True):
                self._reasons[_reason_name(value)] += times
        register = self._list_entry("register", "", result.register_version, "")
        register["rows"] += count
        register["register_date"] = _timestamp_iso(result.register_date)
        until = _timestamp_iso(result.valid_until)
        if until and (not register["valid_until"] or until < register["valid_until"]):
            register["valid_until"] = until
        for used in result.lists_used:
            kind = _kind_slug(used.list.kind)
            loaded_at = _timestamp_iso(used.loaded_at)
            if kind == "register":
                register["loaded_at"] = register["loaded_at"] or loaded_at
                continue
            self._list_entry(kind, used.list.caller, used.version, loaded_at)["rows"] += count

    def _list_entry(self, kind: str, caller: str, version: str, loaded_at: str) -> dict[str, Any]:
        key = (kind, caller, version)
        if key not in self._lists:
            self._lists[key] = {
                "loaded_at": loaded_at,
                "rows": 0,
                "register_date": "",
                "valid_until": "",
            }
        return self._lists[key]

    def record(
        self,
        *,
        input_file: FileDigest,
        output_file: FileDigest,
        synthetic_versions: Collection[str] = (),
        finished_at: datetime | None = None,
    ) -> ProofRecord:
        """The proof record of the finished wash. `input_file` is the input's digest taken before it was
        washed, `output_file` the digest of the bytes written; `synthetic_versions` the register versions
        the server said were SYNTHETIC."""
        return ProofRecord(
            caller=self.caller,
            purpose=self.purpose,
            server=self.server,
            started_at=_iso(self.started_at),
            finished_at=_iso(finished_at or datetime.now(UTC)),
            rows_total=self.rows_total,
            rows_by_verdict={k: v for k, v in self._verdicts.items() if v},
            rows_by_reason=dict(self._reasons),
            lists=tuple(
                ListRecord(
                    kind=kind,
                    caller=caller,
                    version=version,
                    synthetic=kind == ListKind.REGISTER.slug and version in synthetic_versions,
                    **entry,
                )
                for (kind, caller, version), entry in sorted(self._lists.items())
            ),
            input_file=input_file,
            output_file=output_file,
        )


def _reason_name(value: int) -> str:
    try:
        return Reason(value).name
    except ValueError:  # a reason newer than this client
        return f"REASON_{value}"


def proof_path_for(output_path: Path) -> Path:
    """Where the proof of a wash writing `output_path` goes: ``OUT.csv`` -> ``OUT.csv.proof.json``."""
    return output_path.with_name(output_path.name + PROOF_SUFFIX)


def write_proof(record: ProofRecord, path: Path) -> Path:
    """Write `record` as JSON to `path` atomically (temp file in the same directory, fsync, rename)."""
    text = json.dumps(record.to_json(), indent=2, ensure_ascii=False) + "\n"
    handle, temp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(temp_name).replace(path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def read_proof(path: Path) -> ProofRecord:
    """Read a proof record; `ProofError` names what is wrong with a file that is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ProofError(f"{path} is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise ProofError(f"{path} does not hold a JSON object")
    return ProofRecord.from_json(data)


@dataclass(frozen=True, slots=True)
class FileCheck:
    """The verdict on one file named by a proof record."""

    role: str  # "input" or "output"
    path: str  # the file actually checked
    ok: bool
    message: str
    warning: bool = False  # ok, but not proven: nothing could be re-checked


def _locate(recorded: str, proof_path: Path) -> Path:
    """The recorded path, or the same file name beside the proof when the pair was moved together."""
    original = Path(recorded)
    if original.exists():
        return original
    return proof_path.parent / original.name


def verify_proof(proof_path: Path) -> tuple[ProofRecord, list[FileCheck]]:
    """Recompute the digests of the files a proof names; one `FileCheck` per file."""
    record = read_proof(proof_path)
    checks: list[FileCheck] = []
    for role, expected in (("input", record.input_file), ("output", record.output_file)):
        if expected.path == STDIO:
            what = "standard input" if role == "input" else "standard output"
            checks.append(
                FileCheck(role, STDIO, True, f"{role} was {what}: nothing to re-check", warning=True)
            )
            continue
        located = _locate(expected.path, proof_path)
        if not located.is_file():
            checks.append(FileCheck(role, str(located), False, f"{role} file {located} is missing"))
            continue
        actual = digest_file(located)
        if actual.sha256 != expected.sha256 or actual.bytes != expected.bytes:
            checks.append(
                FileCheck(
                    role,
                    str(located),
                    False,
                    f"{role} file {located} does not match the proof: SHA-256 {actual.sha256} "
                    f"({actual.bytes} bytes), proof says {expected.sha256} ({expected.bytes} bytes)",
                )
            )
            continue
        checks.append(FileCheck(role, str(located), True, f"{role} file {located}: SHA-256 matches"))
    return record, checks
