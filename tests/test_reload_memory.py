"""Memory of a real server reloading a 1.5M-number register: peak under 2x steady, old versions freed."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest
from conftest import ServerFactory

from nixlookup.server.index import Index
from nixlookup.server.store import generate_register, write_snapshot, write_text_register
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_SIZE = 1_500_000
_RELOADS = 4


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/{pid}/status")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and resets VmHWM")
def test_reload_peak_memory_stays_under_twice_steady(server_factory: ServerFactory, tmp_path: Path) -> None:
    """Reloading 1.5M numbers (text and snapshot) peaks below 2x steady RSS and returns to steady."""
    keys_a = generate_register(_SIZE, seed=101)
    keys_b = generate_register(_SIZE, seed=102)
    text_b = tmp_path / "b.txt"
    write_text_register(text_b, keys_b)
    snapshot_a = tmp_path / "a.snap"
    write_snapshot(snapshot_a, Index.build(keys_a, version="a", source="test"))
    server = server_factory(["--data-dir", str(tmp_path / "data"), "--register", str(snapshot_a)])
    with grpc.insecure_channel(server.target) as channel:
        admin = lookup_pb2_grpc.AdminStub(channel)

        def reload(path: Path) -> None:
            # force: the snapshot's register date is older than the text reload's (dated now) before it
            admin.Reload(lookup_pb2.ReloadRequest(path=str(path), force=True), timeout=120)

        reload(text_b)  # one of each first, so allocator arenas and imports are as in steady service
        reload(snapshot_a)
        steady = _status_kib(server.pid, "VmRSS")
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
        for number in range(_RELOADS):
            reload(text_b if number % 2 == 0 else snapshot_a)
        peak = _status_kib(server.pid, "VmHWM")
        after = _status_kib(server.pid, "VmRSS")
    assert peak < 2 * steady, f"peak {peak} KiB during reloads vs steady {steady} KiB"
    # A leaked version would add ~25 MiB per reload; the allocator keeps some freed memory, so 1.5x.
    assert after < 1.5 * steady, f"RSS grew from {steady} to {after} KiB: old versions not freed"
