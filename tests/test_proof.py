"""Proof records: what they count and name, and that verification catches any change to the files."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from nixlookup.client.proof import (
    PROOF_FORMAT,
    ProofCollector,
    ProofError,
    digest_file,
    proof_path_for,
    read_proof,
    verify_proof,
    write_proof,
)
from nixlookup.v1 import lookup_pb2


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _packed(mask: list[bool]) -> bytes:
    return np.packbits(np.array(mask, dtype=np.bool_), bitorder="little").tobytes()


def _batch(
    reasons: list[int],
    *,
    register_version: str = "reg-1",
    register_date: datetime = datetime(2026, 3, 10, tzinfo=UTC),
    valid_until: datetime = datetime(2026, 5, 10, tzinfo=UTC),
    opt_out_version: str | None = "acme-opt-1",
) -> lookup_pb2.CheckBatchResult:
    """A CheckBatchResult as the server sends it with want_details, for the given reasons."""
    blocked_reasons = {lookup_pb2.NIX_REGISTERED, lookup_pb2.COMPANY_OPT_OUT}
    result = lookup_pb2.CheckBatchResult(
        count=len(reasons),
        blocked=_packed([r in blocked_reasons for r in reasons]),
        invalid=_packed([r == lookup_pb2.INVALID_NUMBER for r in reasons]),
        reasons=bytes(reasons),
        register_version=register_version,
        register_date=_stamp(register_date),
        valid_until=_stamp(valid_until),
    )
    result.lists_used.add(
        list=lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_REGISTER),
        version=register_version,
        loaded_at=_stamp(datetime(2026, 3, 11, 6, 0, tzinfo=UTC)),
    )
    if opt_out_version is not None:
        result.lists_used.add(
            list=lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_OPT_OUT, caller="acme"),
            version=opt_out_version,
            loaded_at=_stamp(datetime(2026, 3, 12, 6, 0, tzinfo=UTC)),
        )
    return result


@pytest.fixture(name="washed_files")
def fixture_washed_files(tmp_path: Path) -> tuple[Path, Path]:
    """An input call list and a washed output beside it."""
    source = tmp_path / "calls.csv"
    source.write_text("number\n070-123 45 67\n08-123 456 78\nnot a number\n", encoding="utf-8")
    output = tmp_path / "calls.washed.csv"
    output.write_text("number,verdict\n...,BLOCKED\n...,ALLOWED\n...,INVALID\n", encoding="utf-8")
    return source, output


def _proof(source: Path, output: Path) -> Path:
    collector = ProofCollector(
        caller="acme",
        purpose=lookup_pb2.SALES,
        server="127.0.0.1:50051",
        started_at=datetime(2026, 3, 20, 8, 0, tzinfo=UTC),
    )
    collector.observe(
        _batch([lookup_pb2.NIX_REGISTERED, lookup_pb2.NOT_REGISTERED, lookup_pb2.INVALID_NUMBER])
    )
    record = collector.record(
        input_file=digest_file(source),
        output_file=digest_file(output),
        finished_at=datetime(2026, 3, 20, 8, 1, tzinfo=UTC),
    )
    return write_proof(record, proof_path_for(output))


def test_proof_path_sits_beside_the_output(tmp_path: Path) -> None:
    """OUT.csv gets OUT.csv.proof.json in the same directory."""
    assert proof_path_for(tmp_path / "out.csv") == tmp_path / "out.csv.proof.json"


def test_record_counts_verdicts_reasons_and_names_every_list(washed_files: tuple[Path, Path]) -> None:
    """The written record holds caller, purpose, times, counts per verdict and reason, lists and digests."""
    source, output = washed_files
    data = json.loads(_proof(source, output).read_text(encoding="utf-8"))
    assert data["format"] == PROOF_FORMAT
    assert data["caller"] == "acme"
    assert data["purpose"] == "SALES"
    assert data["started_at"] == "2026-03-20T08:00:00Z"
    assert data["finished_at"] == "2026-03-20T08:01:00Z"
    assert data["rows"] == {
        "total": 3,
        "by_verdict": {"ALLOWED": 1, "BLOCKED": 1, "INVALID": 1},
        "by_reason": {"INVALID_NUMBER": 1, "NIX_REGISTERED": 1, "NOT_REGISTERED": 1},
    }
    register = next(item for item in data["lists"] if item["kind"] == "register")
    assert register == {
        "kind": "register",
        "caller": "",
        "version": "reg-1",
        "loaded_at": "2026-03-11T06:00:00Z",
        "rows": 3,
        "register_date": "2026-03-10T00:00:00Z",
        "valid_until": "2026-05-10T00:00:00Z",
    }
    opt_out = next(item for item in data["lists"] if item["kind"] == "opt-out")
    assert (opt_out["caller"], opt_out["version"], opt_out["rows"]) == ("acme", "acme-opt-1", 3)
    assert data["files"]["input"]["sha256"] == digest_file(source).sha256
    assert data["files"]["output"]["bytes"] == output.stat().st_size
    assert data["tool"]["name"] == "nixlookup"


def test_wash_across_a_reload_names_both_register_versions(washed_files: tuple[Path, Path]) -> None:
    """Batches answered from two register versions give two register entries with their row counts."""
    source, output = washed_files
    collector = ProofCollector(caller="", purpose=lookup_pb2.MARKETING, server="x")
    collector.observe(_batch([lookup_pb2.NOT_REGISTERED] * 5, opt_out_version=None))
    collector.observe(
        _batch(
            [lookup_pb2.NIX_REGISTERED] * 2,
            register_version="reg-2",
            valid_until=datetime(2026, 5, 9, tzinfo=UTC),
            opt_out_version=None,
        )
    )
    record = collector.record(input_file=digest_file(source), output_file=digest_file(output))
    registers = {item.version: item for item in record.lists if item.kind == "register"}
    assert {version: item.rows for version, item in registers.items()} == {"reg-1": 5, "reg-2": 2}
    assert registers["reg-2"].valid_until == "2026-05-09T00:00:00Z"
    assert record.rows_by_verdict == {"ALLOWED": 5, "BLOCKED": 2}
    assert record.purpose == "MARKETING"


def test_counts_verdicts_without_reason_details(washed_files: tuple[Path, Path]) -> None:
    """Without want_details (no reasons bytes) the verdict counts still come from the bit fields."""
    source, output = washed_files
    result = _batch([lookup_pb2.NIX_REGISTERED, lookup_pb2.NOT_REGISTERED, lookup_pb2.NOT_REGISTERED])
    result.ClearField("reasons")
    collector = ProofCollector(caller="acme", purpose=lookup_pb2.SALES, server="x")
    collector.observe(result)
    record = collector.record(input_file=digest_file(source), output_file=digest_file(output))
    assert record.rows_by_verdict == {"ALLOWED": 2, "BLOCKED": 1}
    assert record.rows_by_reason == {}


def test_round_trip_through_json(washed_files: tuple[Path, Path]) -> None:
    """read_proof gives back the record write_proof wrote."""
    source, output = washed_files
    path = _proof(source, output)
    record = read_proof(path)
    assert json.loads(path.read_text(encoding="utf-8")) == record.to_json()


def test_untouched_files_verify(washed_files: tuple[Path, Path]) -> None:
    """Both digests match right after the wash."""
    source, output = washed_files
    _, checks = verify_proof(_proof(source, output))
    assert [(check.role, check.ok) for check in checks] == [("input", True), ("output", True)]


@pytest.mark.parametrize("role", ["input", "output"])
def test_tampered_file_fails_naming_it(washed_files: tuple[Path, Path], role: str) -> None:
    """Changing one byte of either file fails verification with a message naming that file."""
    source, output = washed_files
    proof = _proof(source, output)
    victim = source if role == "input" else output
    content = bytearray(victim.read_bytes())
    content[-2] ^= 0x01
    victim.write_bytes(bytes(content))
    _, checks = verify_proof(proof)
    failed = [check for check in checks if not check.ok]
    assert [check.role for check in failed] == [role]
    assert str(victim) in failed[0].message
    assert "does not match" in failed[0].message


def test_missing_file_fails(washed_files: tuple[Path, Path]) -> None:
    """A file the proof names that is gone is reported as missing."""
    source, output = washed_files
    proof = _proof(source, output)
    output.unlink()
    _, checks = verify_proof(proof)
    assert [check.ok for check in checks] == [True, False]
    assert "missing" in checks[1].message


def test_files_moved_together_with_the_proof_still_verify(
    washed_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """Archiving the proof with its files in another directory keeps it verifiable."""
    source, output = washed_files
    proof = _proof(source, output)
    archive = tmp_path / "archive"
    archive.mkdir()
    for path in (source, output, proof):
        path.rename(archive / path.name)
    _, checks = verify_proof(archive / proof.name)
    assert all(check.ok for check in checks)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        ('{"format": "other/9"}', "unknown proof format"),
        (json.dumps({"format": PROOF_FORMAT}), "missing"),
    ],
)
def test_malformed_proof_is_refused(tmp_path: Path, content: str, complaint: str) -> None:
    """A file that is not a proof record raises ProofError saying what is wrong."""
    path = tmp_path / "bad.proof.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ProofError, match=complaint):
        read_proof(path)
