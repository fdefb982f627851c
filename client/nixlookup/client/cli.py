"""`nixlookup`: the command line of the client: check numbers, wash call lists, show the register.

    nixlookup check 070-123 45 67 +46 8 123 456 78 [--caller acme] [--purpose sales] [--json]
    nixlookup wash calls.csv --column phone --output washed.csv [--caller acme] [--purpose sales]
    nixlookup info [--json]

Every command takes ``--target HOST:PORT`` (env ``NIXLOOKUP_TARGET``, default 127.0.0.1:50051) and
``--timeout SECONDS``, before or after the command name. Exit status: 0 done, 1 the server refused or
could not be reached (the message says what to do), 2 a usage or local file error.

Adding commands from another module (the hook): list the module's registration function in `PLUGINS`
below. It is called as ``register(subparsers)`` with the top-level argparse subparsers object; each
command it adds sets ``func`` (via ``set_defaults``) to a callable taking the parsed `argparse.Namespace`
and returning the exit status. ``--target`` and ``--timeout`` (top level or the command's own, see
`_cli_common.add_server_options`) reach it as ``args.target`` / ``args.timeout``. A plugin module that
fails to import is reported, not fatal to the other commands.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from nixlookup.client._cli_common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    Handler,
    add_server_options,
    target_of,
    timeout_of,
)
from nixlookup.client.defaults import DEFAULT_BATCH_SIZE, DEFAULT_STREAM_TIMEOUT, DEFAULT_TIMEOUT
from nixlookup.client.errors import NixlookupClientError
from nixlookup.client.results import CheckResult, ListInfo, RegisterInfo
from nixlookup.client.sync import Client
from nixlookup.client.wash import WashError, WashSummary, print_progress, wash
from nixlookup.v1.vocabulary import LineType, Purpose, Verdict

__all__ = ["PLUGINS", "build_parser", "main"]

PLUGINS: tuple[str, ...] = (
    "nixlookup.client.cli_admin:register_admin_commands",
    "nixlookup.client.cli_lists:register_commands",
)
"""``module:function`` registering more subcommands (see the module doc)."""


def _purpose(text: str) -> Purpose:
    try:
        return Purpose.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _command_options() -> argparse.ArgumentParser:
    """--target and --timeout for each command (without defaults: see `add_server_options`)."""
    common = argparse.ArgumentParser(add_help=False)
    add_server_options(common)
    return common


def _add_caller_purpose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--caller", default="", help="company id selecting its own lists (default: none)")
    parser.add_argument(
        "--purpose",
        type=_purpose,
        default=Purpose.SALES,
        help="sales (default), marketing, fundraising, market-research, public-information, political, "
        "religious, public-interest",
    )


def build_parser() -> argparse.ArgumentParser:
    """The `nixlookup` parser with its own commands and the plugins' commands."""
    parser = argparse.ArgumentParser(
        prog="nixlookup",
        description="Check phone numbers against the NIX-Telefon register served by nixlookup-server.",
    )
    add_server_options(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _command_options()

    check = commands.add_parser("check", parents=[common], help="check numbers, one line per number")
    check.add_argument("numbers", nargs="+", metavar="NUMBER", help="numbers as written (quote spaces)")
    _add_caller_purpose(check)
    check.add_argument("--json", action="store_true", help="one JSON object per line")
    check.set_defaults(func=_run_check)

    washer = commands.add_parser("wash", parents=[common], help="wash a CSV call list of any size")
    washer.add_argument("input", type=Path, metavar="INPUT.csv", help="CSV with a header row")
    washer.add_argument("--output", "-o", type=Path, required=True, metavar="OUT.csv", help="washed CSV")
    washer.add_argument("--column", default="phone", help="column holding the numbers (default: phone)")
    washer.add_argument("--delimiter", help="field separator (default: sniffed from the file)")
    washer.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="numbers per batch (server max 100000)"
    )
    washer.add_argument("--no-proof", action="store_true", help="do not write OUT.csv.proof.json")
    washer.add_argument("--no-progress", action="store_true", help="no progress line even on a terminal")
    _add_caller_purpose(washer)
    washer.set_defaults(func=_run_wash)

    info = commands.add_parser("info", parents=[common], help="the register's and lists' versions")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_run_info)

    for spec in PLUGINS:
        module_name, _, function_name = spec.partition(":")
        try:
            register = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as error:
            print(f"nixlookup: commands from {module_name} unavailable: {error}", file=sys.stderr)
            continue
        register(commands)
    return parser


# -- commands ---------------------------------------------------------------------------------------------
def _client(args: argparse.Namespace) -> Client:
    return Client(
        target_of(args),
        timeout=timeout_of(args, DEFAULT_TIMEOUT),
        stream_timeout=timeout_of(args, DEFAULT_STREAM_TIMEOUT),
    )


