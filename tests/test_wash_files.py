"""`nixlookup wash` and `check` on the files and pipes users have, through a real server (issue 13).

Encodings (cp1252 from Excel, a bad byte named by its line), a wash onto its own input, proofs that name the
input as it was, synthetic registers marked everywhere, the mobile count, stdin/stdout, JSON lines,
--fail-on-blocked, aligned columns on a terminal, which caller lists answered, and the progress bar.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from conftest import RegisterFile, ServerFactory, data_dir_server, national

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.client import AdminClient
from nixlookup.client.cli import main

_FREE_MOBILE = "070-999 99 98"  # checked below not to be in the small register


@pytest.fixture(name="server", scope="module")
def fixture_server(
    module_server_factory: ServerFactory,
    small_register: RegisterFile,
    tmp_path_factory: pytest.TempPathFactory,
) -> ServerProcess:
    """The small register in a data directory (so a caller can get lists)."""
    assert 46_709_999_998 not in small_register.key_set
    return data_dir_server(module_server_factory, small_register, tmp_path_factory)


@pytest.fixture(name="synthetic_server", scope="module")
def fixture_synthetic_server(module_server_factory: ServerFactory) -> ServerProcess:
    """A server on a small synthetic register (what `make serve` starts without a register)."""
    return module_server_factory(["--synthetic-size", "20000"])


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _subprocess(
    *argv: str, stdin: bytes = b"", env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NIXLOOKUP_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "nixlookup.client.cli", *argv],
        input=stdin, capture_output=True, timeout=60, env=environment, check=False,
    )  # fmt: skip


def test_a_cp1252_list_is_read_and_written_back_in_cp1252(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Excel's Swedish export (cp1252, no BOM) is washed with a notice, and åäö come back as cp1252 bytes."""
    source = tmp_path / "excel.csv"
    source.write_bytes("namn;phone\nÅsa Öberg;070-123 45 67\nPär Näslund;08-123 456 78\n".encode("cp1252"))
    output = tmp_path / "washed.csv"
    code, out, err = _run(capsys, "--target", server.target, "wash", str(source), "-o", str(output))
    assert code == 0, err
    assert "read as cp1252" in err
    data = output.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    lines = data.decode("cp1252").splitlines()
    assert lines[0].startswith("namn;phone;e164;verdict")
    assert lines[1].startswith("Åsa Öberg;070-123 45 67;+46701234567;ALLOWED")
    assert "cp1252 csv" in out


