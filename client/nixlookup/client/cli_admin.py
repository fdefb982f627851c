"""`nixlookup admin ...`: reload the register, apply deltas, compact, show version history.

    nixlookup admin reload /srv/nix/register-2026-11-30.txt [--force] [--expect-version V]
    nixlookup admin reload /srv/lists/acme-optout.txt --list-kind opt-out --caller acme
    nixlookup admin apply-delta --add new.txt --remove cancelled.txt [--expect-version V]
    nixlookup admin compact [--all | --list-kind KIND --caller C]
    nixlookup admin history [--list-kind KIND --caller C]
    nixlookup admin upload FILE [--list-kind KIND --caller C] [--force]   (send the file's bytes)
    nixlookup admin audit [--limit N] [--since DATE]                      (role admin)
    nixlookup admin usage [--principal P]                                 (role admin)
    nixlookup admin lists ...            (the callers' lists: see `nixlookup lists --help`)

`reload` asks the server to read PATH (a file on the server, passed as an absolute path): it is validated
there (bad lines, truncation, checksum, count drop) and refused with the reason while the old version keeps
serving. `apply-delta` reads numbers as written from text or CSV files and sends them; the server answers
once the delta is durable. `upload` sends a file from this machine instead (a server with an auth file
reads no paths unless it has --reload-root). Every command takes ``--token-file``/``$NIXLOOKUP_TOKEN``
and ``--tls-ca``/``--tls-cert``/``--tls-key`` (docs/security.md). Every call goes through `AdminClient`.
Exit status: 0 done, 1 refused by the server, 2 usage or local file error. Numbers never appear in the output.

`register_admin_commands(subparsers)` adds the `admin` group to the `nixlookup` parser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from nixlookup.client.admin import list_name, list_ref
from nixlookup.client.cli_lists import add_lists_parser, read_numbers, until_day
from nixlookup.client.results import ListInfo
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import ListKind

__all__ = ["main", "register_admin_commands"]


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


def _file_options(args: argparse.Namespace) -> dict[str, Any]:
    """What `reload` and `upload` both say about the file and the list it replaces."""
    return {
        "kind": args.list_kind,
        "caller": args.caller or "",
        "fmt": args.format or "",
        "column": args.column or "",
        "until_column": args.until_column or "",
        "force": args.force,
        "expect_version": args.expect_version or "",
    }


def _print_reload(reply: lookup_pb2.ReloadResponse) -> int:
    _print_info(reply.info)
    print(
        f"  replaced {reply.previous_version or '(new list)'}; {reply.bad_lines} bad lines skipped; "
        f"{reply.load_seconds:.3f} s"
    )
    return 0


def _run_reload(args: argparse.Namespace) -> int:
    _checked_ref(args)
    register_date = datetime.fromisoformat(args.register_date) if args.register_date else None
    with admin_of(args) as admin:
        reply = admin.reload(Path(args.path), register_date=register_date, **_file_options(args))
    return _print_reload(reply)


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
    with admin_of(args) as admin:
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
    with admin_of(args) as admin:
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


def _run_upload(args: argparse.Namespace) -> int:
    _checked_ref(args)
    with admin_of(args) as admin:
        reply = admin.upload(Path(args.path), **_file_options(args))
    return _print_reload(reply)


def _seconds_iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _run_audit(args: argparse.Namespace) -> int:
    since = datetime.fromisoformat(args.since) if args.since else None
    with admin_of(args) as admin:
        log = admin.audit_log(limit=args.limit, since=since)
    for record in log.records:
        target = list_name(record.list) if record.HasField("list") else "-"
        counts = " ".join(f"{name}={value}" for name, value in sorted(record.counts.items()))
        versions = f"{record.version_before or '-'} -> {record.version_after or '-'}"
        print(
            f"{_seconds_iso(record.time.seconds)}  {record.principal:<16} {record.operation:<10} "
            f"{target:<22} {record.outcome:<18} {versions}  {counts}  {record.peer}"
            + (f"  {record.detail}" if record.detail else "")
        )
    if log.skipped_lines:
        print(f"({log.skipped_lines} torn lines skipped)", file=sys.stderr)
    return 0


def _run_usage(args: argparse.Namespace) -> int:
    with admin_of(args) as admin:
        usage = admin.usage(principal=args.principal or "")
    print(
        f"numbers checked since {_seconds_iso(usage.since.seconds)} (the server's start), "
        "by principal and caller:"
    )
    print(f"{'principal':<20} {'caller':<16} {'calls':>10} {'allowed':>14} {'blocked':>14} {'invalid':>12}")
    for row in usage.rows:
        print(
            f"{row.principal:<20} {row.caller or '-':<16} {row.calls:>10,} {row.allowed:>14,} "
            f"{row.blocked:>14,} {row.invalid:>12,}"
        )
    return 0


def _run_history(args: argparse.Namespace) -> int:
    ref = _checked_ref(args)
    with admin_of(args) as admin:
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


def _load_options(parser: argparse.ArgumentParser) -> None:
    """The options a reload and an upload share: how the file is read and what the server may accept."""
    parser.add_argument(
        "--force",
        action="store_true",
        help="accept a count change beyond the server's limit, or a register older than the serving one",
    )
    parser.add_argument("--format", choices=["text", "csv", "snapshot"], help="default: by content")
    parser.add_argument("--column", help="CSV column holding the numbers (default: the first)")
    parser.add_argument("--until-column", help="CSV column with each entry's end date (dated lists)")
    parser.add_argument("--expect-version", help="refuse unless this is the serving version")


def register_admin_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add `admin` with its subcommands to the `nixlookup` parser; returns the `admin` parser."""
    admin: argparse.ArgumentParser = subparsers.add_parser(
        "admin", help="reload the register, apply deltas, compact, history (the server's Admin service)"
    )
    commands = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")

    reload = commands.add_parser("reload", help="load a new version from a file on the server")
    _common(reload)
    reload.add_argument("path", help="text, CSV or snapshot file readable by the server")
    _load_options(reload)
    reload.add_argument("--register-date", help="the register version's date, YYYY-MM-DD (default: now)")
    reload.set_defaults(func=_guarded(_run_reload))

    delta = commands.add_parser("apply-delta", help="add and remove numbers (durable when it returns)")
    _common(delta)
    delta.add_argument("--add", metavar="FILE", help="numbers to add (text: one per line, or CSV)")
    delta.add_argument("--remove", metavar="FILE", help="numbers to remove")
    delta.add_argument("--column", help="CSV column holding the numbers (default: the first)")
    delta.add_argument("--until", help="end date YYYY-MM-DD of the added entries (dated lists)")
    delta.add_argument("--expect-version", help="refuse unless this is the serving version")
    add_batch_size(delta)
    delta.set_defaults(func=_guarded(_run_apply_delta))

    compact = commands.add_parser("compact", help="fold journalled deltas into a new snapshot")
    _common(compact)
    compact.add_argument("--all", action="store_true", help="every list with journalled deltas")
    compact.set_defaults(func=_guarded(_run_compact))

    upload = commands.add_parser("upload", help="send a register or list file to the server and load it")
    _common(upload)
    upload.add_argument("path", help="text, CSV or snapshot file on this machine")
    _load_options(upload)
    upload.set_defaults(func=_guarded(_run_upload))

    audit = commands.add_parser("audit", help="the audit log: every Admin action (role admin)")
    _common(audit)
    audit.add_argument("--limit", type=int, default=50, help="newest N records (0 = all; default 50)")
    audit.add_argument("--since", help="records at or after this time, YYYY-MM-DD[THH:MM]")
    audit.set_defaults(func=_guarded(_run_audit))

    usage = commands.add_parser("usage", help="numbers checked per principal and caller (role admin)")
    _common(usage)
    usage.add_argument("--principal", help="only this principal")
    usage.set_defaults(func=_guarded(_run_usage))

    history = commands.add_parser("history", help="a list's serving version and its version history")
    _common(history)
    history.set_defaults(func=_guarded(_run_history))

    add_lists_parser(commands)
    return admin


def main(argv: Sequence[str] | None = None) -> int:
    """Run `nixlookup admin ...` on its own (``python -m nixlookup.client.cli_admin ...``)."""
    return run_alone(register_admin_commands, argv)


if __name__ == "__main__":
    sys.exit(main())
