"""`nixlookup-bench` (also `python -m nixlookup.bench`): the benchmark harness's command line.

Subcommands: core, rpc, reload, compare, scale, guard. Every run writes `<command>-<time>.json` and `.md`
(and `<command>-latest.*`) under `--out` (default `bench-results/`), PNG charts with `--plot`, prints the
Markdown tables (or, with `--json`, the JSON object) on stdout and progress on stderr. Every server it
starts is stopped by pid when the run ends, also on Ctrl-C, SIGTERM or failure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from nixlookup.bench.procs import ProcessStartError, install_signal_handlers, stop_all
from nixlookup.bench.report import Report, render_markdown, write_report
from nixlookup.client.errors import NixlookupClientError
from nixlookup.client.proof import tool_version

__all__ = ["build_parser", "main", "parse_size"]

DEFAULT_OUT = Path("bench-results")
_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")
_MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000}


def parse_size(text: str) -> int:
    """'1.5M' -> 1500000, '300k' -> 300000, '20000' -> 20000."""
    match = _SIZE_PATTERN.match(text.replace("_", ""))
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a count like 20000, 300k, 1.5M; got {text!r}")
    value = round(float(match.group(1)) * _MULTIPLIERS[match.group(2).lower()])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="directory for JSON/Markdown/PNG results"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the JSON object on stdout (not the tables)"
    )
    parser.add_argument("--plot", action="store_true", help="also write PNG charts (matplotlib)")
    parser.add_argument("--seed", type=int, default=20080101, help="seed of the register and the queries")


def _run_core(args: argparse.Namespace) -> Report:
    from nixlookup.bench.core import CoreSettings, run_core

    return run_core(
        CoreSettings(size=args.size, queries=args.queries, seed=args.seed, repeats=args.repeats),
        workdir=args.workdir,
    )


def _run_rpc(args: argparse.Namespace) -> Report:
    from nixlookup.bench.rpc import RpcSettings, run_rpc

    return run_rpc(
        RpcSettings(
            size=args.size,
            seed=args.seed,
            unary_calls=args.calls,
            bulk_repeats=args.repeats,
            bulk_numbers=args.bulk_numbers,
            text_numbers=args.text_numbers,
            security=args.security,
            client_numbers=args.client_numbers,
            wash_rows=args.wash_rows,
            previous_path=args.previous_path,
            path_ab_only=args.path_ab_only,
        ),
        workdir=args.workdir,
    )


def _run_reload(args: argparse.Namespace) -> Report:
    from nixlookup.bench.reload import ReloadSettings, run_reload

    return run_reload(
        ReloadSettings(size=args.size, seed=args.seed, reloads=args.reloads, delta_rounds=args.delta_rounds),
        workdir=args.workdir,
    )


def _run_compare(args: argparse.Namespace) -> Report:
    from nixlookup.bench.compare import CompareSettings, run_compare

    return run_compare(
        CompareSettings(
            size=args.size,
            seed=args.seed,
            unary_calls=args.calls,
            bulk_repeats=args.repeats,
            bulk_numbers=args.bulk_numbers,
        ),
        workdir=args.workdir,
    )


def _run_scale(args: argparse.Namespace) -> Report:
    from nixlookup.bench.scale import ScaleSettings, run_scale

    sizes = tuple(args.sizes) + ((250_000_000,) if args.huge else ())
    return run_scale(ScaleSettings(sizes=sizes, seed=args.seed, queries=args.queries), workdir=args.workdir)


def _run_guard(args: argparse.Namespace) -> Report:
    from nixlookup.bench.guard import GuardSettings, run_guard

    return run_guard(GuardSettings(size=args.size, seed=args.seed, thresholds_path=args.thresholds))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nixlookup-bench",
        description="Benchmarks of nixlookup, with references measured in the same run.",
    )
    parser.add_argument("--version", action="version", version=f"nixlookup-bench {tool_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Callable[[argparse.Namespace], Report]] = {}

    def command(
        name: str, help_text: str, handler: Callable[[argparse.Namespace], Report]
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _common(sub)
        sub.add_argument(
            "--workdir", type=Path, default=None, help="where scratch files go (default: system tmp)"
        )
        sub.set_defaults(handler=handler)
        handlers[name] = handler
        return sub

    core = command("core", "the lookup core in process vs a Python set and the dense-bitset floor", _run_core)
    core.add_argument("--size", type=parse_size, default=1_500_000, help="register size (1.5M, 3M, 30M)")
    core.add_argument("--queries", type=parse_size, default=1_000_000, help="queries, half hits")
    core.add_argument("--repeats", type=int, default=5, help="best-of-N repeats per timing")

    rpc = command("rpc", "the gRPC service (unary and bulk) vs a bare grpcio server", _run_rpc)
    rpc.add_argument("--size", type=parse_size, default=1_500_000, help="register size")
    rpc.add_argument("--calls", type=parse_size, default=6_000, help="unary calls per concurrency level")
    rpc.add_argument("--repeats", type=int, default=3, help="best-of-N repeats per bulk run")
    rpc.add_argument("--bulk-numbers", type=parse_size, default=1_000_000, help="numbers per bulk bytes run")
    rpc.add_argument(
        "--security",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also a server with TLS + a bearer token, as a ratio to plaintext (default: on)",
    )
    rpc.add_argument("--text-numbers", type=parse_size, default=300_000, help="numbers per bulk texts run")
    rpc.add_argument(
        "--client-numbers", type=int, default=300_000,
        help="numbers per Client.check_batches / check_many run (0 skips the Python-client rows)",
    )  # fmt: skip
    rpc.add_argument(
        "--wash-rows", type=parse_size, default=100_000, help="rows of the CSV the client washes"
    )
    rpc.add_argument(
        "--previous-path",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also a server on the previous numpy bulk path (NIXLOOKUP_BULK_PATH=numpy): bulk bytes A/B",
    )
    rpc.add_argument(
        "--path-ab-only", action="store_true", help="run only that bulk A/B (two servers, bulk bytes)"
    )

    reload = command(
        "reload", "Check latency during reloads, snapshot reload time, delta apply rate", _run_reload
    )
    reload.add_argument("--size", type=parse_size, default=1_500_000, help="register size")
    reload.add_argument("--reloads", type=int, default=10, help="reloads, one per second, while Check runs")
    reload.add_argument("--delta-rounds", type=int, default=20, help="durable ApplyDelta calls to time")

    compare = command("compare", "nixlookup vs Redis vs a bare grpcio server vs a Python set", _run_compare)
    compare.add_argument("--size", type=parse_size, default=1_500_000, help="register size")
    compare.add_argument("--calls", type=parse_size, default=6_000, help="per-call operations per level")
    compare.add_argument("--repeats", type=int, default=3, help="best-of-N repeats per bulk run")
    compare.add_argument("--bulk-numbers", type=parse_size, default=1_000_000, help="numbers per bulk run")

    scale = command("scale", "cost per number as the register grows", _run_scale)
    scale.add_argument(
        "--sizes",
        type=parse_size,
        nargs="+",
        default=[1_500_000, 3_000_000, 30_000_000],
        help="register sizes",
    )
    scale.add_argument("--huge", action="store_true", help="also 250M numbers (needs ~10 GB and minutes)")
    scale.add_argument("--queries", type=parse_size, default=1_000_000, help="queries per size")

    guard = command(
        "guard", "<= 60 s ratio check against bench/thresholds.toml; non-zero exit on a breach", _run_guard
    )
    guard.add_argument(
        "--size",
        type=parse_size,
        default=1_500_000,
        help="register size (the budget's; the run stays < 60 s)",
    )
    guard.add_argument(
        "--thresholds", type=Path, default=None, help="thresholds file (default: the packaged one)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. As the script (`argv` None) SIGTERM/SIGHUP also stop the servers it started;
    a caller passing `argv` (tests, other tools) keeps its own signal handlers."""
    args = build_parser().parse_args(argv)
    if argv is None:
        install_signal_handlers()
    try:
        report: Report = args.handler(args)
    except KeyboardInterrupt:
        print("nixlookup-bench: interrupted; servers stopped", file=sys.stderr)
        return 130
    except (ProcessStartError, TimeoutError, FileNotFoundError) as error:
        print(f"nixlookup-bench {args.command}: could not run: {error}", file=sys.stderr)
        return 2
    except (grpc.RpcError, NixlookupClientError) as error:
        print(f"nixlookup-bench {args.command}: a call failed: {error}", file=sys.stderr)
        return 2
    except AssertionError as error:
        print(f"nixlookup-bench {args.command}: wrong answers, figures void: {error}", file=sys.stderr)
        return 2
    finally:
        stopped = stop_all()
        if stopped:
            print(f"nixlookup-bench: stopped leftover processes {stopped}", file=sys.stderr)
    written = write_report(report, args.out, plots=args.plot)
    if args.json:
        json.dump(report.to_json_obj(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_markdown(report) + "\n")
    print(f"nixlookup-bench: wrote {written.json_path} and {written.markdown_path}", file=sys.stderr)
    for path in written.plot_paths:
        print(f"nixlookup-bench: wrote {path}", file=sys.stderr)
    if args.plot and not report.plots:
        print(f"nixlookup-bench {args.command}: --plot: this command has nothing to draw (rpc, compare and "
              "scale draw charts)", file=sys.stderr)  # fmt: skip
    failed = report.figures.get("guard_failed")
    return 1 if failed else 0
