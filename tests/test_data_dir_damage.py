"""Damage the server refuses to start on, and `nixlookup-server repair`: never lost, never invented state.

Each test damages a data directory the way a person or a bad disk would, starts the real server on it
(it must exit 1, naming what it found and the repair command, and leave the files alone), runs the
``nixlookup-server repair`` command (its `main`, in this process: first without ``--yes``, a report and no
change; then with it), and checks what a restarted server serves against a plain `set` of what was
acknowledged.
"""

from __future__ import annotations

import contextlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import RegisterFile, ServerFactory, make_mobile_keys, write_register
from numpy.typing import NDArray

from nixlookup.bench.serverproc import ServerProcess, ServerStartError
from nixlookup.server.app import main
from nixlookup.server.errors import DataDirDamagedError
from nixlookup.server.store import REGISTER_KEY, ListKind, Store, StoreSettings
from nixlookup.server.store._datadir import list_paths
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_JOURNAL_HEADER_BYTES = 20  # magic, format, flags, base sequence, header CRC (store/_journal.py)
_FRAME = struct.Struct("<II")


def _served(server: ServerProcess, keys: NDArray[np.uint64]) -> set[int]:
    """Which of `keys` the server's register holds, from one CheckStream batch."""
    with grpc.insecure_channel(server.target) as channel:
        stub = lookup_pb2_grpc.LookupStub(channel)
        batch = lookup_pb2.CheckBatch(e164_le=keys.astype("<u8").tobytes())
        (result,) = list(stub.CheckStream(iter([batch]), timeout=10))
    bits = np.unpackbits(np.frombuffer(result.blocked, np.uint8), count=keys.size, bitorder="little")
    return {int(key) for key, held in zip(keys.tolist(), bits.tolist(), strict=True) if held}


@dataclass(frozen=True)
class _Repaired:
    returncode: int
    stdout: str


def _repair(data_dir: Path, *extra: str) -> _Repaired:
    """``nixlookup-server repair DATA_DIR [extra]``: its exit status and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["repair", str(data_dir), "--log-format", "console", *extra])
    return _Repaired(code, out.getvalue())


def _refused_start(data_dir: Path, *extra: str) -> str:
    """Start a server on `data_dir`; it must exit 1 before listening. Returns its log."""
    server = ServerProcess(["--data-dir", str(data_dir), *extra], startup_timeout=30)
    with pytest.raises(ServerStartError):
        server.start()
    assert server.returncode == 1
    return server.log_text()


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}


def _flip_record(journal: Path, record: int) -> None:
    """Flip one bit in the middle of the payload of the `record`-th record (0-based) of `journal`."""
    raw = bytearray(journal.read_bytes())
    offset = _JOURNAL_HEADER_BYTES
    for _ in range(record):
        (length, _crc) = _FRAME.unpack_from(raw, offset)
        offset += _FRAME.size + length
    (length, _crc) = _FRAME.unpack_from(raw, offset)
    raw[offset + _FRAME.size + length // 2] ^= 0x04
    journal.write_bytes(bytes(raw))


def _deltas(store: Store, fresh: NDArray[np.uint64]) -> list[set[int]]:
    """Add `fresh` one key per delta; the register's content after each one."""
    contents = []
    for key in fresh:
        store.apply_delta(REGISTER_KEY, add=np.array([key], np.uint64))
        contents.append(set(store.holder.current().register.sorted_keys().tolist()))
    return contents


@pytest.fixture(name="base")
def fixture_base(tmp_path: Path) -> RegisterFile:
    return write_register(tmp_path / "base.txt", make_mobile_keys(400, seed=301))


def test_deleted_current_pointer_refuses_to_start_and_repair_keeps_every_delta(
    server_factory: ServerFactory, tmp_path: Path, base: RegisterFile
) -> None:
    """CURRENT deleted: no re-seed from --register over acknowledged deltas; repair brings all back."""
    data_dir = tmp_path / "data"
    fresh = np.setdiff1d(make_mobile_keys(40, seed=302), base.keys)[:4]
    store = Store.open(data_dir, initial_register=base.path)
    acknowledged = _deltas(store, fresh)[-1]
    store.close()
    register = data_dir / "register"
    (register / "CURRENT").unlink()
    before = _files(register)

    log = _refused_start(data_dir, "--register", str(base.path))
    assert "no CURRENT pointer but holds 00000001.journal, 00000001.snap" in log
    assert "nixlookup-server repair" in log
    assert _files(register) == before, "a refused start must not touch the files"

    report = _repair(data_dir)
    assert report.returncode == 1, report.stdout
    assert "register: DAMAGED: CURRENT is missing" in report.stdout
    assert "loses: nothing acknowledged" in report.stdout
    assert _files(register) == before, "a repair without --yes must not touch the files"

    done = _repair(data_dir, "--yes")
    assert done.returncode == 0, done.stdout
    quarantined = next((register / "quarantine").glob("repair-*"))
    assert {"00000001.snap", "00000001.journal"} <= {path.name for path in quarantined.iterdir()}
    server = server_factory(["--data-dir", str(data_dir), "--register", str(base.path)])
    assert _served(server, np.concatenate([base.keys, fresh])) == acknowledged
    assert "is in use by pid" in _repair(data_dir).stdout, "never a repair beside a running server"
    assert server.stop() == 0
    assert _repair(data_dir).returncode == 0, "a repaired directory needs no repair"


