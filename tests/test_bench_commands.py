"""`rpc`, `reload`, `compare` and `replica` end to end on tiny registers: real servers on loopback, every
figure the issues ask for in the JSON, answers checked, and no process left behind."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nixlookup.bench.cli import main
from nixlookup.bench.procs import live_pids
from nixlookup.bench.redisbench import redis_server_binary

pytestmark = pytest.mark.slow


def _run(command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code = main([*command, "--json", "--out", str(tmp_path / "out"), "--workdir", str(tmp_path)])
    assert code == 0
    assert live_pids() == []
    figures: dict[str, Any] = json.loads(capsys.readouterr().out)["figures"]
    return figures


def test_rpc_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rpc reports unary QPS/p50/p99 at 1/8/32, bulk bytes and texts at 1k/10k/100k, CPU, ratios, lists."""
    figures = _run(
        ["rpc", "--size", "20000", "--calls", "150", "--repeats", "1", "--bulk-numbers", "30000",
         "--text-numbers", "10000", "--client-numbers", "20000", "--wash-rows", "5000", "--plot"],
        tmp_path, capsys,
    )  # fmt: skip
    for level in (1, 8, 32):
        for prefix in ("", "reference_"):
            assert figures[f"{prefix}unary_c{level}_qps"] > 0
            assert figures[f"{prefix}unary_c{level}_wrong"] == 0
            assert figures[f"{prefix}unary_c{level}_p99_ms"] >= figures[f"{prefix}unary_c{level}_p50_ms"]
        assert figures[f"unary_c{level}_vs_reference"] > 0
        assert figures[f"unary_c{level}_server_cpu_us_per_call"] > 0
    for mode in ("bytes", "texts"):
        for batch in (1000, 10000, 100000):
            assert figures[f"bulk_{mode}_{batch}_correct"] is True
            assert figures[f"reference_bulk_{mode}_{batch}_correct"] is True
            assert figures[f"bulk_{mode}_{batch}_numbers_per_s"] > 0
    assert figures["caller_lists_correct"] is True
    assert figures["caller_lists_vs_plain"] > 0
    for path in ("raw_bytes", "batches", "many", "raw_texts", "wash"):
        assert figures[f"client_{path}_correct"] is True, path
    for versus in ("client_check_batches_vs_raw", "client_check_many_vs_raw", "client_wash_vs_raw_texts"):
        assert figures[versus] > 0
    charts = sorted((tmp_path / "out").glob("rpc-*.png"))
    assert len(charts) == 2
    for chart in charts:  # the PNG's Description text chunk names machine, date and register size
        data = chart.read_bytes()
        assert data.startswith(b"\x89PNG")
        assert b"register of 20,000 numbers" in data
        assert f"{os.cpu_count()} cores".encode() in data
        assert datetime.now(UTC).strftime("%Y-%m-%d").encode() in data


def test_reload_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """reload reports steady vs during-reload latency with no wrong answer, snapshot reload and delta rate."""
    figures = _run(["reload", "--size", "20000", "--reloads", "2", "--delta-rounds", "2"], tmp_path, capsys)
    assert figures["steady_calls"] > 0
    assert figures["during_reload_calls"] > 0
    assert figures["during_reload_wrong"] == 0
    assert figures["text_reloads"] >= 1
    assert figures["p99_during_reload_vs_steady"] > 0
    assert 0 < figures["snapshot_reload_s"] < 10
    assert figures["delta_added"] == 2 * 10_000
    assert figures["delta_final_count"] >= 20000 + 2 * 10_000
    assert figures["delta_numbers_per_s"] > 0


def test_compare_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """compare measures every contender on the same queries (Redis when installed) and states the targets."""
    figures = _run(
        ["compare", "--size", "20000", "--calls", "150", "--repeats", "1", "--bulk-numbers", "20000"],
        tmp_path, capsys,
    )  # fmt: skip
    contenders = ["nixlookup", "grpc_set", "python_set"]
    if redis_server_binary() is not None:
        contenders.append("redis")
        assert figures["redis_load_s"] > 0
        assert figures["redis_used_memory_bytes_per_number"] > 8  # a SET member costs more than 8 bytes
    else:
        assert figures["redis_available"] is False
    for name in contenders:
        for level in (1, 8, 32):
            assert figures[f"{name}_unary_c{level}_qps"] > 0
        for batch in (1000, 10000, 100000):
            assert figures[f"{name}_bulk_{batch}_correct"] is True
    assert figures["nixlookup_load_s"] > 0
    assert figures["target_unary_c8_nixlookup_over_grpc_set"] > 0


def test_replica_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """replica reports per-call figures for the replica (register only, with lists), gRPC and the floor,
    Redis when installed, convergence and memory per register number; its answers were checked."""
    figures = _run(
        ["replica", "--size", "20000", "--calls", "2000", "--remote-calls", "100", "--list-size", "500",
         "--deltas", "5", "--repeats", "1"],
        tmp_path, capsys,
    )  # fmt: skip
    for prefix in ("floor_contains", "replica_register", "replica_lists", "grpc_check"):
        assert figures[f"{prefix}_mean_us"] > 0
        assert figures[f"{prefix}_p99_us"] >= figures[f"{prefix}_p50_us"]
    assert figures["converge_p99_ms"] >= figures["converge_p50_ms"] > 0
    assert figures["replica_bytes_per_register_number"] > 0
    assert figures["grpc_over_replica_register"] > 0
    if redis_server_binary() is not None:
        assert figures["redis_sismember_mean_us"] > 0
        assert figures["redis_over_replica_register"] > 0
