"""`nixlookup lists ...` (also `nixlookup admin lists ...`) and `nixlookup verify-proof`.

A caller's opt-out, customer-relationship and consent lists live on the server and are changed through its
`Admin` service (`AdminClient`), durable and versioned exactly like register deltas:

    nixlookup lists add     --caller acme --list-kind relationship --until 2026-12-31 070-123 45 67 ...
    nixlookup lists add     --caller acme --list-kind opt-out --file optouts.txt
    nixlookup lists remove  --caller acme --list-kind consent 070-123 45 67
    nixlookup lists replace --caller acme --list-kind relationship --file customers.csv --until-column end
    nixlookup lists drop    --caller acme --list-kind opt-out
    nixlookup lists show    [--caller acme]
    nixlookup verify-proof  calls.washed.csv.proof.json

`add` and `remove` send numbers as written (the server normalises them) in chunks of `--chunk` numbers, one
durable `ApplyDelta` per chunk. `replace` asks the server to load the whole file (`Reload`), so the path must
be readable by the server: the CLI passes it as an absolute path. Numbers never appear in the output.
(``--kind`` is a deprecated alias of ``--list-kind`` here.)

`register_commands(subparsers)` adds `lists` and `verify-proof` to the `nixlookup` parser;
`add_lists_parser(subparsers)` adds only `lists` (for an `admin` group). Each sets ``func`` to a callable
taking the parsed namespace and returning the exit status.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from nixlookup.client._cli_common import (
    Handler,
    UsageError,
    add_batch_size,
    add_list_kind,
    add_server_options,
    admin_of,
    guarded,
    run_alone,
)
from nixlookup.client.admin import CALLER_LIST_KINDS, list_name, list_ref
from nixlookup.client.proof import ProofError, verify_proof

__all__ = [
    "CALLER_LIST_SLUGS",
    "add_lists_parser",
    "add_verify_proof_parser",
    "read_numbers",
    "register_commands",
    "until_day",
]

CALLER_LIST_SLUGS = tuple(kind.slug for kind in CALLER_LIST_KINDS)
"""The `--list-kind` values of `nixlookup lists`."""
_EPOCH = date(1970, 1, 1)


def until_day(text: str) -> int:
    """YYYY-MM-DD as days since 1970-01-01 (the lists' end-date encoding)."""
    try:
        value = date.fromisoformat(text)
    except ValueError as error:
        raise UsageError(f"--until {text!r} is not a date of the form YYYY-MM-DD") from error
    day = (value - _EPOCH).days
    if day <= 0:
        raise UsageError(f"--until {text} is not after 1970-01-01")
    return day


def read_numbers(path: Path, column: str | None = None) -> list[str]:
    """Numbers from a text file (one per line, blank and '#' lines skipped) or a CSV file (`column`)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if column is None and path.suffix.lower() != ".csv":
            return [s for line in handle if (s := line.strip()) and not s.startswith("#")]
        return _csv_numbers(handle, column, path)


def _csv_numbers(handle: TextIO, column: str | None, path: Path) -> list[str]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        return []
    if column is None:
        position = 0
    elif column in header:
        position = header.index(column)
    else:
        raise UsageError(f"{path} has no column {column!r}; its columns are {', '.join(header)}")
    return [row[position].strip() for row in reader if len(row) > position and row[position].strip()]


def _kind_and_caller(args: argparse.Namespace) -> tuple[str, str]:
    if not args.caller:
        raise UsageError("--caller must name the company whose list this is")
    if args.list_kind is None:
        raise UsageError(f"--list-kind is required: one of {', '.join(CALLER_LIST_SLUGS)}")
    return args.list_kind, args.caller


def _numbers_from_args(args: argparse.Namespace) -> list[str]:
    if bool(args.numbers) == bool(args.file):
        raise UsageError("give the numbers either on the command line or with --file, not both or neither")
    if args.file:
        return read_numbers(Path(args.file), args.column)
    return [str(number) for number in args.numbers]


def _run_add_or_remove(args: argparse.Namespace) -> int:
    kind, caller = _kind_and_caller(args)
    adding = args.command_name == "add"
    if args.until and not adding:
        raise UsageError("--until only applies to `lists add`")
    if args.until and kind == "opt-out":
        raise UsageError("an opt-out has no end date; --until applies to relationship and consent lists")
    numbers = _numbers_from_args(args)
    end_day = until_day(args.until) if args.until else 0
    with admin_of(args) as admin:
        replies = admin.apply_delta(
            kind=kind,
            caller=caller,
            add_texts=numbers if adding else (),
            remove_texts=() if adding else numbers,
            until_day=end_day,
            expect_version=args.expect_version or "",
            chunk=args.chunk,
        )
    added = sum(reply.added for reply in replies)
    removed = sum(reply.removed for reply in replies)
    invalid = sum(reply.invalid for reply in replies)
    print(
        f"{list_name(list_ref(kind, caller))}: version {replies[-1].version} "
        f"(was {replies[0].previous_version or '-'}): +{added} -{removed}, "
        f"{replies[-1].count} numbers, {invalid} invalid not applied"
    )
    return 0


def _run_replace(args: argparse.Namespace) -> int:
    kind, caller = _kind_and_caller(args)
    path = Path(args.file).resolve()
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    with admin_of(args) as admin:
        reply = admin.reload(
            path,
            kind=kind,
            caller=caller,
            fmt=args.format or "",
            column=args.column or "",
            until_column=args.until_column or "",
            force=args.force,
            expect_version=args.expect_version or "",
        )
    print(
        f"{list_name(reply.info.list)}: version {reply.info.version} (was {reply.previous_version or '-'}): "
        f"{reply.info.count} numbers, {reply.bad_lines} bad lines, {reply.load_seconds:.2f} s"
    )
    return 0


def _run_drop(args: argparse.Namespace) -> int:
    kind, caller = _kind_and_caller(args)
    with admin_of(args) as admin:
        last = admin.drop(kind=kind, caller=caller)
    print(f"{list_name(list_ref(kind, caller))}: dropped (last version {last or '-'})")
    return 0


def _run_show(args: argparse.Namespace) -> int:
    with admin_of(args) as admin:
        info = admin.register_info()
    shown = [item for item in info.lists if not args.caller or item.caller == args.caller]
    if not shown:
        print("no caller lists" + (f" for {args.caller}" if args.caller else ""))
    for item in sorted(shown, key=lambda item: (item.caller, item.kind)):
        name = list_name(list_ref(item.kind, item.caller))
        print(f"{name}: version {item.version}, {item.count} numbers, source {item.source}")
    return 0


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, prefix="nixlookup lists")


def _common(parser: argparse.ArgumentParser, *, kind_required: bool = True) -> None:
    add_server_options(parser)
    parser.add_argument("--caller", required=kind_required, default="", help="the company id owning the list")
    if kind_required:
        add_list_kind(parser, CALLER_LIST_SLUGS, deprecated_alias="--kind")


def add_lists_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `lists` with its subcommands to an argparse subparsers object; returns the `lists` parser."""
    lists: argparse.ArgumentParser = subparsers.add_parser(
        "lists", help="manage a caller's opt-out, relationship and consent lists"
    )
    commands = lists.add_subparsers(dest="lists_command", required=True, metavar="COMMAND")
    for name, help_text in (("add", "add numbers to a list"), ("remove", "remove numbers from a list")):
        parser = commands.add_parser(name, help=help_text)
        _common(parser)
        parser.add_argument("numbers", nargs="*", metavar="NUMBER", help="numbers as written")
        parser.add_argument("--file", help="read the numbers from a text file or a CSV file")
        parser.add_argument("--column", help="CSV column holding the numbers (default: the first)")
        add_batch_size(parser)
        parser.add_argument("--expect-version", help="refuse unless this is the list's serving version")
        if name == "add":
            parser.add_argument("--until", help="end date YYYY-MM-DD (relationship end, consent expiry)")
        parser.set_defaults(func=_guarded(_run_add_or_remove), command_name=name, until=None)

    replace = commands.add_parser("replace", help="replace a list with a file the server loads")
    _common(replace)
    replace.add_argument("--file", required=True, help="text, CSV or snapshot file readable by the server")
    replace.add_argument("--format", choices=["text", "csv", "snapshot"], help="default: by content")
    replace.add_argument("--column", help="CSV column holding the numbers")
    replace.add_argument("--until-column", help="CSV column holding each entry's end date (YYYY-MM-DD)")
    replace.add_argument("--force", action="store_true", help="accept a large drop in the count")
    replace.add_argument("--expect-version", help="refuse unless this is the list's serving version")
    replace.set_defaults(func=_guarded(_run_replace))

    drop = commands.add_parser("drop", help="drop a caller's list entirely")
    _common(drop)
    drop.set_defaults(func=_guarded(_run_drop))

    show = commands.add_parser("show", help="show the callers' lists the server holds")
    _common(show, kind_required=False)
    show.set_defaults(func=_guarded(_run_show))
    return lists


def _run_verify_proof(args: argparse.Namespace) -> int:
    try:
        record, checks = verify_proof(Path(args.proof))
    except (ProofError, OSError) as error:
        print(f"nixlookup verify-proof: {error}", file=sys.stderr)
        return 2
    for check in checks:
        print(("WARNING  " if check.warning else "OK       " if check.ok else "MISMATCH ") + check.message)
    if record.synthetic_register:
        print(
            "WARNING  the register it was washed against was SYNTHETIC (made-up numbers, not the NIX "
            "register): this proof shows no real check"
        )
    if all(check.ok for check in checks):
        print(
            f"proof holds: {record.rows_total} rows checked for {record.caller or '(no caller)'} "
            f"({record.purpose}) between {record.started_at} and {record.finished_at}"
        )
        return 0
    print("proof does NOT hold for the files above", file=sys.stderr)
    return 1


def add_verify_proof_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `verify-proof PROOF` (exit 0: digests match; 1: a file differs or is missing; 2: bad proof)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "verify-proof", help="re-check the SHA-256 digests a wash's proof record names"
    )
    parser.add_argument("proof", help="the proof record, e.g. OUT.csv.proof.json")
    parser.set_defaults(func=_run_verify_proof)
    return parser


def register_commands(subparsers: Any) -> None:
    """Add `lists` and `verify-proof` to the top-level `nixlookup` parser."""
    add_lists_parser(subparsers)
    add_verify_proof_parser(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    """Run these subcommands on their own (`python -m nixlookup.client.cli_lists ...`)."""
    return run_alone(register_commands, argv)


if __name__ == "__main__":
    sys.exit(main())
