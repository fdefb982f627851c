"""`nixlookup-bench` (also `python -m nixlookup.bench`): the benchmark harness's command line.

Subcommands: core, rpc, ab, reload, compare, scale, replica, guard. Every run writes `<command>-<time>.json`
and `.md` (and `<command>-latest.*`) under `--output` (default `bench-results/`), PNG charts with `--plot`,
prints the Markdown tables (or, with `--json`, the JSON object) on stdout and progress on stderr. Every
server it starts is stopped by pid when the run ends, also on Ctrl-C, SIGTERM or failure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import grpc

from nixlookup.bench.procs import ProcessStartError, install_signal_handlers, stop_all
from nixlookup.bench.report import Report, render_markdown, write_report
from nixlookup.client.errors import NixlookupClientError
from nixlookup.client.proof import tool_version

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["build_parser", "main", "parse_size"]

_Settings = TypeVar("_Settings", bound="DataclassInstance")

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
        "-o",
        "--output",
        dest="out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="directory for JSON/Markdown/PNG results",
    )
    # --output (-o) is where `nixlookup wash` writes too; --out was this command's first spelling.
    parser.add_argument("--out", dest="out", type=Path, default=DEFAULT_OUT, help=argparse.SUPPRESS)
    parser.add_argument(
        "--json", action="store_true", help="print the JSON object on stdout (not the tables)"
    )
    parser.add_argument("--plot", action="store_true", help="also write PNG charts (matplotlib)")
    parser.add_argument("--seed", type=int, default=20080101, help="seed of the register and the queries")


def _per_call_and_bulk(parser: argparse.ArgumentParser, *, calls_help: str, bulk_help: str) -> None:
    """--size, --calls, --repeats, --bulk-numbers: the flags `rpc` and `compare` share."""
    parser.add_argument("--size", type=parse_size, default=1_500_000, help="register size")
    parser.add_argument(
        "--calls", type=parse_size, default=6_000, dest="unary_calls", metavar="CALLS", help=calls_help
    )
    parser.add_argument(
        "--repeats", type=int, default=3, dest="bulk_repeats", metavar="REPEATS",
        help="best-of-N repeats per bulk run",
    )  # fmt: skip
    parser.add_argument("--bulk-numbers", type=parse_size, default=1_000_000, help=bulk_help)


def _settings(args: argparse.Namespace, settings: type[_Settings]) -> _Settings:
    """A command's settings from its parsed flags: each flag's ``dest`` is the settings field it sets."""
    given = {field.name: getattr(args, field.name) for field in fields(settings) if hasattr(args, field.name)}
    return settings(**given)


def _run_core(args: argparse.Namespace) -> Report:
    from nixlookup.bench.core import CoreSettings, run_core

    return run_core(_settings(args, CoreSettings), workdir=args.workdir)


def _run_rpc(args: argparse.Namespace) -> Report:
    from nixlookup.bench.rpc import RpcSettings, run_rpc

    return run_rpc(_settings(args, RpcSettings), workdir=args.workdir)


def _run_ab(args: argparse.Namespace) -> Report:
    from nixlookup.bench.ab import ab_settings, run_ab

    settings = ab_settings(
        args.baseline_python,
        size=args.size,
        seed=args.seed,
        unary_calls=args.calls,
        unary_repeats=args.unary_repeats,
        bulk_repeats=args.repeats,
        bulk_numbers=args.bulk_numbers,
        text_numbers=args.text_numbers,
    )
    return run_ab(settings, workdir=args.workdir)


def _run_reload(args: argparse.Namespace) -> Report:
    from nixlookup.bench.reload import ReloadSettings, run_reload

    return run_reload(_settings(args, ReloadSettings), workdir=args.workdir)


def _run_compare(args: argparse.Namespace) -> Report:
    from nixlookup.bench.compare import CompareSettings, run_compare

    return run_compare(_settings(args, CompareSettings), workdir=args.workdir)


def _run_scale(args: argparse.Namespace) -> Report:
    from nixlookup.bench.scale import ScaleSettings, run_scale

    sizes = tuple(args.sizes) + ((250_000_000,) if args.huge else ())
    return run_scale(ScaleSettings(sizes=sizes, seed=args.seed, queries=args.queries), workdir=args.workdir)


def _run_replica(args: argparse.Namespace) -> Report:
    from nixlookup.bench.replica import ReplicaSettings, run_replica

    return run_replica(
        ReplicaSettings(
            size=args.size,
            seed=args.seed,
            local_calls=args.calls,
            remote_calls=args.remote_calls,
            list_size=args.list_size,
            deltas=args.deltas,
            repeats=args.repeats,
        ),
        workdir=args.workdir,
    )


def _run_guard(args: argparse.Namespace) -> Report:
    from nixlookup.bench.guard import GuardSettings, run_guard

    return run_guard(_settings(args, GuardSettings))


def _ab_options(ab: argparse.ArgumentParser) -> None:
    ab.add_argument(
        "--baseline-python", required=True,
        help="the interpreter of the baseline build's virtualenv (e.g. /tmp/base/.venv/bin/python)",
    )  # fmt: skip
    ab.add_argument("--size", type=parse_size, default=1_500_000, help="register size")
    ab.add_argument("--calls", type=parse_size, default=6_000, help="unary calls per level and run")
    ab.add_argument("--unary-repeats", type=int, default=3, help="best-of-N unary runs per level and build")
    ab.add_argument("--repeats", type=int, default=3, help="best-of-N repeats per bulk run")
    ab.add_argument("--bulk-numbers", type=parse_size, default=1_000_000, help="numbers per bulk bytes run")
    ab.add_argument("--text-numbers", type=parse_size, default=300_000, help="numbers per bulk texts run")


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
    _per_call_and_bulk(
        rpc, calls_help="unary calls per concurrency level", bulk_help="numbers per bulk bytes run"
    )
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

    _ab_options(
        command("ab", "this build's server vs another build's, interleaved in one run (A/B)", _run_ab)
    )

    reload = command(
        "reload", "Check latency during reloads, snapshot reload time, delta apply rate", _run_reload
    )
    reload.add_argument("--size", type=parse_size, default=1_500_000, help="register size")
    reload.add_argument("--reloads", type=int, default=10, help="reloads, one per second, while Check runs")
    reload.add_argument("--delta-rounds", type=int, default=20, help="durable ApplyDelta calls to time")

    compare = command("compare", "nixlookup vs Redis vs a bare grpcio server vs a Python set", _run_compare)
    _per_call_and_bulk(compare, calls_help="per-call operations per level", bulk_help="numbers per bulk run")

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

    replica = command(
        "replica",
        "LocalReplica per-call checks from memory vs gRPC Check and Redis SISMEMBER; convergence; memory",
        _run_replica,
    )
    replica.add_argument("--size", type=parse_size, default=1_500_000, help="register size")
    replica.add_argument("--calls", type=parse_size, default=50_000, help="replica checks per timed loop")
    replica.add_argument("--remote-calls", type=parse_size, default=3_000, help="gRPC / Redis calls per loop")
    replica.add_argument("--list-size", type=parse_size, default=20_000, help="numbers on each caller list")
    replica.add_argument("--deltas", type=int, default=100, help="deltas timed for convergence")
    replica.add_argument("--repeats", type=int, default=3, help="best-of-N repeats per per-call loop")

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
        "--thresholds",
        type=Path,
        default=None,
        dest="thresholds_path",
        metavar="THRESHOLDS",
        help="thresholds file (default: the packaged one)",
    )
    from nixlookup.bench import scaleout  # its own module: scale-out registers itself

    scaleout.add_command(command)
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