def _date(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment is not None else "-"


def _check_line(number: str, result: CheckResult) -> str:
    line_type = "-" if result.line_type is LineType.UNSPECIFIED else result.line_type.name
    e164 = f"+{result.e164}" if result.e164 else "-"
    until = f"valid until {_date(result.valid_until)}" if result.valid_until else result.detail
    # Swedma/Kontakta: marketing calls to mobiles only to existing customers. A flag, not a verdict, and
    # only news when the call is otherwise allowed (--json carries the raw flag for every answer).
    flag = "\tmobile without relationship" if result.mobile_flag and result.verdict is Verdict.ALLOWED else ""
    return f"{number}\t{result.verdict.name}\t{result.reason.name}\t{e164}\t{line_type}\t{until}{flag}"


def _check_json(number: str, result: CheckResult) -> str:
    return json.dumps(
        {
            "number": number,
            "verdict": result.verdict.name,
            "reason": result.reason.name,
            "e164": result.e164 or None,
            "line_type": result.line_type.name,
            "register_version": result.register_version,
            "valid_until": result.valid_until.isoformat() if result.valid_until else None,
            "mobile_flag": result.mobile_flag,
            "detail": result.detail,
        },
        ensure_ascii=False,
    )


def _run_check(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for number in args.numbers:
            result = client.check(number, caller=args.caller, purpose=args.purpose)
            print(_check_json(number, result) if args.json else _check_line(number, result))
    return 0


def _summary_line(summary: WashSummary) -> str:
    versions = ", ".join(summary.register_versions) or "-"
    return (
        f"washed {summary.rows:,} rows in {summary.elapsed_seconds:.2f} s "
        f"({summary.rows_per_second:,.0f} rows/s): {summary.blocked:,} blocked, {summary.invalid:,} invalid, "
        f"{summary.allowed:,} allowed; {summary.mobile_flagged:,} flagged mobile without relationship; "
        f"register version {versions}; output {summary.output_path}"
    )


def _run_wash(args: argparse.Namespace) -> int:
    from nixlookup.client.proof import ProofCollector, proof_path_for, write_proof

    if not args.input.is_file():
        print(f"nixlookup wash: {args.input} does not exist or is not a file", file=sys.stderr)
        return EXIT_USAGE
    collector = ProofCollector(caller=args.caller, purpose=int(args.purpose), server=target_of(args))
    show_progress = sys.stderr.isatty() and not args.no_progress
    with _client(args) as client:
        summary = wash(
            client,
            args.input,
            args.output,
            column=args.column,
            caller=args.caller,
            purpose=args.purpose,
            delimiter=args.delimiter,
            batch_size=args.batch_size,
            observers=() if args.no_proof else (collector.observe,),
            progress=print_progress() if show_progress else None,
        )
    if show_progress:
        print(file=sys.stderr)
    print(_summary_line(summary))
    if not args.no_proof:
        proof = write_proof(
            collector.record(input_path=args.input, output_path=args.output, finished_at=summary.finished_at),
            proof_path_for(args.output),
        )
        print(f"proof record {proof}")
    return 0


def _list_line(info: ListInfo) -> str:
    name = "register" if not info.caller else f"{info.kind.slug} of {info.caller}"
    synthetic = "  SYNTHETIC (made-up numbers, not the NIX register)" if info.synthetic else ""
    return (
        f"{name}: version {info.version}, {info.count:,} numbers, register date {_date(info.register_date)}, "
        f"loaded {info.loaded_at.isoformat(timespec='seconds') if info.loaded_at else '-'}, "
        f"source {info.source}{synthetic}"
    )


def _info_json(info: RegisterInfo) -> dict[str, Any]:
    def one(item: ListInfo) -> dict[str, Any]:
        return {
            "kind": item.kind.name,
            "caller": item.caller,
            "version": item.version,
            "source": item.source,
            "count": item.count,
            "register_date": item.register_date.isoformat() if item.register_date else None,
            "loaded_at": item.loaded_at.isoformat() if item.loaded_at else None,
            "checksum": item.checksum,
            "synthetic": item.synthetic,
            "index_bytes": item.index_bytes,
            "history": [
                {"version": h.version, "kind": h.kind, "count": h.count, "adds": h.adds, "removes": h.removes}
                for h in item.history
            ],
        }

    return {
        "register": one(info.register),
        "lists": [one(item) for item in info.lists],
        "server_version": info.server_version,
        "server_started_at": info.server_started_at.isoformat() if info.server_started_at else None,
    }


def _run_info(args: argparse.Namespace) -> int:
    with _client(args) as client:
        info = client.register_info()
    if args.json:
        print(json.dumps(_info_json(info), indent=2, ensure_ascii=False))
        return 0
    print(_list_line(info.register))
    for entry in info.register.history[:5]:
        print(
            f"  {entry.kind:<8} {entry.version}  {entry.count:,} numbers (+{entry.adds:,} -{entry.removes:,})"
        )
    for item in info.lists:
        print(_list_line(item))
    started = info.server_started_at.isoformat(timespec="seconds") if info.server_started_at else "-"
    print(f"server: nixlookup {info.server_version}, started {started}, at {target_of(args)}")
    return 0


# -- entry point ------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nixlookup``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    handler: Handler = args.func
    try:
        return handler(args)
    except NixlookupClientError as error:
        print(f"nixlookup {args.command}: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except (WashError, OSError) as error:
        print(f"nixlookup {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"nixlookup {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
