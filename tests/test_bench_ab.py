"""`nixlookup-bench ab` end to end on a tiny register: two builds' servers (here both this one, through
the interpreter running the tests) measured in one run, every row's ratio reported, answers checked, and
no process left behind."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from nixlookup.bench.cli import main
from nixlookup.bench.procs import live_pids

pytestmark = pytest.mark.slow


def test_ab_tiny_run_reports_both_builds_and_their_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unary QPS at 1/8/32 in flight and bulk bytes and texts at 1k/10k/100k for this build and the
    baseline, all answers right, and this / baseline for every row."""
    code = main(
        ["ab", "--baseline-python", sys.executable, "--size", "20000", "--calls", "100",
         "--unary-repeats", "1", "--repeats", "1", "--bulk-numbers", "20000", "--text-numbers", "5000",
         "--json", "--out", str(tmp_path / "out"), "--workdir", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    assert live_pids() == []
    figures: dict[str, Any] = json.loads(capsys.readouterr().out)["figures"]
    for level in (1, 8, 32):
        for prefix in ("", "baseline_"):
            assert figures[f"{prefix}unary_c{level}_wrong"] == 0
        assert figures[f"unary_c{level}_qps_vs_baseline"] > 0
    for mode in ("bytes", "texts"):
        for batch in (1000, 10000, 100000):
            for prefix in ("", "baseline_"):
                assert figures[f"{prefix}bulk_{mode}_{batch}_correct"] is True
            assert figures[f"bulk_{mode}_{batch}_numbers_per_s_vs_baseline"] > 0
