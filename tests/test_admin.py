"""Admin and `nixlookup admin` on a real server: refusals keep the old version; SIGHUP and --watch."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import (
    RegisterFile,
    ServerFactory,
    data_dir_server,
    make_mobile_keys,
    write_register,
)

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.client import cli, cli_admin
from nixlookup.server.index import Index
from nixlookup.server.store import write_snapshot
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_POLL_SECONDS = 0.05
_WAIT_SECONDS = 10.0


@pytest.fixture(name="register_a", scope="module")
def fixture_register_a(tmp_path_factory: pytest.TempPathFactory) -> RegisterFile:
    """3,000 seeded mobile numbers."""
    return write_register(tmp_path_factory.mktemp("a") / "a.txt", make_mobile_keys(3_000, seed=81))


@pytest.fixture(name="server", scope="module")
def fixture_server(
    module_server_factory: ServerFactory, register_a: RegisterFile, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """One server for the module, its data directory seeded from register A."""
    return data_dir_server(module_server_factory, register_a, tmp_path_factory)


def _register(lookup: lookup_pb2_grpc.LookupStub) -> lookup_pb2.ListInfo:
    return lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5).register


def _write_truncated(path: Path, keys: np.ndarray) -> None:
    text = "".join(f"+{int(key)}\n" for key in keys)
    path.write_text(text[: len(text) - 4])


def _write_smaller(path: Path, keys: np.ndarray) -> None:
    write_register(path, keys[: int(keys.size * 0.8)])


def _write_bad_checksum(path: Path, keys: np.ndarray) -> None:
    write_snapshot(path, Index.build(keys, version="x", source="test"))
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("write_bad_file", "reason"),
    [
        (_write_truncated, "looks truncated"),
        (_write_smaller, r"20\.0% fewer"),
        (_write_bad_checksum, "checksum check failed"),
    ],
    ids=["truncated-text", "twenty-percent-smaller", "snapshot-bad-checksum"],
)
def test_bad_reload_is_refused_and_the_old_version_keeps_answering(
    stubs: tuple[lookup_pb2_grpc.LookupStub, lookup_pb2_grpc.AdminStub],
    register_a: RegisterFile,
    tmp_path: Path,
    write_bad_file: Callable[[Path, np.ndarray], None],
    reason: str,
) -> None:
    """Each bad file: FAILED_PRECONDITION naming the check; Check still answers from the same version."""
    lookup, admin = stubs
    before = _register(lookup).version
    path = tmp_path / "bad.dat"
    write_bad_file(path, register_a.keys)
    with pytest.raises(grpc.RpcError) as refused:
        admin.Reload(lookup_pb2.ReloadRequest(path=str(path)), timeout=30)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert re.search(reason, refused.value.details())  # type: ignore[attr-defined]
    reply = lookup.Check(lookup_pb2.CheckRequest(e164=int(register_a.keys[7])), timeout=5)
    assert reply.verdict == lookup_pb2.BLOCKED
    assert reply.register_version == before


def test_deltas_show_in_history_and_expect_version_guards(
    stubs: tuple[lookup_pb2_grpc.LookupStub, lookup_pb2_grpc.AdminStub],
) -> None:
    """ApplyDelta answers the new version, GetRegisterInfo's history lists it, a stale base is refused."""
    lookup, admin = stubs
    before = _register(lookup).version
    fresh = make_mobile_keys(5, seed=82)
    reply = admin.ApplyDelta(
        lookup_pb2.ApplyDeltaRequest(
            add_e164_le=fresh.astype("<u8").tobytes(), add_texts=["hello"], expect_version=before
        ),
        timeout=5,
    )
    assert (reply.previous_version, reply.invalid) == (before, 1)
    info = _register(lookup)
    assert info.version == reply.version
    newest = info.history[0]
    assert (newest.kind, newest.version, newest.adds) == ("delta", reply.version, reply.added)
    with pytest.raises(grpc.RpcError) as stale:
        admin.ApplyDelta(lookup_pb2.ApplyDeltaRequest(remove_texts=["070-123 45 67"], expect_version=before))
    assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert _register(lookup).version == reply.version


