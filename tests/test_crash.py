"""Crash safety on a real server: kill -9 at random moments loses no acknowledged delta and halves none.

Also the two kinds of damage a crash or a bad disk leaves: a torn journal tail and a corrupted snapshot.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from conftest import RegisterFile, ServerFactory, make_mobile_keys, write_register
from numpy.typing import NDArray

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_KILLS = 5
_ADDS_PER_DELTA = 4
_MAX_DELTAS_PER_ROUND = 500  # bounds the loop; at ~300 durable deltas/s the kill usually lands first
_BASE = 3_000  # base register; each delta removes one of its keys
_POOL = 11_000  # fresh keys for the adds: more than _KILLS * _MAX_DELTAS_PER_ROUND deltas use


@dataclass(frozen=True)
class _Delta:
    add: NDArray[np.uint64]
    remove: NDArray[np.uint64]


def _blocked(server: ServerProcess, keys: NDArray[np.uint64]) -> tuple[str, NDArray[np.bool_]]:
    """The register version and which of `keys` it holds, from one CheckStream batch."""
    with grpc.insecure_channel(server.target) as channel:
        stub = lookup_pb2_grpc.LookupStub(channel)
        batch = lookup_pb2.CheckBatch(e164_le=keys.astype("<u8").tobytes())
        (result,) = list(stub.CheckStream(iter([batch]), timeout=10))
    bits = np.unpackbits(np.frombuffer(result.blocked, np.uint8), count=keys.size, bitorder="little")
    return result.register_version, bits.astype(np.bool_)


def _apply(stub: lookup_pb2_grpc.AdminStub, delta: _Delta) -> str:
    request = lookup_pb2.ApplyDeltaRequest(
        add_e164_le=delta.add.astype("<u8").tobytes(), remove_e164_le=delta.remove.astype("<u8").tobytes()
    )
    return stub.ApplyDelta(request, timeout=5).version


def _data_dir_server(
    factory: ServerFactory, data_dir: Path, register: RegisterFile, *extra: str
) -> ServerProcess:
    return factory(["--data-dir", str(data_dir), "--register", str(register.path), *extra])


class _DeltaDriver:
    """Applies deltas of fresh adds and one removal each, in a thread, until stopped or its server dies."""

    def __init__(self, base: RegisterFile, pool: NDArray[np.uint64]) -> None:
        self.pool = pool
        self.used = 0
        self.removable = list(base.keys.tolist())
        self.acknowledged: list[tuple[_Delta, str]] = []
        self.in_flight: _Delta | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, target: str) -> None:
        self.acknowledged = []
        self.in_flight = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(target,))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()

    def _run(self, target: str) -> None:
        with grpc.insecure_channel(target) as channel:
            stub = lookup_pb2_grpc.AdminStub(channel)
            for _ in range(_MAX_DELTAS_PER_ROUND):
                if self._stop.is_set() or self.used + _ADDS_PER_DELTA > self.pool.size or not self.removable:
                    return
                delta = _Delta(
                    add=self.pool[self.used : self.used + _ADDS_PER_DELTA],
                    remove=np.array([self.removable.pop()], dtype=np.uint64),
                )
                self.used += _ADDS_PER_DELTA
                self.in_flight = delta
                try:
                    version = _apply(stub, delta)
                except grpc.RpcError:
                    return  # the server died under this delta: its fate is checked after the restart
                self.in_flight = None
                self.acknowledged.append((delta, version))


def _apply_to_model(present: set[int], delta: _Delta) -> None:
    present.update(delta.add.tolist())
    present.difference_update(delta.remove.tolist())


def test_kill_9_during_deltas_keeps_every_acknowledged_one(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """5 kill -9s at random moments of a delta loop: acknowledged deltas all there, none half there."""
    rng = random.Random(20081001)
    base = write_register(tmp_path / "base.txt", make_mobile_keys(_BASE, seed=51))
    driver = _DeltaDriver(base, np.setdiff1d(make_mobile_keys(_POOL, seed=52), base.keys))
    data_dir = tmp_path / "data"
    present: set[int] = set(base.key_set)
    for _round in range(_KILLS):
        server = _data_dir_server(server_factory, data_dir, base, "--compact-after", "5")
        driver.start(server.target)
        time.sleep(rng.uniform(0.05, 0.5))
        server.stop(signal.SIGKILL)
        driver.stop()

        for delta, _version in driver.acknowledged:
            _apply_to_model(present, delta)
        restarted = _data_dir_server(server_factory, data_dir, base, "--compact-after", "5")
        touched = np.concatenate([base.keys, driver.pool[: driver.used]])
        version, blocked = _blocked(restarted, touched)
        in_register = dict(zip(touched.tolist(), blocked.tolist(), strict=True))
        if driver.in_flight is not None:
            delta = driver.in_flight
            applied = [in_register[key] for key in delta.add.tolist()] + [
                not in_register[key] for key in delta.remove.tolist()
            ]
            assert all(applied) or not any(applied), "an unacknowledged delta is half there"
            if all(applied):
                _apply_to_model(present, delta)
        elif driver.acknowledged:
            assert version == driver.acknowledged[-1][1]
        assert {key for key, held in in_register.items() if held} == present, "an acknowledged delta is lost"
        restarted.stop(signal.SIGTERM)
    assert driver.used > _KILLS * _ADDS_PER_DELTA, "too few deltas ran to mean anything"


def test_torn_journal_tail_is_cut_and_reported(server_factory: ServerFactory, tmp_path: Path) -> None:
    """A journal cut mid-record: the server starts from the last whole record and logs it as an error."""
    base = write_register(tmp_path / "base.txt", make_mobile_keys(500, seed=61))
    fresh = np.setdiff1d(make_mobile_keys(30, seed=62), base.keys)[:3]
    data_dir = tmp_path / "data"
    server = _data_dir_server(server_factory, data_dir, base)
    with grpc.insecure_channel(server.target) as channel:
        stub = lookup_pb2_grpc.AdminStub(channel)
        for key in fresh:
            _apply(stub, _Delta(add=np.array([key], np.uint64), remove=np.zeros(0, np.uint64)))
    assert server.stop(signal.SIGTERM) == 0
    journal = data_dir / "register" / "00000001.journal"
    journal.write_bytes(journal.read_bytes()[:-6])
    restarted = _data_dir_server(server_factory, data_dir, base)
    _version, blocked = _blocked(restarted, fresh)
    assert blocked.tolist() == [True, True, False]
    assert "journal_tail_discarded" in restarted.log_text()


def test_corrupted_snapshot_falls_back_loudly(server_factory: ServerFactory, tmp_path: Path) -> None:
    """A bit-rotten current snapshot is refused; the previous one plus journals serve every delta."""
    base = write_register(tmp_path / "base.txt", make_mobile_keys(500, seed=71))
    fresh = np.setdiff1d(make_mobile_keys(30, seed=72), base.keys)[:3]
    data_dir = tmp_path / "data"
    server = _data_dir_server(server_factory, data_dir, base, "--compact-after", "2")
    with grpc.insecure_channel(server.target) as channel:
        stub = lookup_pb2_grpc.AdminStub(channel)
        for key in fresh:
            _apply(stub, _Delta(add=np.array([key], np.uint64), remove=np.zeros(0, np.uint64)))
    assert server.stop(signal.SIGTERM) == 0
    snapshot = data_dir / "register" / "00000003.snap"  # the compaction after deltas 2 and 3
    raw = bytearray(snapshot.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    snapshot.write_bytes(bytes(raw))
    restarted = _data_dir_server(server_factory, data_dir, base)
    _version, blocked = _blocked(restarted, np.concatenate([fresh, base.keys[:50]]))
    assert blocked.all()
    log = restarted.log_text()
    assert "snapshot_refused" in log
    assert "checksum" in log
    assert "fell_back_to_previous_snapshot" in log


def test_kill_9_during_reloads_serves_the_last_acknowledged_or_the_pending_one(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """3 kill -9s while reloads alternate two registers: after restart, never an older or mixed version."""
    rng = random.Random(20081002)
    registers = [
        write_register(tmp_path / f"r{n}.txt", make_mobile_keys(2_000, seed=90 + n)) for n in range(2)
    ]
    data_dir = tmp_path / "data"
    everything = np.concatenate([register.keys for register in registers])
    serving = 0  # which register the data directory serves before the round
    for _round in range(3):
        server = _data_dir_server(server_factory, data_dir, registers[0])
        acknowledged: list[int] = []  # which register each answered reload loaded
        pending: list[int] = []
        stop = threading.Event()

        def reload_loop(target: str, sink: list[int], in_flight: list[int], halt: threading.Event) -> None:
            with grpc.insecure_channel(target) as channel:
                stub = lookup_pb2_grpc.AdminStub(channel)
                for number in range(200):
                    if halt.is_set():
                        return
                    which = number % 2
                    in_flight[:] = [which]
                    try:
                        stub.Reload(lookup_pb2.ReloadRequest(path=str(registers[which].path)), timeout=10)
                    except grpc.RpcError:
                        return
                    in_flight.clear()
                    sink.append(which)

        worker = threading.Thread(target=reload_loop, args=(server.target, acknowledged, pending, stop))
        worker.start()
        time.sleep(rng.uniform(0.1, 0.6))
        server.stop(signal.SIGKILL)
        stop.set()
        worker.join(timeout=15)
        assert not worker.is_alive()
        restarted = _data_dir_server(server_factory, data_dir, registers[0])
        _version, blocked = _blocked(restarted, everything)
        served = {int(key) for key, held in zip(everything.tolist(), blocked.tolist(), strict=True) if held}
        allowed = set(acknowledged[-1:] or [serving]) | set(pending)
        matches = [which for which in allowed if served == registers[which].key_set]
        assert matches, "after the restart the server serves an older or a mixed register"
        serving = matches[0]
        restarted.stop(signal.SIGTERM)