def test_a_byte_no_encoding_has_is_named_by_its_line_and_exits_2(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """0x81 is valid in neither UTF-8 nor cp1252: exit 2 naming line 3, no traceback, no output."""
    source = tmp_path / "broken.csv"
    source.write_bytes(b"phone\n0701234567\n07012\x81 3456\n")
    output = tmp_path / "washed.csv"
    for extra in ((), ("--encoding", "utf-8")):
        code, _, err = _run(capsys, "--target", server.target, "wash", str(source), "-o", str(output), *extra)
        assert code == 2
        assert "line 3" in err
        assert "--encoding" in err
        assert "Traceback" not in err
        assert not output.exists()


def test_washing_a_list_onto_itself_is_refused(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wash a.csv -o a.csv` exits 2 and leaves the list and its absence of a proof as they were."""
    source = tmp_path / "a.csv"
    source.write_text("phone\n070-123 45 67\n", encoding="utf-8")
    before = source.read_bytes()
    code, _, err = _run(
        capsys, "--target", server.target, "wash", str(source), "-o", str(tmp_path / "." / "a.csv")
    )
    assert code == 2
    assert "is the input file" in err
    assert source.read_bytes() == before
    assert not (tmp_path / "a.csv.proof.json").exists()


def test_the_proof_names_the_input_as_it_was_and_fails_once_it_changes(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The proof's input digest is the unwashed file's; verify-proof holds, then fails once it is edited."""
    source = tmp_path / "calls.csv"
    source.write_text("phone\n070-123 45 67\n08-123 456 78\n", encoding="utf-8")
    original = hashlib.sha256(source.read_bytes()).hexdigest()
    output = tmp_path / "calls.washed.csv"
    assert _run(capsys, "--target", server.target, "wash", str(source), "-o", str(output))[0] == 0
    proof = tmp_path / "calls.washed.csv.proof.json"
    record = json.loads(proof.read_text(encoding="utf-8"))
    assert record["files"]["input"]["sha256"] == original
    assert record["files"]["output"]["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert record["synthetic_register"] is False
    assert _run(capsys, "verify-proof", str(proof))[0] == 0
    source.write_text("phone\n070-123 45 67\n08-123 456 78\n0701111111\n", encoding="utf-8")
    code, out, _ = _run(capsys, "verify-proof", str(proof))
    assert code == 1
    assert f"MISMATCH input file {source}" in out


def test_answers_from_a_synthetic_register_are_marked_everywhere(
    synthetic_server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check (plain and JSON), the wash summary and the proof say SYNTHETIC; verify-proof warns."""
    target = ["--target", synthetic_server.target]
    code, out, err = _run(capsys, *target, "check", "070-123 45 67", "08-123 456 78")
    assert code == 0
    assert all(line.endswith("SYNTHETIC register") for line in out.splitlines())
    assert "SYNTHETIC register (made-up numbers" in err
    code, out, _ = _run(capsys, *target, "check", "--json", "070-123 45 67")
    assert json.loads(out)["synthetic_register"] is True
    source = tmp_path / "calls.csv"
    source.write_text("phone\n070-123 45 67\n", encoding="utf-8")
    output = tmp_path / "out.csv"
    code, out, err = _run(capsys, *target, "wash", str(source), "-o", str(output))
    assert code == 0
    assert "(SYNTHETIC: made-up numbers" in out.splitlines()[0]
    proof = json.loads((tmp_path / "out.csv.proof.json").read_text(encoding="utf-8"))
    assert proof["synthetic_register"] is True
    code, out, _ = _run(capsys, "verify-proof", str(tmp_path / "out.csv.proof.json"))
    assert code == 0
    assert "WARNING  the register it was washed against was SYNTHETIC" in out


def test_the_mobile_count_counts_allowed_rows_and_jsonl_carries_every_answer(
    server: ServerProcess, small_register: RegisterFile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A blocked mobile, an allowed mobile and a fixed line: 1 counted; --format jsonl has typed answers."""
    blocked = national(int(small_register.keys[0]))
    source = tmp_path / "calls.csv"
    source.write_text(f"id,phone\n1,{blocked}\n2,{_FREE_MOBILE}\n3,08-123 456 78\n4,x\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    code, out, _ = _run(
        capsys, "--target", server.target, "wash", str(source), "-o", str(output), "--format", "jsonl"
    )
    assert code == 0
    assert "2 allowed, 1 of them mobile without relationship" in out
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["verdict"], r["mobile_flag"]) for r in records] == [
        ("1", "BLOCKED", records[0]["mobile_flag"]), ("2", "ALLOWED", True), ("3", "ALLOWED", False),
        ("4", "INVALID", None),
    ]  # fmt: skip
    assert records[0]["e164"] == "+" + str(int(small_register.keys[0]))
    assert records[3]["e164"] is None


def test_standard_input_and_output_and_fail_on_blocked(
    server: ServerProcess, small_register: RegisterFile
) -> None:
    """`wash - -o -` pipes a list through (summary on stderr); `check -` reads numbers; exit 3 on a block."""
    blocked = national(int(small_register.keys[1]))
    washed = _subprocess(
        "--target", server.target, "wash", "-", "-o", "-", "--fail-on-blocked",
        stdin=f"phone\n{blocked}\n{_FREE_MOBILE}\n".encode(),
    )  # fmt: skip
    assert washed.returncode == 3, washed.stderr
    lines = washed.stdout.decode().splitlines()
    assert lines[0].startswith("phone,e164,verdict")
    assert [line.split(",")[2] for line in lines[1:]] == ["BLOCKED", "ALLOWED"]
    assert b"washed 2 rows" in washed.stderr
    assert b"no proof record for standard output" in washed.stderr
    checked = _subprocess(
        "--target", server.target, "check", "-", stdin=f"{blocked}\n\n{_FREE_MOBILE}\n".encode()
    )
    assert checked.returncode == 0, checked.stderr
    assert [line.split("\t")[1] for line in checked.stdout.decode().splitlines()] == ["BLOCKED", "ALLOWED"]
    failing = _subprocess("--target", server.target, "check", "--fail-on-blocked", blocked)
    assert failing.returncode == 3


def test_check_aligns_its_columns_on_a_terminal(server: ServerProcess) -> None:
    """On a terminal the verdict column starts at the same place on every line (tabs elsewhere)."""
    main_fd, child_fd = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NIXLOOKUP_")}
    with subprocess.Popen(
        [sys.executable, "-m", "nixlookup.client.cli", "--target", server.target, "check", "070-12",
         "+46 70 123 45 67", "08-123 456 78"],
        stdout=child_fd, stderr=subprocess.DEVNULL, env=environment,
    ) as process:  # fmt: skip
        os.close(child_fd)
        chunks = []
        while True:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0
    os.close(main_fd)
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == 3
    assert "\t" not in "".join(lines)
    starts = {
        line.index(verdict) for line, verdict in zip(lines, ("INVALID", "ALLOWED", "ALLOWED"), strict=True)
    }
    assert starts == {len("+46 70 123 45 67") + 2}


def test_check_and_wash_say_which_caller_lists_answered(
    server: ServerProcess, small_register: RegisterFile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """acme's opt-out list is named by check --json and the wash summary; a mistyped caller is told."""
    with AdminClient(server.target) as admin:
        (delta,) = admin.apply_delta(kind="opt-out", caller="acme", add_texts=[_FREE_MOBILE])
    target = ["--target", server.target]
    code, out, _ = _run(capsys, *target, "check", "--json", "--caller", "acme", _FREE_MOBILE)
    answer = json.loads(out)
    assert (code, answer["reason"]) == (0, "COMPANY_OPT_OUT")
    assert {"kind": "opt-out", "caller": "acme", "version": delta.version} in answer["lists_used"]
    code, _, err = _run(capsys, *target, "check", "--caller", "acmee", _FREE_MOBILE)
    assert "caller 'acmee' has no lists on this server" in err
    source = tmp_path / "calls.csv"
    source.write_text(f"phone\n{_FREE_MOBILE}\n", encoding="utf-8")
    code, out, _ = _run(
        capsys, *target, "wash", str(source), "-o", str(tmp_path / "o.csv"), "--caller", "acme"
    )
    assert code == 0
    assert f"lists: opt-out/acme {delta.version}" in out


def test_the_progress_bar_shows_rows_rate_and_eta(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal the wash shows a tqdm bar over the file's bytes with the row count, rate and ETA."""
    source = tmp_path / "calls.csv"
    keys = np.arange(46_701_000_000, 46_701_003_000, dtype=np.uint64)
    source.write_text("phone\n" + "".join(f"+{key}\n" for key in keys.tolist()), encoding="utf-8")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = _run(
        capsys,
        "--target",
        server.target,
        "wash",
        str(source),
        "-o",
        str(tmp_path / "o.csv"),
        "--batch-size",
        "500",
    )
    assert code == 0
    assert "washing" in err
    assert "3,000 rows" in err
    assert "B/s" in err
    assert "<" in err  # tqdm's elapsed<remaining
