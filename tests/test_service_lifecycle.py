"""Server lifecycle through real processes: startup log, SIGTERM with a running stream, startup failures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import RegisterFile, ServerFactory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nixlookup.bench.serverproc import ServerProcess, ServerStartError
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc


def _log_events(server: ServerProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]


def test_startup_log_says_where_what_and_how_long(
    server_factory: ServerFactory, small_register: RegisterFile
) -> None:
    """The JSON startup event names the address, the register file, its count and the load time."""
    server = server_factory(["--register", str(small_register.path)])
    (serving,) = [event for event in _log_events(server) if event["event"] == "serving"]
    assert serving["listen"] == server.target
    assert serving["register"] == str(small_register.path)
    assert serving["count"] == len(small_register.key_set)
    assert serving["synthetic"] is False
    assert isinstance(serving["load_seconds"], float)
    assert "SYNTHETIC" not in server.log_text()


def test_without_a_register_the_synthetic_one_is_served_loudly(server_factory: ServerFactory) -> None:
    """No --register and no --data-dir: a synthetic register, and the log says so at warning level."""
    server = server_factory(["--synthetic-size", "20000"])
    events = _log_events(server)
    warnings = [e for e in events if e["level"] == "warning" and "SYNTHETIC" in str(e["event"])]
    (serving,) = [e for e in events if e["event"] == "serving"]
    assert warnings
    assert serving["synthetic"] is True
    assert serving["count"] == 20_000


def test_without_a_data_dir_a_temporary_store_serves_and_is_removed_on_exit(
    server_factory: ServerFactory, small_register: RegisterFile, tmp_path: Path
) -> None:
    """No --data-dir: the register is served through a Store in a temporary directory (its versions and
    history, SIGHUP re-reads --register), Admin is not offered, and the directory is gone after SIGTERM."""
    register = tmp_path / "register.txt"
    register.write_bytes(small_register.path.read_bytes())
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    server = server_factory(["--register", str(register)], env={"TMPDIR": str(scratch)})
    (ephemeral,) = list(scratch.glob("nixlookup-ephemeral-*"))
    (serving,) = [event for event in _log_events(server) if event["event"] == "serving"]
    assert (serving["data_dir"], serving["data_dir_ephemeral"]) == (str(ephemeral), True)
    with grpc.insecure_channel(server.target) as channel:
        lookup = lookup_pb2_grpc.LookupStub(channel)
        first = lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5).register
        assert first.version.startswith("000001-"), "the Store's version ids, one scheme for every mode"
        assert [entry.kind for entry in first.history] == ["snapshot"]
        with pytest.raises(grpc.RpcError) as refused:
            lookup_pb2_grpc.AdminStub(channel).Compact(lookup_pb2.CompactRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
        added = 46_701_234_500 if 46_701_234_500 not in small_register.key_set else 46_701_234_501
        with register.open("a", encoding="ascii") as handle:
            handle.write(f"+{added}\n")
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        second = first
        while second.version == first.version and time.monotonic() < deadline:
            time.sleep(0.05)
            second = lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5).register
        assert second.version.startswith("000002-")
        assert second.count == first.count + 1
        answer = lookup.Check(lookup_pb2.CheckRequest(e164=added), timeout=5)
        assert answer.verdict == lookup_pb2.BLOCKED
    assert server.stop(signal.SIGTERM) == 0
    assert not ephemeral.exists()


def test_sigterm_lets_a_running_stream_finish_and_exits_0(
    server_factory: ServerFactory, small_register: RegisterFile
) -> None:
    """SIGTERM mid-stream: health NOT_SERVING, new calls refused, the stream gets every answer, exit 0."""
    server = server_factory(["--register", str(small_register.path), "--grace", "15"])
    keys = small_register.keys[:1000].astype("<u8").tobytes()
    total = 30
    first_answer = threading.Event()

    def slow_batches() -> Iterator[lookup_pb2.CheckBatch]:
        for batch_id in range(total):
            if batch_id == 1:
                first_answer.wait(10)
            time.sleep(0.05)
            yield lookup_pb2.CheckBatch(e164_le=keys, batch_id=batch_id)

    with grpc.insecure_channel(server.target) as channel:
        health_watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
        assert next(health_watch).status == health_pb2.HealthCheckResponse.SERVING
        responses = lookup_pb2_grpc.LookupStub(channel).CheckStream(slow_batches(), timeout=30)
        answers = [next(responses)]
        server.signal(signal.SIGTERM)
        first_answer.set()
        assert next(health_watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        health_watch.cancel()  # type: ignore[attr-defined]
        refused = _first_refusal(server.target)
        answers.extend(responses)
    # grpc core refuses a call arriving during shutdown with UNAVAILABLE (GOAWAY seen) or CANCELLED (not yet).
    assert refused in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    assert [answer.batch_id for answer in answers] == list(range(total))
    assert all(answer.count == 1000 and answer.blocked == b"\xff" * 125 for answer in answers)
    assert server.wait(timeout=20) == 0
    assert any(event["event"] == "stopped" for event in _log_events(server))


def _first_refusal(target: str, within: float = 5.0) -> grpc.StatusCode | None:
    """The status of the first new Check refused within `within` seconds (health turns NOT_SERVING just
    before the server stops accepting, so a call in that instant may still be answered)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with grpc.insecure_channel(target) as channel:
            try:
                lookup_pb2_grpc.LookupStub(channel).Check(
                    lookup_pb2.CheckRequest(e164=46701234567), timeout=2
                )
            except grpc.RpcError as error:
                code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
                return code
        time.sleep(0.02)
    return None


