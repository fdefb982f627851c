"""What a benchmark run produces: one `Report`, written as JSON and Markdown (and PNG charts on request).

A report carries every figure of the run (`figures`, flat JSON-able values), the tables a person reads,
the chart data, the parameters it ran with, and the machine and package versions it ran on, because
absolute figures only mean something next to the machine that produced them. Ratios travel; times do not.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "Plot",
    "Report",
    "Table",
    "WrittenReport",
    "format_value",
    "machine_info",
    "package_versions",
    "render_markdown",
    "write_report",
]

Cell = str | int | float | None

_PACKAGES = ("nixlookup", "grpcio", "protobuf", "numpy", "pyroaring", "redis", "matplotlib")


@dataclass
class Table:
    """A table for people: a title, column names and rows of cells."""

    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)


@dataclass
class Plot:
    """Data for one chart: one x axis and one or more named series (None = not measured)."""

    name: str
    title: str
    xlabel: str
    ylabel: str
    x: list[float]
    series: dict[str, list[float | None]]
    logx: bool = False
    logy: bool = False


@dataclass
class Report:
    """Everything one benchmark command measured."""

    command: str
    parameters: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration_s: float = 0.0

    def to_json_obj(self) -> dict[str, Any]:
        """The JSON object of the run: figures plus the context needed to read them."""
        return {
            "command": self.command,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "duration_s": round(self.duration_s, 3),
            "parameters": self.parameters,
            "figures": self.figures,
            "notes": self.notes,
            "tables": [{"title": t.title, "columns": t.columns, "rows": t.rows} for t in self.tables],
            "machine": machine_info(),
            "versions": package_versions(),
        }


@dataclass(frozen=True)
class WrittenReport:
    json_path: Path
    markdown_path: Path
    plot_paths: tuple[Path, ...]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, memory, OS and Python of this machine."""
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def _redis_server_version() -> str | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for word in out.stdout.split():
        if word.startswith("v="):
            return word[2:]
    return out.stdout.strip() or None


def package_versions() -> dict[str, str | None]:
    """Versions of the packages (and redis-server) whose speed the figures depend on."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["redis-server"] = _redis_server_version()
    return versions


def _format_float(value: float) -> str:
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    decimals = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2 if magnitude >= 1 else -1
    return f"{value:.{decimals}f}" if decimals >= 0 else f"{value:.3g}"


def format_value(value: Cell) -> str:
    """A cell as people read it: 3 significant digits, thousands grouped, '-' for not measured."""
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, int):
        text = f"{value:,}"
    elif isinstance(value, float):
        text = _format_float(value)
    else:
        text = str(value)
    return text


def _markdown_table(table: Table) -> list[str]:
    lines = [f"### {table.title}", "", "| " + " | ".join(table.columns) + " |"]
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines.extend("| " + " | ".join(format_value(cell) for cell in row) + " |" for row in table.rows)
    lines.append("")
    return lines


def render_markdown(report: Report) -> str:
    """The report as Markdown: tables, notes and the machine it ran on."""
    machine = machine_info()
    memory = machine["memory_bytes"]
    memory_text = f"{memory / 2**30:.0f} GiB" if memory else "unknown memory"
    lines = [
        f"## nixlookup-bench {report.command}",
        "",
        f"{report.started_at.isoformat(timespec='seconds')}, {report.duration_s:.1f} s; machine: "
        f"{machine['cores']} cores, {machine['cpu_model']}, {memory_text}, Python {machine['python']}.",
        "",
    ]
    params = ", ".join(f"{key}={value}" for key, value in report.parameters.items())
    if params:
        lines += [f"Parameters: {params}.", ""]
    for table in report.tables:
        lines += _markdown_table(table)
    if report.notes:
        lines += ["Notes:", ""] + [f"- {note}" for note in report.notes] + [""]
    return "\n".join(lines)


def plot_caption(report: Report) -> str:
    """Where a chart's figures came from: machine, date and register size (printed on every chart and
    kept in the PNG's Description)."""
    machine = machine_info()
    sizes = report.parameters.get("sizes")
    size = report.figures.get("register_size") or report.parameters.get("size")
    register = (
        "registers of " + ", ".join(f"{int(one):,}" for one in sizes) + " numbers"
        if isinstance(sizes, list | tuple)
        else f"register of {int(size):,} numbers"
        if size
        else "register size unknown"
    )
    return (
        f"nixlookup-bench {report.command}, {report.started_at.strftime('%Y-%m-%d %H:%M UTC')}, {register}; "
        f"{machine['cores']} cores, {machine['cpu_model']}, Python {machine['python']}"
    )


def _write_plots(report: Report, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caption = plot_caption(report)
    paths: list[Path] = []
    for plot in report.plots:
        fig, ax = plt.subplots(figsize=(7, 4.8))
        for label, values in plot.series.items():
            points = [(x, y) for x, y in zip(plot.x, values, strict=True) if y is not None]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        if plot.logx:
            ax.set_xscale("log")
        if plot.logy:
            ax.set_yscale("log")
        ax.set_title(plot.title)
        ax.set_xlabel(plot.xlabel)
        ax.set_ylabel(plot.ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        fig.text(0.01, 0.01, caption, fontsize=6.5, color="dimgray")
        path = out_dir / f"{stem}-{plot.name}.png"
        fig.savefig(path, dpi=110, metadata={"Description": caption})
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(report: Report, out_dir: Path, *, plots: bool = False) -> WrittenReport:
    """Write `<command>-<time>.json` and `.md` (and PNGs) under `out_dir`; also `<command>-latest.*`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{report.command}-{report.started_at.strftime('%Y%m%d-%H%M%S')}"
    json_text = json.dumps(report.to_json_obj(), indent=2, sort_keys=False) + "\n"
    markdown_text = render_markdown(report)
    json_path = out_dir / f"{stem}.json"
    markdown_path = out_dir / f"{stem}.md"
    json_path.write_text(json_text)
    markdown_path.write_text(markdown_text)
    (out_dir / f"{report.command}-latest.json").write_text(json_text)
    (out_dir / f"{report.command}-latest.md").write_text(markdown_text)
    plot_paths = _write_plots(report, out_dir, stem) if plots and report.plots else []
    return WrittenReport(json_path=json_path, markdown_path=markdown_path, plot_paths=tuple(plot_paths))
