"""`nixlookup lists ...` (also `nixlookup admin lists ...`) and `nixlookup verify-proof`.

A caller's opt-out, customer-relationship and consent lists live on the server and are changed through its
`Admin` service, durable and versioned exactly like register deltas:

    nixlookup lists add     --caller acme --kind relationship --until 2026-12-31 070-123 45 67 ...
    nixlookup lists add     --caller acme --kind opt-out --file optouts.txt
    nixlookup lists remove  --caller acme --kind consent 070-123 45 67
    nixlookup lists replace --caller acme --kind relationship --file customers.csv --until-column end
    nixlookup lists drop    --caller acme --kind opt-out
    nixlookup lists show    [--caller acme]
    nixlookup verify-proof  calls.washed.csv.proof.json

`add` and `remove` send numbers as written (the server normalises them) in chunks of `--chunk` numbers, one
durable `ApplyDelta` per chunk. `replace` asks the server to load the whole file (`Reload`), so the path must
be readable by the server: the CLI passes it as an absolute path. Numbers never appear in the output.

`register_commands(subparsers)` adds `lists` and `verify-proof` to the `nixlookup` parser;
`add_lists_parser(subparsers)` adds only `lists` (for an `admin` group). Each sets ``func`` to a callable
taking the parsed namespace and returning the exit status.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any, TextIO

import grpc
import numpy as np

from nixlookup.client._cli_guard import Handler, guarded
from nixlookup.client.proof import ProofError, verify_proof
from nixlookup.client.security import add_security_arguments, open_channel, security_from_args
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc
from nixlookup.v1.vocabulary import ListKind

__all__ = [
    "DEFAULT_SERVER",
    "KIND_BY_SLUG",
    "add_lists_parser",
    "add_verify_proof_parser",
    "read_numbers",
    "register_commands",
    "until_day",
]

DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_TIMEOUT_SECONDS = 60.0  # a durable delta of 100k numbers or a reload of millions fits well inside
DEFAULT_CHUNK = 100_000  # numbers per ApplyDelta: ~2 MB of texts, under gRPC's 4 MB default message limit

KIND_BY_SLUG: dict[str, lookup_pb2.ListKind.ValueType] = {
    kind.slug: lookup_pb2.ListKind.ValueType(kind) for kind in ListKind if kind is not ListKind.REGISTER
}
"""A caller's list kinds by their one CLI spelling (`nixlookup.v1.vocabulary.ListKind.slug`)."""
_SLUG_BY_KIND = {value: slug for slug, value in KIND_BY_SLUG.items()}
_EPOCH = date(1970, 1, 1)


class UsageError(ValueError):
    """The command line asks for something that cannot be done; the message says what to change."""


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


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _list_ref(args: argparse.Namespace) -> lookup_pb2.ListRef:
    if not args.caller:
        raise UsageError("--caller must name the company whose list this is")
    return lookup_pb2.ListRef(kind=KIND_BY_SLUG[args.kind], caller=args.caller)


def _describe(ref: lookup_pb2.ListRef) -> str:
    return f"{ref.caller} {_SLUG_BY_KIND.get(ref.kind, str(ref.kind))}"


def _numbers_from_args(args: argparse.Namespace) -> list[str]:
    if bool(args.numbers) == bool(args.file):
        raise UsageError("give the numbers either on the command line or with --file, not both or neither")
    if args.file:
        return read_numbers(Path(args.file), args.column)
    return [str(number) for number in args.numbers]


def _target(args: argparse.Namespace) -> str:
    return getattr(args, "target", None) or os.environ.get("NIXLOOKUP_TARGET") or DEFAULT_SERVER


def _timeout(args: argparse.Namespace) -> float:
    timeout = getattr(args, "timeout", None)
    return float(timeout) if timeout is not None else DEFAULT_TIMEOUT_SECONDS


def _admin(args: argparse.Namespace) -> tuple[grpc.Channel, lookup_pb2_grpc.AdminStub]:
    channel = open_channel(_target(args), security_from_args(args))
    return channel, lookup_pb2_grpc.AdminStub(channel)


