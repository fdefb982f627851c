"""`nixlookup admin ...`: reload the register, apply deltas, compact, show version history.

    nixlookup admin reload /srv/nix/register-2026-11-30.txt [--force] [--expect-version V]
    nixlookup admin reload /srv/lists/acme-optout.txt --list-kind opt-out --caller acme
    nixlookup admin apply-delta --add new.txt --remove cancelled.txt [--expect-version V]
    nixlookup admin compact [--all | --list-kind KIND --caller C]
    nixlookup admin history [--list-kind KIND --caller C]
    nixlookup admin lists ...            (the callers' lists: see `nixlookup lists --help`)

`reload` asks the server to read PATH (a file on the server, passed as an absolute path): it is validated
there (bad lines, truncation, checksum, count drop) and refused with the reason while the old version keeps
serving. `apply-delta` reads numbers as written from text or CSV files and sends them; the server answers
once the delta is durable. Every call goes through `AdminClient`. Exit status: 0 done, 1 refused by the
server, 2 usage or local file error. Numbers never appear in the output.

`register_admin_commands(subparsers)` adds the `admin` group to the `nixlookup` parser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from nixlookup.client._cli_common import (
    Handler,
    UsageError,
    add_list_kind,
    add_server_options,
    guarded,
    target_of,
    timeout_of,
)
from nixlookup.client.admin import AdminClient, list_name, list_ref
from nixlookup.client.cli_lists import add_lists_parser, read_numbers, until_day
from nixlookup.client.defaults import DEFAULT_ADMIN_TIMEOUT, DEFAULT_DELTA_CHUNK
from nixlookup.client.results import ListInfo
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import ListKind

__all__ = ["main", "register_admin_commands"]


def _admin(args: argparse.Namespace) -> AdminClient:
    return AdminClient(target_of(args), timeout=timeout_of(args, DEFAULT_ADMIN_TIMEOUT))


def _checked_ref(args: argparse.Namespace) -> lookup_pb2.ListRef:
    try:
        return list_ref(args.list_kind, args.caller or "")
    except ValueError as error:
        raise UsageError(f"{error} (--list-kind {args.list_kind}, --caller {args.caller or '-'})") from None


def _print_info(info: lookup_pb2.ListInfo) -> None:
    print(
        f"{list_name(info.list)}: version {info.version}, {info.count:,} numbers, source {info.source}"
        + (" (SYNTHETIC)" if info.synthetic else "")
    )


def _run_reload(args: argparse.Namespace) -> int:
    _checked_ref(args)
    register_date = datetime.fromisoformat(args.register_date) if args.register_date else None
    with _admin(args) as admin:
        reply = admin.reload(
            Path(args.path),
            kind=args.list_kind,
            caller=args.caller or "",
            fmt=args.format or "",
            column=args.column or "",
            until_column=args.until_column or "",
            force=args.force,
            register_date=register_date,
            expect_version=args.expect_version or "",
        )
    _print_info(reply.info)
    print(
        f"  replaced {reply.previous_version or '(new list)'}; {reply.bad_lines} bad lines skipped; "
        f"{reply.load_seconds:.3f} s"
    )
    return 0


def _run_apply_delta(args: argparse.Namespace) -> int:
    ref = _checked_ref(args)
    if not args.add and not args.remove:
        raise UsageError("give --add FILE, --remove FILE or both")
    adds = read_numbers(Path(args.add), args.column) if args.add else []
    removes = read_numbers(Path(args.remove), args.column) if args.remove else []
    chunk = max(1, args.chunk)
    if max(len(adds), len(removes)) > chunk:
        deltas = -(-max(len(adds), len(removes)) // chunk)
        print(f"{len(adds) + len(removes):,} numbers: sending {deltas} deltas of up to {chunk:,} each")
    with _admin(args) as admin:
        replies = admin.apply_delta(
            kind=args.list_kind,
            caller=args.caller or "",
            add_texts=adds,
            remove_texts=removes,
            until_day=until_day(args.until) if args.until else 0,
            expect_version=args.expect_version or "",
            chunk=chunk,
        )
    for reply in replies:
        print(
            f"{list_name(ref)}: version {reply.version} (was {reply.previous_version or '-'}): "
            f"+{reply.added:,} -{reply.removed:,}, {reply.invalid:,} invalid skipped, "
            f"{reply.count:,} numbers; durable"
        )
    return 0


def _run_compact(args: argparse.Namespace) -> int:
    if not args.all:
        _checked_ref(args)
    with _admin(args) as admin:
        compacted = admin.compact(kind=args.list_kind, caller=args.caller or "", every_list=args.all)
    if not compacted:
        print("nothing to compact: no journalled deltas")
    for info in compacted:
        print("compacted ", end="")
        _print_info(info)
    return 0


def _history_line(info: ListInfo) -> str:
    synthetic = " (SYNTHETIC)" if info.synthetic else ""
    name = list_name(list_ref(info.kind, info.caller))
    return f"{name}: version {info.version}, {info.count:,} numbers, source {info.source}{synthetic}"


def _run_history(args: argparse.Namespace) -> int:
    ref = _checked_ref(args)
    with _admin(args) as admin:
        info = admin.register_info()
    every = [info.register, *info.lists]
    chosen = [item for item in every if int(item.kind) == int(ref.kind) and item.caller == ref.caller]
    if not chosen:
        print(f"the server holds no {list_name(ref)} list")
        return 1
    print(_history_line(chosen[0]))
    for event in chosen[0].history:
        moment = event.loaded_at.isoformat(timespec="seconds") if event.loaded_at else "-"
        print(
            f"  {moment}  {event.kind:<8} {event.version:<18} {event.count:>12,}  "
            f"+{event.adds:,} -{event.removes:,}  {event.source}"
        )
    return 0


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, prefix="nixlookup admin")


def _common(parser: argparse.ArgumentParser) -> None:
    add_server_options(parser)
    add_list_kind(parser, [kind.slug for kind in ListKind], default=ListKind.REGISTER.slug)
    parser.add_argument("--caller", default="", help="the company owning the list (not for the register)")


def register_admin_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add `admin` with its subcommands to the `nixlookup` parser; returns the `admin` parser."""
    admin: argparse.ArgumentParser = subparsers.add_parser(
        "admin", help="reload the register, apply deltas, compact, history (the server's Admin service)"
    )
    commands = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")

    reload = commands.add_parser("reload", help="load a new version from a file on the server")
    _common(reload)
    reload.add_argument("path", help="text, CSV or snapshot file readable by the server")
    reload.add_argument("--force", action="store_true", help="accept a count drop beyond the server's limit")
    reload.add_argument("--format", choices=["text", "csv", "snapshot"], help="default: by content")
    reload.add_argument("--column", help="CSV column holding the numbers (default: the first)")
    reload.add_argument("--until-column", help="CSV column with each entry's end date (dated lists)")
    reload.add_argument("--expect-version", help="refuse unless this is the serving version")
    reload.add_argument("--register-date", help="the register version's date, YYYY-MM-DD (default: now)")
    reload.set_defaults(func=_guarded(_run_reload))

    delta = commands.add_parser("apply-delta", help="add and remove numbers (durable when it returns)")
    _common(delta)
    delta.add_argument("--add", metavar="FILE", help="numbers to add (text: one per line, or CSV)")
    delta.add_argument("--remove", metavar="FILE", help="numbers to remove")
    delta.add_argument("--column", help="CSV column holding the numbers (default: the first)")
    delta.add_argument("--until", help="end date YYYY-MM-DD of the added entries (dated lists)")
    delta.add_argument("--expect-version", help="refuse unless this is the serving version")
    delta.add_argument("--chunk", type=int, default=DEFAULT_DELTA_CHUNK, help="numbers per ApplyDelta")
    delta.set_defaults(func=_guarded(_run_apply_delta))

    compact = commands.add_parser("compact", help="fold journalled deltas into a new snapshot")
    _common(compact)
    compact.add_argument("--all", action="store_true", help="every list with journalled deltas")
    compact.set_defaults(func=_guarded(_run_compact))

    history = commands.add_parser("history", help="a list's serving version and its version history")
    _common(history)
    history.set_defaults(func=_guarded(_run_history))

    add_lists_parser(commands)
    return admin


def main(argv: Sequence[str] | None = None) -> int:
    """Run `nixlookup admin ...` on its own (``python -m nixlookup.client.cli_admin ...``)."""
    parser = argparse.ArgumentParser(prog="nixlookup")
    register_admin_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    handler: Handler = args.func
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
