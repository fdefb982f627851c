"""`nixlookup-bench guard` fails (exit 1) exactly when a measured ratio falls below its threshold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nixlookup.bench.cli import main
from nixlookup.bench.guard import Threshold, check_thresholds, load_thresholds


def test_packaged_thresholds_cover_the_guarded_ratios() -> None:
    """The shipped thresholds.toml guards core vs floor, core vs set, bytes vs texts, memory, and bulk with
    a large caller vs without, and the compiled bulk path (lookup and handler) vs the numpy chain."""
    names = {t.name for t in load_thresholds()}
    assert names == {
        "dense_floor_over_batch",
        "pyset_over_batch",
        "bulk_bytes_over_texts",
        "memory_pyset_over_index",
        "caller_lists_over_plain",
        "numpy_batch_over_compiled_batch",
        "numpy_handler_over_compiled_handler",
    }
    assert all(t.minimum > 0 for t in load_thresholds())


def test_check_thresholds_fails_a_ratio_below_its_minimum() -> None:
    """Below the minimum fails, at or above passes, and a ratio that was not measured fails."""
    thresholds = [Threshold("a", 2.0), Threshold("b", 2.0), Threshold("c", 2.0)]
    verdicts = {v.name: v.passed for v in check_thresholds({"a": 1.99, "b": 2.0}, thresholds)}
    assert verdicts == {"a": False, "b": True, "c": False}


def test_load_thresholds_refuses_an_entry_without_min(tmp_path: Path) -> None:
    """A threshold without a numeric `min` is a configuration error, not a silent pass."""
    path = tmp_path / "bad.toml"
    path.write_text('[ratios.x]\nmin = "high"\n')
    with pytest.raises(ValueError, match="numeric `min`"):
        load_thresholds(path)


@pytest.mark.slow
def test_guard_run_exits_nonzero_on_a_breached_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real (tiny) guard run against one impossible threshold exits 1 and names only that ratio."""
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text(
        "[ratios.pyset_over_batch]\nmin = 1e9\n"  # no index is a billion times faster than a set
        "[ratios.memory_pyset_over_index]\nmin = 0.001\n"
        "[ratios.bulk_bytes_over_texts]\nmin = 0.001\n"
    )
    code = main(
        ["guard", "--size", "20000", "--thresholds", str(thresholds), "--json", "--out", str(tmp_path)]
    )
    assert code == 1
    figures = json.loads(capsys.readouterr().out)["figures"]
    assert figures["guard_failed"] is True
    assert figures["guard_failures"] == ["pyset_over_batch"]
    assert figures["bulk_bytes_over_texts"] > 0
