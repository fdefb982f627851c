"""The `nixlookup` command against a real server: check and info output, --target/env, exit statuses."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from conftest import RegisterFile, ServerFactory, national

from nixlookup.bench.serverproc import ServerProcess


@pytest.fixture(name="server", scope="module")
def fixture_server(module_server_factory: ServerFactory, small_register: RegisterFile) -> ServerProcess:
    """One server for the module, serving the small register."""
    return module_server_factory(["--register", str(small_register.path)])


def _nixlookup(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NIXLOOKUP_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "nixlookup.client.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )


def test_check_prints_one_line_per_number(server: ServerProcess, small_register: RegisterFile) -> None:
    """`check` prints number, verdict, reason, problem, e164, line type and valid-until (or why it is
    invalid)."""
    member = int(small_register.keys[0])
    result = _nixlookup("check", national(member), "070-12", "--target", server.target)
    assert result.returncode == 0, result.stderr
    blocked, invalid = result.stdout.splitlines()
    assert blocked.split("\t")[:6] == [
        national(member), "BLOCKED", "NIX_REGISTERED", "-", f"+{member}", "MOBILE"
    ]  # fmt: skip
    assert blocked.split("\t")[6].startswith("valid until 20")
    assert invalid.split("\t")[:4] == ["070-12", "INVALID", "INVALID_NUMBER", "TOO_SHORT"]


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("0", "TOO_SHORT"),
        ("abc", "BAD_CHARACTER"),
        ("", "EMPTY"),
        ("070-123 45 67 ankn 12", "BAD_CHARACTER"),
        ("070-123 45 67 89 01", "TOO_LONG"),
    ],
)
def test_check_json_names_the_problem_of_an_invalid_number(
    server: ServerProcess, written: str, problem: str
) -> None:
    """`check --json` carries the problem code of an INVALID number (issue 13: "INVALID rows carry no
    reason"), and null for a valid one."""
    result = _nixlookup("check", "--json", written, "08-123 456 78", "--target", server.target)
    assert result.returncode == 0, result.stderr
    invalid, valid = (json.loads(line) for line in result.stdout.splitlines())
    assert (invalid["verdict"], invalid["problem"]) == ("INVALID", problem)
    assert (valid["verdict"], valid["problem"]) == ("ALLOWED", None)


def test_check_marks_mobiles_without_a_relationship(
    server: ServerProcess, small_register: RegisterFile
) -> None:
    """An allowed mobile carries the Swedma/Kontakta flag as a last column; a fixed line does not."""
    free_mobile = next(k for k in range(46_701_000_000, 46_702_000_000) if k not in small_register.key_set)
    result = _nixlookup("check", f"+{free_mobile}", "08-123 456 78", "--target", server.target)
    assert result.returncode == 0, result.stderr
    mobile, fixed = result.stdout.splitlines()
    assert mobile.split("\t")[1:3] == ["ALLOWED", "NOT_REGISTERED"]
    assert mobile.endswith("\tmobile without relationship")
    assert not fixed.endswith("relationship")


def test_check_json_and_target_from_the_environment(server: ServerProcess) -> None:
    """NIXLOOKUP_TARGET selects the server; --json prints one object per number; --purpose is passed on."""
    result = _nixlookup(
        "check", "--json", "--purpose", "political", "070-123 45 67", env={"NIXLOOKUP_TARGET": server.target}
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert (answer["verdict"], answer["reason"], answer["e164"]) == ("ALLOWED", "EXEMPT_PURPOSE", 46701234567)


def test_info_prints_the_register(server: ServerProcess, small_register: RegisterFile) -> None:
    """`info` names the register's version, count and source, plain and as JSON."""
    plain = _nixlookup("--target", server.target, "info")
    as_json = _nixlookup("info", "--json", "--target", server.target)
    assert plain.returncode == 0, plain.stderr
    info = json.loads(as_json.stdout)
    assert info["register"]["count"] == len(small_register.key_set)
    assert f"version {info['register']['version']}" in plain.stdout
    assert f"{len(small_register.key_set):,} numbers" in plain.stdout
    phone_register = [line for line in plain.stdout.splitlines() if line.startswith("register:")]
    assert len(phone_register) == 1
    assert "SYNTHETIC" not in phone_register[0]  # (the address register is synthetic here, and says so)


def test_an_unreachable_server_exits_1_saying_what_to_do() -> None:
    """No server at the target: exit 1 naming the target and the fix, no traceback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{probe.getsockname()[1]}"
    result = _nixlookup("check", "070-123 45 67", "--target", target)  # retries end within the deadline
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr
    assert target in result.stderr
    assert "Traceback" not in result.stderr
    assert "1234567" not in result.stderr


def test_usage_errors_exit_2() -> None:
    """An unknown purpose is a usage error (exit 2) naming the allowed purposes."""
    result = _nixlookup("check", "--purpose", "cold-calling", "070-123 45 67")
    assert result.returncode == 2
    assert "market-research" in result.stderr


def test_admin_and_lists_commands_find_the_server_like_every_command(server: ServerProcess) -> None:
    """`admin` and `lists` read NIXLOOKUP_TARGET like `check`; the old `--server` spelling is gone."""
    env = {"NIXLOOKUP_TARGET": server.target}
    history = _nixlookup("admin", "history", env=env)
    assert history.returncode == 0, history.stderr
    assert history.stdout.startswith("register: version ")
    shown = _nixlookup("lists", "show", env=env)
    assert (shown.returncode, shown.stdout.strip()) == (0, "no caller lists")
    old = _nixlookup("admin", "history", "--server", server.target)
    assert old.returncode == 2
    assert "unrecognized arguments: --server" in old.stderr


def test_check_min_version_reads_its_writes_through_a_follower(
    server_factory: ServerFactory, small_register: RegisterFile, tmp_path: Path
) -> None:
    """`check --min-version` with the versions `admin apply-delta` and `lists add` printed, against a
    follower: answers from at least those versions; a version no replica has exits 1 saying so; a list
    name it cannot read exits 2 before any call."""
    writer = server_factory(["--data-dir", str(tmp_path / "writer"), "--register", str(small_register.path)])
    follower = server_factory(["--follow", writer.target, "--min-version-wait", "0.2"])
    free = [k for k in range(46_701_000_000, 46_702_000_000) if k not in small_register.key_set][:2]
    added = tmp_path / "added.txt"
    added.write_text(f"+{free[0]}\n", encoding="ascii")
    delta = _nixlookup("admin", "apply-delta", "--add", str(added), "--target", writer.target)
    opt_out = _nixlookup("lists", "add", "--caller", "acme", "--list-kind", "opt-out", f"+{free[1]}",
                         "--target", writer.target)  # fmt: skip
    assert delta.returncode == 0, delta.stderr
    assert opt_out.returncode == 0, opt_out.stderr
    register_version = re.search(r"^register: version (\S+)", delta.stdout, re.MULTILINE)
    list_version = re.search(r"^opt-out/acme: version (\S+)", opt_out.stdout, re.MULTILINE)
    assert register_version is not None, delta.stdout
    assert list_version is not None, opt_out.stdout
    checked = _nixlookup(
        "check", "--json", "--caller", "acme", f"+{free[0]}", f"+{free[1]}", "--target", follower.target,
        "--min-version", register_version[1], "--min-version", f"opt-out/acme={list_version[1]}",
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    answers = [json.loads(line) for line in checked.stdout.splitlines()]
    assert [(a["verdict"], a["reason"]) for a in answers] == [
        ("BLOCKED", "NIX_REGISTERED"), ("BLOCKED", "COMPANY_OPT_OUT")
    ]  # fmt: skip
    assert all(answer["register_version"] >= register_version[1] for answer in answers)
    used = {(item["kind"], item["caller"]): item["version"] for item in answers[1]["lists_used"]}
    assert used[("opt-out", "acme")] >= list_version[1]
    behind = _nixlookup(
        "check", f"+{free[0]}", "--min-version", "999999-00000000", "--target", follower.target
    )
    assert behind.returncode == 1, behind.stdout
    assert "no replica tried served the min_version" in behind.stderr
    assert str(free[0])[-7:] not in behind.stderr
    for wrong in ("sometimes/acme=000001-00000000", "register="):
        refused = _nixlookup("check", "070-123 45 67", "--min-version", wrong, "--target", "127.0.0.1:1")
        assert refused.returncode == 2, refused.stderr
        assert "nixlookup check: --min-version" in refused.stderr
