"""`wash`: CSV call lists through a real server, via the library function and the `nixlookup wash` command."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RegisterFile, ServerFactory, national

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.client import Client
from nixlookup.client.wash import OUTPUT_COLUMNS, WashError, wash
from nixlookup.v1.vocabulary import Purpose


@pytest.fixture(name="server", scope="module")
def fixture_server(module_server_factory: ServerFactory, small_register: RegisterFile) -> ServerProcess:
    """One server for the module, serving the small register."""
    return module_server_factory(["--register", str(small_register.path)])


@pytest.fixture(name="client", scope="module")
def fixture_client(server: ServerProcess) -> Iterator[Client]:
    """A client with small batches, so a few hundred rows span several batches."""
    with Client(server.target, batch_size=64, max_in_flight=2) as client:
        yield client


def _read(path: Path, delimiter: str = ",", encoding: str = "utf-8-sig") -> list[list[str]]:
    with path.open(encoding=encoding, newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def test_wash_round_trips_quotes_empty_cells_and_a_bom(
    client: Client, small_register: RegisterFile, tmp_path: Path
) -> None:
    """Quoted fields (with the delimiter and a newline inside), an empty phone cell, a BOM and ';' survive."""
    member, other = int(small_register.keys[0]), 46_709_999_999
    assert other not in small_register.key_set
    source = tmp_path / "calls.csv"
    source.write_bytes(
        "\ufeffname;phone;note\n"
        f'"Svensson; Anna";{national(member)};"rings ""after\n5"""\n'
        "Bo;;no number\n"
        f'Cecilia;"+{other}";\n'
        "Dag;not a number;x\n".encode()
    )
    output = tmp_path / "washed.csv"
    summary = wash(client, source, output, column="phone")
    assert output.read_bytes().startswith(b"\xef\xbb\xbfname;"), "the BOM is kept, so Excel reads UTF-8"
    rows = _read(output, ";")
    assert rows[0] == ["name", "phone", "note", *OUTPUT_COLUMNS]
    assert rows[1][:3] == ["Svensson; Anna", national(member), 'rings "after\n5"']
    assert rows[1][3:6] == [f"+{member}", "BLOCKED", "NIX_REGISTERED"]
    assert rows[1][6] == "", "a valid number has no problem"
    assert rows[2][:7] == ["Bo", "", "no number", "", "INVALID", "INVALID_NUMBER", "EMPTY"]
    assert rows[2][7] == "", "an invalid number has no line type (not a bare 0)"
    assert rows[2][10] == "", "an invalid number is neither flagged nor unflagged"
    assert rows[3][3:8] == [f"+{other}", "ALLOWED", "NOT_REGISTERED", "", "MOBILE"]
    assert rows[3][9]  # valid_until date
    assert rows[3][10] == "yes", "a mobile with no relationship carries the Swedma/Kontakta flag"
    assert rows[4][4:7] == ["INVALID", "INVALID_NUMBER", "BAD_CHARACTER"], "the problem says why"
    assert (summary.rows, summary.blocked, summary.invalid, summary.allowed) == (4, 1, 2, 1)
    assert summary.by_reason == {"NIX_REGISTERED": 1, "INVALID_NUMBER": 2, "NOT_REGISTERED": 1}
    assert not output.with_name("washed.csv.partial").exists()


def test_a_large_list_streams_in_order_and_agrees_with_a_set(
    client: Client, small_register: RegisterFile, tmp_path: Path
) -> None:
    """Thousands of rows over many batches come out in input order with the set's verdicts."""
    keys = [int(k) + (i % 2) for i, k in enumerate(small_register.keys[:3000])]
    source = tmp_path / "big.csv"
    with source.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "Phone"])
        writer.writerows([position, f"+{key}"] for position, key in enumerate(keys))
    output = tmp_path / "big.washed.csv"
    summary = wash(client, source, output, column="phone", batch_size=250)
    rows = _read(output)[1:]
    assert [int(row[0]) for row in rows] == list(range(len(keys)))
    verdicts = [row[3] for row in rows]
    assert verdicts == ["BLOCKED" if k in small_register.key_set else "ALLOWED" for k in keys]
    assert summary.batches == 12
    assert summary.register_versions == (client.register_info().register.version,)


def test_rewashing_a_washed_list_replaces_the_answer_columns(client: Client, tmp_path: Path) -> None:
    """A file that already has the answer columns gets them overwritten, not duplicated."""
    source = tmp_path / "old.csv"
    source.write_text("phone,verdict,e164\n070-123 45 67,BLOCKED,stale\n", encoding="utf-8")
    output = tmp_path / "new.csv"
    wash(client, source, output, column="phone")
    header, row = _read(output)
    assert header == [
        "phone", "verdict", "e164", "reason", "problem", "line_type", "register_version", "valid_until",
        "mobile_flag",
    ]  # fmt: skip
    assert row[:4] == ["070-123 45 67", "ALLOWED", "+46701234567", "NOT_REGISTERED"]


def test_the_mobile_flag_column_follows_the_ethics_rule(client: Client, tmp_path: Path) -> None:
    """`mobile_flag` is yes for a mobile number (no relationship: this server has no caller lists), no for
    a fixed line, empty for an invalid number, and no for everything when the purpose is exempt."""
    source = tmp_path / "mixed.csv"
    source.write_text("phone\n070-123 45 67\n08-123 456 78\n070-12\n", encoding="utf-8")
    flags = {}
    flagged = {}
    for purpose in (Purpose.SALES, Purpose.MARKET_RESEARCH):
        output = tmp_path / f"mixed-{purpose.name}.csv"
        flagged[purpose] = wash(client, source, output, column="phone", purpose=purpose).mobile_flagged
        header, *rows = _read(output)
        flags[purpose] = [row[header.index("mobile_flag")] for row in rows]
    assert flags[Purpose.SALES] == ["yes", "no", ""]
    assert flags[Purpose.MARKET_RESEARCH] == ["no", "no", ""]
    assert flagged == {Purpose.SALES: 1, Purpose.MARKET_RESEARCH: 0}


def test_a_missing_column_is_a_clear_error(client: Client, tmp_path: Path) -> None:
    """Washing by a column the file lacks names the file's columns and leaves no output."""
    source = tmp_path / "calls.csv"
    source.write_text("name,tel\nAnna,070-123 45 67\n", encoding="utf-8")
    output = tmp_path / "out.csv"
    with pytest.raises(WashError, match=r"no column 'phone'.*'tel'"):
        wash(client, source, output, column="phone")
    assert not output.exists()


def test_the_wash_command_writes_output_summary_and_proof(server: ServerProcess, tmp_path: Path) -> None:
    """`nixlookup wash` prints the summary line and writes the output and a verifiable proof record."""
    source = tmp_path / "calls.csv"
    source.write_text("phone\n070-123 45 67\n\nbad\n", encoding="utf-8")
    output = tmp_path / "calls.washed.csv"
    command = [sys.executable, "-m", "nixlookup.client.cli", "wash", str(source), "--output", str(output)]
    result = subprocess.run(
        [*command, "--target", server.target, "--purpose", "marketing", "--caller", "acme"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "washed 2 rows" in result.stdout
    assert "1 invalid" in result.stdout
    proof = json.loads(output.with_name("calls.washed.csv.proof.json").read_text(encoding="utf-8"))
    assert proof["caller"] == "acme"
    assert proof["purpose"] == "MARKETING"
    verify = subprocess.run(
        [sys.executable, "-m", "nixlookup.client.cli", "verify-proof", f"{output}.proof.json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
