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
and ``--ca``/``--cert``/``--key`` (docs/security.md). Exit status: 0 done, 1 refused by the server, 2 usage
or local file error. Numbers never appear in the output.

`register_admin_commands(subparsers)` adds the `admin` group to the `nixlookup` parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from nixlookup.client._cli_guard import Handler, guarded
from nixlookup.client.cli_lists import add_lists_parser, read_numbers, until_day
from nixlookup.client.security import add_security_arguments, open_channel, security_from_args
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc
from nixlookup.v1.vocabulary import ListKind

__all__ = ["main", "register_admin_commands"]

DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_TIMEOUT_SECONDS = 120.0
"""A reload of millions of numbers takes about a second; the deadline leaves room for a busy machine."""
DEFAULT_CHUNK = 200_000
"""Numbers per ApplyDelta: about 4 MB of texts, under the server's default 8 MiB message limit. A file
larger than one chunk becomes several deltas, each durable on its own (said in the output)."""

_KINDS: dict[str, lookup_pb2.ListKind.ValueType] = {
    kind.slug: lookup_pb2.ListKind.ValueType(kind) for kind in ListKind
}
_SLUGS = {value: slug for slug, value in _KINDS.items()}


class _UsageError(ValueError):
    pass


def _list_ref(args: argparse.Namespace) -> lookup_pb2.ListRef:
    kind = _KINDS[args.list_kind]
    if kind == lookup_pb2.LIST_KIND_REGISTER and args.caller:
        raise _UsageError("--caller applies to a caller's list; pass --list-kind too")
    if kind != lookup_pb2.LIST_KIND_REGISTER and not args.caller:
        raise _UsageError(f"a {args.list_kind} list belongs to a caller: pass --caller")
    return lookup_pb2.ListRef(kind=kind, caller=args.caller or "")


def _name(ref: lookup_pb2.ListRef) -> str:
    slug = _SLUGS.get(ref.kind, str(ref.kind))
    return slug if not ref.caller else f"{slug}/{ref.caller}"


def _target(args: argparse.Namespace) -> str:
    """--server/--target on the subcommand, else `nixlookup --target`, else the environment, else loopback."""
    return str(
        args.admin_server
        or getattr(args, "target", None)
        or os.environ.get("NIXLOOKUP_TARGET")
        or os.environ.get("NIXLOOKUP_SERVER")
        or DEFAULT_SERVER
    )


def _stub(args: argparse.Namespace) -> tuple[grpc.Channel, lookup_pb2_grpc.AdminStub]:
    channel = open_channel(_target(args), security_from_args(args))
    return channel, lookup_pb2_grpc.AdminStub(channel)


def _print_info(info: lookup_pb2.ListInfo) -> None:
    print(
        f"{_name(info.list)}: version {info.version}, {info.count:,} numbers, source {info.source}"
        + (" (SYNTHETIC)" if info.synthetic else "")
    )


def _run_reload(args: argparse.Namespace) -> int:
    request = lookup_pb2.ReloadRequest(
        list=_list_ref(args),
        path=str(Path(args.path).resolve()),
        format=args.format or "",
        column=args.column or "",
        until_column=args.until_column or "",
        force=args.force,
        expect_version=args.expect_version or "",
    )
    if args.register_date:
        moment = datetime.fromisoformat(args.register_date)
        request.register_date.CopyFrom(
            Timestamp(seconds=int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp()))
        )
    channel, stub = _stub(args)
    with channel:
        response = stub.Reload(request, timeout=args.timeout)
    _print_info(response.info)
    print(
        f"  replaced {response.previous_version or '(new list)'}; {response.bad_lines} bad lines skipped; "
        f"{response.load_seconds:.3f} s"
    )
    return 0


def _run_apply_delta(args: argparse.Namespace) -> int:
    ref = _list_ref(args)
    if not args.add and not args.remove:
        raise _UsageError("give --add FILE, --remove FILE or both")
    adds = read_numbers(Path(args.add), args.column) if args.add else []
    removes = read_numbers(Path(args.remove), args.column) if args.remove else []
    until = until_day(args.until) if args.until else 0
    if until and ref.kind not in (lookup_pb2.LIST_KIND_RELATIONSHIP, lookup_pb2.LIST_KIND_CONSENT):
        raise _UsageError("--until applies to relationship and consent lists")
    requests: list[lookup_pb2.ApplyDeltaRequest] = []
    chunk = max(1, args.chunk)
    for start in range(0, max(len(adds), len(removes), 1), chunk):
        add_part, remove_part = adds[start : start + chunk], removes[start : start + chunk]
        request = lookup_pb2.ApplyDeltaRequest(list=ref, add_texts=add_part, remove_texts=remove_part)
        if until and add_part:
            request.add_until_days_le = until.to_bytes(4, "little") * len(add_part)
        requests.append(request)
    requests[0].expect_version = args.expect_version or ""
    if len(requests) > 1:
        print(f"{len(adds) + len(removes):,} numbers: sending {len(requests)} deltas of up to {chunk:,} each")
    channel, stub = _stub(args)
    with channel:
        for request in requests:
            response = stub.ApplyDelta(request, timeout=args.timeout)
            print(
                f"{_name(ref)}: version {response.version} (was {response.previous_version or '-'}): "
                f"+{response.added:,} -{response.removed:,}, {response.invalid:,} invalid skipped, "
                f"{response.count:,} numbers; durable"
            )
    return 0


def _run_compact(args: argparse.Namespace) -> int:
    request = lookup_pb2.CompactRequest(all=args.all)
    if not args.all:
        request.list.CopyFrom(_list_ref(args))
    channel, stub = _stub(args)
    with channel:
        response = stub.Compact(request, timeout=args.timeout)
    if not response.compacted:
        print("nothing to compact: no journalled deltas")
    for info in response.compacted:
        print("compacted ", end="")
        _print_info(info)
    return 0


