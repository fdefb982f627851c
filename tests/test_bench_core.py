"""`nixlookup-bench core` end to end on a tiny register: every required figure, correct answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nixlookup.bench.cli import main
from nixlookup.bench.references import DenseBitsetFloor, PythonSetLookup
from nixlookup.bench.workload import make_workload

REQUIRED = (
    "register_size",
    "batch_ns_per_number",
    "single_ns_per_lookup",
    "pyset_batch_ns_per_number",
    "dense_bitset_ns_per_number",
    "bytes_per_number_canonical",
    "bytes_per_number_total",
    "text_load_s",
    "snapshot_load_s",
    "batch_vs_dense_floor",
    "pyset_vs_batch_speedup",
    "batch_vs_compiled_floor",
    "dense_bitset_compiled_ns_per_number",
    "handler_ns_per_number",
    "handler_numpy_vs_compiled",
)


def test_core_tiny_run_reports_every_required_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`core --size 20000 --json` prints one JSON object with all figures the issue asks for, and files."""
    out = tmp_path / "results"
    args = ["--size", "20000", "--queries", "20000", "--repeats", "2", "--json", "--plot"]
    code = main(["core", *args, "--out", str(out), "--workdir", str(tmp_path)])
    assert code == 0
    captured = capsys.readouterr()
    assert "--plot: this command has nothing to draw" in captured.err
    data = json.loads(captured.out)
    (table,) = data["tables"]
    verdicts = {row[0].strip(): row[4] for row in table["rows"]}
    assert verdicts["dense bitset floor (numpy)"] == "-"
    assert verdicts["dense bitset floor (compiled)"] == "-"
    budgeted = [verdict for name, verdict in verdicts.items() if verdict != "-"]
    assert len(budgeted) >= 8
    assert set(budgeted) <= {"ok", "over budget"}
    assert data["figures"]["over_budget"] == [
        name for name, verdict in verdicts.items() if verdict == "over budget"
    ]
    figures = data["figures"]
    missing = [key for key in REQUIRED if figures.get(key) is None]
    assert not missing, missing
    assert figures["register_size"] == 20000
    assert all(figures[key] > 0 for key in REQUIRED)
    assert 0.4 < figures["hit_share"] < 0.6
    assert (out / "core-latest.json").exists()
    assert (out / "core-latest.md").read_text().startswith("## nixlookup-bench core")


def test_workload_is_seeded_half_hits_and_identical_per_seed() -> None:
    """The same seed gives the same register and queries; half the queries are registered numbers."""
    first, second = make_workload(5000, 4000, seed=7), make_workload(5000, 4000, seed=7)
    assert np.array_equal(first.register, second.register)
    assert np.array_equal(first.queries, second.queries)
    assert first.expected_blocked.mean() == pytest.approx(0.5, abs=0.01)
    assert np.array_equal(first.expected_blocked, np.isin(first.queries, first.register))
    other = make_workload(5000, 4000, seed=8)
    assert not np.array_equal(first.queries, other.queries)


def test_references_answer_like_a_set() -> None:
    """The Python-set reference is exact; the folded dense floor never misses a registered number."""
    workload = make_workload(20000, 20000, seed=3)
    assert np.array_equal(
        PythonSetLookup(workload.register).contains_many(workload.queries), workload.expected_blocked
    )
    floor = DenseBitsetFloor(workload.register)
    answers = floor.contains_many(workload.queries)
    assert answers[workload.expected_blocked].all()
    assert floor.false_positives(workload.queries, workload.expected_blocked) == int(
        np.count_nonzero(answers & ~workload.expected_blocked)
    )


def test_budget_verdicts_scale_with_the_register_and_read_both_ways() -> None:
    """A time budget stated at 1.5M numbers scales with the size; ">=" budgets are floors."""
    from nixlookup.bench.core import Budget

    load = Budget("<=", 0.3, "<= 0.3 at 1.5M", per_size=True)
    assert load.verdict(0.5, 3_000_000) == "ok"
    assert load.verdict(0.5, 1_500_000) == "over budget"
    assert load.verdict(None, 1_500_000) == "not measured"
    speedup = Budget(">=", 10, ">= 10")
    assert (speedup.verdict(12.0, 20_000), speedup.verdict(9.0, 20_000)) == ("ok", "over budget")


def test_both_commands_say_their_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`nixlookup --version` and `nixlookup-bench --version` print the installed version and exit 0."""
    from importlib import metadata

    from nixlookup.client.cli import main as nixlookup_main

    for entry, name in ((main, "nixlookup-bench"), (nixlookup_main, "nixlookup")):
        with pytest.raises(SystemExit) as exited:
            entry(["--version"])
        assert exited.value.code == 0
        assert capsys.readouterr().out.strip() == f"{name} {metadata.version('nixlookup')}"