def test_sigint_with_nothing_running_exits_0_at_once(server_factory: ServerFactory) -> None:
    """SIGHUP without --register is ignored; SIGINT is a clean stop and an idle server does not wait."""
    server = server_factory(["--synthetic-size", "10000", "--grace", "30"])
    server.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert server.health_status() == "SERVING"
    assert "sighup_ignored" in server.log_text()
    started = time.monotonic()
    assert server.stop(signal.SIGINT) == 0
    assert time.monotonic() - started < 10


def test_an_unreadable_register_fails_startup_with_a_reason(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A missing register file: exit 1 before listening, and the log says which file."""
    missing = tmp_path / "nope.txt"
    with pytest.raises(ServerStartError) as caught:
        server_factory(["--register", str(missing)], startup_timeout=20)
    assert "exited with code 1" in str(caught.value)
    assert "nope.txt" in str(caught.value)


def test_a_busy_port_fails_startup_instead_of_sharing_it(server_factory: ServerFactory) -> None:
    """A second server on the same address exits 2 with one line naming the address and the flag and
    variable that move it, and none of grpc's own noise (no silent SO_REUSEPORT sharing either)."""
    first = server_factory(["--synthetic-size", "10000"])
    result = subprocess.run(
        [sys.executable, "-m", "nixlookup.server.app", "serve", "--listen", first.target,
         "--synthetic-size", "10000", "--log-format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert first.target in line
    assert "--listen" in line
    assert "NIXLOOKUP_LISTEN" in line
    assert "address already in use" in line
    assert first.health_status() == "SERVING"


def test_version_names_the_package_version() -> None:
    """`nixlookup-server --version` prints the installed version and exits 0."""
    from importlib import metadata

    result = subprocess.run(
        [sys.executable, "-m", "nixlookup.server.app", "--version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    assert result.stdout.strip() == f"nixlookup-server {metadata.version('nixlookup')}"


def test_logs_never_carry_a_full_number(server_factory: ServerFactory, small_register: RegisterFile) -> None:
    """With debug logging, checks of numbers (valid, invalid, refused) leave no full number in the log."""
    server = server_factory(["--register", str(small_register.path), "--log-level", "debug"])
    numbers = ["070-123 45 67", "0701234567", "+46 8 123 456 78", "070-123 45 6x"]
    with grpc.insecure_channel(server.target) as channel:
        stub = lookup_pb2_grpc.LookupStub(channel)
        for number in numbers:
            stub.Check(lookup_pb2.CheckRequest(text=number), timeout=5)
        list(stub.CheckStream(iter([lookup_pb2.CheckBatch(texts=numbers)]), timeout=5))
        with pytest.raises(grpc.RpcError):
            list(stub.CheckStream(iter([lookup_pb2.CheckBatch(texts=numbers, e164_le=b"\0" * 8)]), timeout=5))
    log = server.log_text()
    assert '"event": "rpc"' in log  # debug events were written
    for digits in ("701234567", "812345678"):
        assert digits not in log
    assert str(int(np.uint64(46701234567))) not in log