_UPLOAD_CHUNK_BYTES = 1 << 20
"""1 MiB per UploadRequest: well under the server's --max-message-bytes (8 MiB by default)."""


def _upload_requests(args: argparse.Namespace, path: Path) -> Any:
    options = lookup_pb2.ReloadRequest(
        list=_list_ref(args),
        path=path.name,
        format=args.format or "",
        column=args.column or "",
        until_column=args.until_column or "",
        force=args.force,
        expect_version=args.expect_version or "",
    )
    yield lookup_pb2.UploadRequest(reload=options)
    with path.open("rb") as handle:
        while chunk := handle.read(_UPLOAD_CHUNK_BYTES):
            yield lookup_pb2.UploadRequest(data=chunk)


def _run_upload(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.is_file():
        raise _UsageError(f"{path}: no such file")
    channel, stub = _stub(args)
    with channel:
        response = stub.Upload(_upload_requests(args, path), timeout=args.timeout)
    _print_info(response.info)
    print(
        f"  replaced {response.previous_version or '(new list)'}; {response.bad_lines} bad lines skipped; "
        f"{response.load_seconds:.3f} s"
    )
    return 0


def _run_audit(args: argparse.Namespace) -> int:
    request = lookup_pb2.GetAuditLogRequest(limit=args.limit)
    if args.since:
        moment = datetime.fromisoformat(args.since)
        request.since.CopyFrom(
            Timestamp(seconds=int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp()))
        )
    channel, stub = _stub(args)
    with channel:
        log = stub.GetAuditLog(request, timeout=args.timeout)
    for record in log.records:
        when = datetime.fromtimestamp(record.time.seconds, UTC).isoformat(timespec="seconds")
        target = _name(record.list) if record.HasField("list") else "-"
        counts = " ".join(f"{name}={value}" for name, value in sorted(record.counts.items()))
        versions = f"{record.version_before or '-'} -> {record.version_after or '-'}"
        print(
            f"{when}  {record.principal:<16} {record.operation:<10} {target:<22} {record.outcome:<18} "
            f"{versions}  {counts}  {record.peer}" + (f"  {record.detail}" if record.detail else "")
        )
    if log.skipped_lines:
        print(f"({log.skipped_lines} torn lines skipped)", file=sys.stderr)
    return 0


def _run_usage(args: argparse.Namespace) -> int:
    channel, stub = _stub(args)
    with channel:
        usage = stub.GetUsage(
            lookup_pb2.GetUsageRequest(principal=args.principal or ""), timeout=args.timeout
        )
    since = datetime.fromtimestamp(usage.since.seconds, UTC).isoformat(timespec="seconds")
    print(f"numbers checked since {since} (the server's start), by principal and caller:")
    print(f"{'principal':<20} {'caller':<16} {'calls':>10} {'allowed':>14} {'blocked':>14} {'invalid':>12}")
    for row in usage.rows:
        print(
            f"{row.principal:<20} {row.caller or '-':<16} {row.calls:>10,} {row.allowed:>14,} "
            f"{row.blocked:>14,} {row.invalid:>12,}"
        )
    return 0


def _run_history(args: argparse.Namespace) -> int:
    ref = _list_ref(args)
    with open_channel(_target(args), security_from_args(args)) as channel:
        info = lookup_pb2_grpc.LookupStub(channel).GetRegisterInfo(
            lookup_pb2.GetRegisterInfoRequest(), timeout=args.timeout
        )
    every = [info.register, *info.lists]
    chosen = [item for item in every if item.list.kind == ref.kind and item.list.caller == ref.caller]
    if not chosen:
        print(f"the server holds no {_name(ref)} list")
        return 1
    _print_info(chosen[0])
    for event in chosen[0].history:
        moment = datetime.fromtimestamp(event.loaded_at.seconds, UTC).isoformat(timespec="seconds")
        print(
            f"  {moment}  {event.kind:<8} {event.version:<18} {event.count:>12,}  "
            f"+{event.adds:,} -{event.removes:,}  {event.source}"
        )
    return 0


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, prefix="nixlookup admin", usage_errors=(_UsageError, ValueError))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        "--target",
        dest="admin_server",
        default=None,
        help=f"server address (default: nixlookup --target, $NIXLOOKUP_TARGET, or {DEFAULT_SERVER})",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="deadline in seconds")
    add_security_arguments(parser)
    parser.add_argument(
        "--list-kind", choices=list(_KINDS), default="register", help="which list (default: the register)"
    )
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
    delta.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="numbers per ApplyDelta")
    delta.set_defaults(func=_guarded(_run_apply_delta))

    compact = commands.add_parser("compact", help="fold journalled deltas into a new snapshot")
    _common(compact)
    compact.add_argument("--all", action="store_true", help="every list with journalled deltas")
    compact.set_defaults(func=_guarded(_run_compact))

    upload = commands.add_parser("upload", help="send a register or list file to the server and load it")
    _common(upload)
    upload.add_argument("path", help="text, CSV or snapshot file on this machine")
    upload.add_argument("--force", action="store_true", help="accept a count drop beyond the server's limit")
    upload.add_argument("--format", choices=["text", "csv", "snapshot"], help="default: by content")
    upload.add_argument("--column", help="CSV column holding the numbers (default: the first)")
    upload.add_argument("--until-column", help="CSV column with each entry's end date (dated lists)")
    upload.add_argument("--expect-version", help="refuse unless this is the serving version")
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
    parser = argparse.ArgumentParser(prog="nixlookup")
    register_admin_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    handler: Handler = args.func
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
