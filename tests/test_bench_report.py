"""The harness's report writing: JSON with machine and versions, Markdown tables, latest copies, charts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nixlookup.bench.cli import parse_size
from nixlookup.bench.report import Plot, Report, Table, format_value, render_markdown, write_report
from nixlookup.bench.timing import best_of, latency_stats, ratio


def _report() -> Report:
    report = Report(command="demo", parameters={"size": 1000})
    report.figures = {"batch_ns_per_number": 21.5, "register_size": 1000}
    report.tables = [
        Table(title="Demo table", columns=["what", "figure"], rows=[["batch", 21.5], ["n", 1000]])
    ]
    report.plots = [
        Plot(name="demo", title="Demo", xlabel="x", ylabel="y", x=[1.0, 10.0],
             series={"a": [1.0, 2.0], "b": [None, 3.0]}, logx=True)
    ]  # fmt: skip
    report.notes = ["a note"]
    return report


def test_write_report_writes_json_and_markdown_with_machine(tmp_path: Path) -> None:
    """A run leaves a JSON file with figures, machine and versions, a Markdown file, and -latest copies."""
    written = write_report(_report(), tmp_path)
    data = json.loads(written.json_path.read_text())
    assert data["command"] == "demo"
    assert data["figures"]["batch_ns_per_number"] == 21.5
    assert data["machine"]["cores"] >= 1
    assert data["machine"]["cpu_model"]
    assert data["machine"]["memory_bytes"] > 0
    assert data["versions"]["numpy"]
    assert data["versions"]["grpcio"]
    markdown = written.markdown_path.read_text()
    assert "### Demo table" in markdown
    assert "| batch | 21.5 |" in markdown
    assert "- a note" in markdown
    assert (tmp_path / "demo-latest.json").read_text() == written.json_path.read_text()
    assert (tmp_path / "demo-latest.md").exists()
    assert written.plot_paths == ()


def test_write_report_plots_png_on_request(tmp_path: Path) -> None:
    """With plots on, each Plot becomes a PNG file (matplotlib, Agg), series with gaps included."""
    written = write_report(_report(), tmp_path, plots=True)
    assert len(written.plot_paths) == 1
    assert written.plot_paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (True, "yes"), (1234567, "1,234,567"), (21.456, "21.5"), (0.0123456, "0.0123"),
     (12345.6, "12,346"), (3.14159, "3.14"), (0.0, "0"), ("bytes", "bytes")],
)  # fmt: skip
def test_format_value(value: object, text: str) -> None:
    """Cells are shown with about 3 significant digits, grouped thousands, '-' when not measured."""
    assert format_value(value) == text  # type: ignore[arg-type]


def test_render_markdown_names_the_machine() -> None:
    """The Markdown says which machine the figures came from."""
    assert "cores" in render_markdown(_report())


@pytest.mark.parametrize(
    ("text", "value"), [("20000", 20000), ("300k", 300_000), ("1.5M", 1_500_000), ("30m", 30_000_000)]
)
def test_parse_size(text: str, value: int) -> None:
    """Register sizes are written the way people say them."""
    assert parse_size(text) == value


def test_best_of_is_bounded_and_keeps_min_and_median() -> None:
    """best_of stops at its repeat count, runs at least once even with no time budget, min <= median."""
    calls: list[int] = []
    timing = best_of(lambda: calls.append(1), repeats=4, max_seconds=60)
    assert timing.runs == 4 == len(calls)
    assert timing.min_s <= timing.median_s
    assert best_of(lambda: None, repeats=100, max_seconds=0).runs == 1


def test_latency_stats_and_ratio() -> None:
    """Percentiles come from the latencies, QPS from the wall time; a missing figure gives no ratio."""
    stats = latency_stats([1_000_000] * 99 + [50_000_000], seconds=2.0)
    assert stats.calls == 100
    assert stats.qps == 50
    assert stats.p50_ms == pytest.approx(1.0)
    assert stats.max_ms == pytest.approx(50.0)
    assert ratio(10, 4) == 2.5
    assert ratio(None, 4) is None
    assert ratio(1, 0) is None


def test_best_per_call_runs_keeps_each_contenders_fastest_run() -> None:
    """Of interleaved per-call runs, compare keeps the highest-QPS run of each contender, whole."""
    from nixlookup.bench.compare import _best_per_call_runs

    runs = [
        {"redis_unary_c8_qps": 100.0, "redis_unary_c8_p99_ms": 9.0},
        {"nixlookup_unary_c8_qps": 50.0, "nixlookup_unary_c8_p99_ms": 3.0},
        {"redis_unary_c8_qps": 120.0, "redis_unary_c8_p99_ms": 7.0},
        {"nixlookup_unary_c8_qps": 40.0, "nixlookup_unary_c8_p99_ms": 1.0},
    ]
    assert _best_per_call_runs(runs, 8) == {
        "redis_unary_c8_qps": 120.0,
        "redis_unary_c8_p99_ms": 7.0,
        "nixlookup_unary_c8_qps": 50.0,
        "nixlookup_unary_c8_p99_ms": 3.0,
    }