def test_admin_cli_apply_delta_compact_history_reload(
    server: ServerProcess, register_a: RegisterFile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`nixlookup admin` apply-delta, compact, history and reload work end to end and print no numbers."""
    fresh = make_mobile_keys(3, seed=83)
    adds = tmp_path / "adds.txt"
    adds.write_text("".join(f"0{int(key) - 46_000_000_000}\n" for key in fresh))
    removes = tmp_path / "removes.txt"
    removes.write_text(f"+{int(register_a.keys[0])}\n")
    target = ["--target", server.target]
    assert (
        cli_admin.main(["admin", "apply-delta", *target, "--add", str(adds), "--remove", str(removes)]) == 0
    )
    assert cli_admin.main(["admin", "compact", *target]) == 0
    assert cli.main(["--target", server.target, "admin", "history"]) == 0  # the `nixlookup` entry
    bigger = write_register(tmp_path / "bigger.txt", make_mobile_keys(3_100, seed=84))
    assert cli_admin.main(["admin", "reload", str(bigger.path), *target]) == 0
    smaller = write_register(tmp_path / "smaller.txt", bigger.keys[:2_000])
    assert cli_admin.main(["admin", "reload", str(smaller.path), *target]) == 1
    out, err = capsys.readouterr()
    assert "+3 -1" in out
    assert "compacted register" in out
    assert "delta" in out
    assert "3,100 numbers" in out
    assert "FAILED_PRECONDITION" in err
    assert not any(str(int(key))[2:] in out + err for key in [*fresh, register_a.keys[0]])


def _wait_for_version_change(lookup: lookup_pb2_grpc.LookupStub, old: str) -> lookup_pb2.ListInfo:
    deadline = time.monotonic() + _WAIT_SECONDS
    while time.monotonic() < deadline:
        info = _register(lookup)
        if info.version != old:
            return info
        time.sleep(_POLL_SECONDS)
    raise AssertionError(f"the register stayed at {old} for {_WAIT_SECONDS} s")


def _replace_atomically(path: Path, source: RegisterFile) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(source.path.read_bytes())
    os.replace(temporary, path)


@pytest.mark.parametrize("trigger", ["sighup", "watch"])
def test_register_file_is_re_read_on_sighup_and_when_watched(
    server_factory: ServerFactory, tmp_path: Path, trigger: str
) -> None:
    """SIGHUP (or --watch seeing the file change) reloads the configured register file, validated."""
    first = write_register(tmp_path / "first.txt", make_mobile_keys(2_000, seed=85))
    second = write_register(tmp_path / "second.txt", make_mobile_keys(2_000, seed=86))
    configured = tmp_path / "register.txt"
    _replace_atomically(configured, first)
    args = ["--data-dir", str(tmp_path / "data"), "--register", str(configured)]
    server = server_factory([*args, "--watch", "0.1"] if trigger == "watch" else args)
    with grpc.insecure_channel(server.target) as channel:
        lookup = lookup_pb2_grpc.LookupStub(channel)
        before = _register(lookup)
        _replace_atomically(configured, second)
        if trigger == "sighup":
            server.signal(signal.SIGHUP)
        after = _wait_for_version_change(lookup, before.version)
        assert after.history[0].kind == "reload"
        reply = lookup.Check(lookup_pb2.CheckRequest(e164=int(second.keys[0])), timeout=5)
        assert reply.verdict == lookup_pb2.BLOCKED
        assert reply.register_version == after.version


def test_caller_list_deltas_reach_the_policy_with_their_end_days(
    stubs: tuple[lookup_pb2_grpc.LookupStub, lookup_pb2_grpc.AdminStub], register_a: RegisterFile
) -> None:
    """A relationship added by ApplyDelta (with an end day) allows a registered number for its caller."""
    lookup, admin = stubs
    key = int(register_a.keys[11])
    packed_key = np.array([key], "<u8").tobytes()
    admin.ApplyDelta(lookup_pb2.ApplyDeltaRequest(add_e164_le=packed_key), timeout=5)  # registered now
    ref = lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_RELATIONSHIP, caller="acme-bank")
    until = np.array([40_000], dtype="<u4").tobytes()  # 2079: a live relationship
    reply = admin.ApplyDelta(
        lookup_pb2.ApplyDeltaRequest(
            list=ref, add_e164_le=np.array([key], "<u8").tobytes(), add_until_days_le=until
        ),
        timeout=5,
    )
    assert reply.count == 1
    for caller, verdict in (("acme-bank", lookup_pb2.ALLOWED), ("other", lookup_pb2.BLOCKED)):
        answer = lookup.Check(lookup_pb2.CheckRequest(e164=key, caller=caller), timeout=5)
        assert answer.verdict == verdict
    info = lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5)
    (listed,) = [item for item in info.lists if item.list.caller == "acme-bank"]
    assert (listed.version, listed.count) == (reply.version, 1)
    dropped = admin.DropList(lookup_pb2.DropListRequest(list=ref), timeout=5)
    assert dropped.last_version == reply.version
    answer = lookup.Check(lookup_pb2.CheckRequest(e164=key, caller="acme-bank"), timeout=5)
    assert answer.verdict == lookup_pb2.BLOCKED
