"""Starting on a data directory: a real register replaces a synthetic one; it never replaces a real one."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
from conftest import ServerFactory, make_mobile_keys, write_register

from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc


def _register(target: str) -> lookup_pb2.ListInfo:
    with grpc.insecure_channel(target) as channel:
        stub = lookup_pb2_grpc.LookupStub(channel)
        return stub.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5).register


def test_register_file_replaces_the_synthetic_register_but_not_a_real_one(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """`make serve` first, the real file later: the file is served; a second file is not forced over it."""
    data_dir = str(tmp_path / "data")
    synthetic = server_factory(["--data-dir", data_dir, "--synthetic-size", "5000"])
    assert _register(synthetic.target).synthetic
    assert synthetic.stop(signal.SIGTERM) == 0

    real = write_register(tmp_path / "real.txt", make_mobile_keys(3_000, seed=11))
    first = server_factory(["--data-dir", data_dir, "--register", str(real.path)])
    served = _register(first.target)
    assert (served.synthetic, served.count) == (False, 3_000)
    assert first.stop(signal.SIGTERM) == 0

    other = write_register(tmp_path / "other.txt", make_mobile_keys(4_000, seed=12))
    second = server_factory(["--data-dir", data_dir, "--register", str(other.path)])
    assert _register(second.target).version == served.version, "the data directory stays the source of truth"
    assert "register_file_not_loaded_at_start" in second.log_text()