def test_unreadable_current_pointer_refuses_and_repair_infers_it(tmp_path: Path, base: RegisterFile) -> None:
    """A CURRENT that is not JSON: the store refuses naming the repair; the repair finds the same state."""
    data_dir = tmp_path / "data"
    store = Store.open(data_dir, initial_register=base.path)
    acknowledged = _deltas(store, np.setdiff1d(make_mobile_keys(40, seed=306), base.keys)[:3])[-1]
    store.close()
    (data_dir / "register" / "CURRENT").write_bytes(b"\x00\x17 not json")
    with pytest.raises(DataDirDamagedError, match=r"CURRENT is unreadable.*nixlookup-server repair"):
        Store.open(data_dir)
    assert _repair(data_dir, "--yes").returncode == 0
    store = Store.open(data_dir)
    try:
        assert set(store.holder.current().register.sorted_keys().tolist()) == acknowledged
    finally:
        store.close()


def test_flipped_middle_record_refuses_to_start_and_repair_keeps_the_records_before_it(
    server_factory: ServerFactory, tmp_path: Path, base: RegisterFile
) -> None:
    """A bit flipped in record 2 of 5 is corruption, not a torn tail: the start stops; repair serves
    exactly the state after record 1, reports the 3 readable records it loses, and quarantines the file."""
    data_dir = tmp_path / "data"
    fresh = np.setdiff1d(make_mobile_keys(40, seed=303), base.keys)[:5]
    store = Store.open(data_dir, initial_register=base.path)
    contents = _deltas(store, fresh)
    store.close()
    journal = data_dir / "register" / "00000001.journal"
    _flip_record(journal, 1)
    damaged = journal.read_bytes()

    log = _refused_start(data_dir)
    assert "checksum mismatch in the record at byte" in log
    assert "nixlookup-server repair" in log
    assert journal.read_bytes() == damaged

    report = _repair(data_dir)
    assert report.returncode == 1
    assert "3 acknowledged deltas still readable behind the damage (sequences 4, 5, 6" in report.stdout
    assert _repair(data_dir, "--yes").returncode == 0
    kept = next((data_dir / "register" / "quarantine").glob("repair-*")) / "00000001.journal"
    assert kept.read_bytes() == damaged, "the damaged journal is kept whole in quarantine"
    server = server_factory(["--data-dir", str(data_dir)])
    assert _served(server, np.concatenate([base.keys, fresh])) == contents[0]


def test_refused_reload_snapshot_and_flipped_previous_journal_never_serve_an_invented_history(
    server_factory: ServerFactory, tmp_path: Path, base: RegisterFile
) -> None:
    """Reload after 3 deltas, one more delta; then the reload's snapshot rots and a record of the previous
    journal flips. Replaying the surviving deltas onto the older register would serve a state that never
    existed: the start refuses; the repair serves the last state the files prove (base + delta 1)."""
    data_dir = tmp_path / "data"
    fresh = np.setdiff1d(make_mobile_keys(60, seed=304), base.keys)[:4]
    reloaded = write_register(tmp_path / "reloaded.txt", make_mobile_keys(400, seed=305))
    store = Store.open(data_dir, initial_register=base.path, settings=StoreSettings())
    before_reload = _deltas(store, fresh[:3])
    store.reload(REGISTER_KEY, reloaded.path, force=True)
    _deltas(store, fresh[3:])
    store.close()
    register = data_dir / "register"
    snapshot = register / "00000005.snap"
    raw = bytearray(snapshot.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    snapshot.write_bytes(bytes(raw))
    _flip_record(register / "00000001.journal", 1)

    log = _refused_start(data_dir)
    assert "nixlookup-server repair" in log
    report = _repair(data_dir)
    assert report.returncode == 1
    assert "snapshot 5 (refused: checksum check, a reload of" in report.stdout
    assert _repair(data_dir, "--yes").returncode == 0
    server = server_factory(["--data-dir", str(data_dir)])
    everything = np.concatenate([base.keys, reloaded.keys, fresh])
    assert _served(server, everything) == before_reload[0]


def test_unreadable_list_file_is_rebuilt_from_the_snapshot_header(tmp_path: Path, base: RegisterFile) -> None:
    """A caller's LIST lost: the start refuses (whose list is it?); the repair reads the caller id from the
    snapshot header, and the list serves again under the same id with the same numbers."""
    data_dir = tmp_path / "data"
    store = Store.open(data_dir, initial_register=base.path)
    key = (ListKind.OPT_OUT, "Acme AB/Sverige")
    store.apply_delta(key, add=base.keys[:7])
    directory = list_paths(data_dir, key).directory
    store.close()
    (directory / "LIST").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataDirDamagedError, match="whose list this is"):
        Store.open(data_dir)
    report = _repair(data_dir, "--yes")
    assert report.returncode == 0, report.stdout
    assert "LIST is unreadable" in report.stdout
    store = Store.open(data_dir)
    try:
        served = store.holder.current().list_for(*key)
        assert served is not None
        assert set(served.sorted_keys().tolist()) == set(base.keys[:7].tolist())
    finally:
        store.close()