def _run_add_or_remove(args: argparse.Namespace) -> int:
    ref = _list_ref(args)
    adding = args.command_name == "add"
    if args.until and not adding:
        raise UsageError("--until only applies to `lists add`")
    if args.until and ref.kind == lookup_pb2.LIST_KIND_OPT_OUT:
        raise UsageError("an opt-out has no end date; --until applies to relationship and consent lists")
    numbers = _numbers_from_args(args)
    end_day = until_day(args.until) if args.until else 0
    channel, admin = _admin(args)
    added = removed = invalid = 0
    version = previous = ""
    count = 0
    with channel:
        for chunk in _chunks(numbers, args.chunk):
            request = lookup_pb2.ApplyDeltaRequest(list=ref, expect_version=args.expect_version or "")
            if adding:
                request.add_texts.extend(chunk)
                if end_day:
                    request.add_until_days_le = np.full(len(chunk), end_day, dtype="<u4").tobytes()
            else:
                request.remove_texts.extend(chunk)
            response = admin.ApplyDelta(request, timeout=_timeout(args))
            previous = previous or response.previous_version
            version = response.version
            added += response.added
            removed += response.removed
            invalid += response.invalid
            count = response.count
            request.expect_version = ""  # only the first chunk checks the version the user saw
    print(
        f"{_describe(ref)}: version {version} (was {previous or '-'}): +{added} -{removed}, "
        f"{count} numbers, {invalid} invalid not applied"
    )
    return 0


def _run_replace(args: argparse.Namespace) -> int:
    ref = _list_ref(args)
    path = Path(args.file).resolve()
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    channel, admin = _admin(args)
    with channel:
        response = admin.Reload(
            lookup_pb2.ReloadRequest(
                list=ref,
                path=str(path),
                format=args.format or "",
                column=args.column or "",
                until_column=args.until_column or "",
                force=args.force,
                expect_version=args.expect_version or "",
            ),
            timeout=_timeout(args),
        )
    print(
        f"{_describe(ref)}: version {response.info.version} (was {response.previous_version or '-'}): "
        f"{response.info.count} numbers, {response.bad_lines} bad lines, {response.load_seconds:.2f} s"
    )
    return 0


def _run_drop(args: argparse.Namespace) -> int:
    ref = _list_ref(args)
    channel, admin = _admin(args)
    with channel:
        response = admin.DropList(lookup_pb2.DropListRequest(list=ref), timeout=_timeout(args))
    print(f"{_describe(ref)}: dropped (last version {response.last_version or '-'})")
    return 0


def _run_show(args: argparse.Namespace) -> int:
    with open_channel(_target(args), security_from_args(args)) as channel:
        info = lookup_pb2_grpc.LookupStub(channel).GetRegisterInfo(
            lookup_pb2.GetRegisterInfoRequest(), timeout=_timeout(args)
        )
    shown = [item for item in info.lists if not args.caller or item.list.caller == args.caller]
    if not shown:
        print("no caller lists" + (f" for {args.caller}" if args.caller else ""))
    for item in sorted(shown, key=lambda item: (item.list.caller, item.list.kind)):
        print(f"{_describe(item.list)}: version {item.version}, {item.count} numbers, source {item.source}")
    return 0


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, prefix="nixlookup lists", usage_errors=(UsageError,))


def _common(parser: argparse.ArgumentParser, *, kind_required: bool = True) -> None:
    # SUPPRESS: a --target/--timeout given before the command name (the top-level parser's) is kept.
    parser.add_argument(
        "--target",
        default=argparse.SUPPRESS,
        metavar="HOST:PORT",
        help=f"server address (default: $NIXLOOKUP_TARGET or {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS,
        help=f"deadline per RPC in seconds (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    add_security_arguments(parser)
    parser.add_argument("--caller", required=kind_required, default="", help="the company id owning the list")
    if kind_required:
        parser.add_argument("--kind", required=True, choices=sorted(KIND_BY_SLUG), help="which list")


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
        parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="numbers per ApplyDelta")
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
        print(("OK       " if check.ok else "MISMATCH ") + check.message)
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
    parser = argparse.ArgumentParser(prog="nixlookup")
    register_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    handler: Handler = args.func
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
