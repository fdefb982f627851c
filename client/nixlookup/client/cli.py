"""`nixlookup`: the command line of the client: check numbers, wash call lists, show the register.

    nixlookup check "070-123 45 67" "+46 8 123 456 78" [--caller acme] [--purpose sales] [--json]
    nixlookup wash calls.csv --column phone --output washed.csv [--caller acme] [--purpose sales]
    nixlookup info [--json]
    nixlookup --version
    nixlookup health [--service NAME]       # exit 0 when SERVING (container and systemd probes)

`check` lives in `cli_check`, `wash` in `cli_wash`, `info` here. Every command takes ``--target
HOST:PORT`` (env ``NIXLOOKUP_TARGET``, default 127.0.0.1:50051) and ``--timeout SECONDS``, before or after
the command name. Exit status: 0 done, 1 the server refused or could not be reached (the message says
what to do), 2 a usage or local file error, 3 a number was BLOCKED under ``--fail-on-blocked``.

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
from typing import Any

from nixlookup.client._cli_common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    Handler,
    add_server_options,
    client_of,
    target_of,
)
from nixlookup.client.cli_check import add_check_parser
from nixlookup.client.cli_wash import add_wash_parser
from nixlookup.client.errors import NixlookupClientError
from nixlookup.client.proof import tool_version
from nixlookup.client.results import ListInfo, RegisterInfo
from nixlookup.v1.vocabulary import ListKind

__all__ = ["PLUGINS", "build_parser", "main"]

PLUGINS: tuple[str, ...] = (
    "nixlookup.client.cli_admin:register_admin_commands",
    "nixlookup.client.cli_lists:register_commands",
    "nixlookup.client.cli_health:register_commands",
    "nixlookup.client.cli_mail:register_commands",
)
"""``module:function`` registering more subcommands (see the module doc)."""


def _command_options() -> argparse.ArgumentParser:
    """--target and --timeout for each command (without defaults: see `add_server_options`)."""
    common = argparse.ArgumentParser(add_help=False)
    add_server_options(common)
    return common


def build_parser() -> argparse.ArgumentParser:
    """The `nixlookup` parser with its own commands and the plugins' commands."""
    parser = argparse.ArgumentParser(
        prog="nixlookup",
        description="Check phone numbers against the NIX-Telefon register served by nixlookup-server.",
    )
    parser.add_argument("--version", action="version", version=f"nixlookup {tool_version()}")
    add_server_options(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _command_options()

    add_check_parser(commands, common)
    add_wash_parser(commands, common)

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
def _date(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment is not None else "-"


def _list_line(info: ListInfo) -> str:
    phone = info.kind is ListKind.REGISTER
    name = (
        ("register" if phone else info.kind.slug) if not info.caller else f"{info.kind.slug} of {info.caller}"
    )
    made_up = "made-up numbers, not the NIX register" if phone else "made-up people, not NIX-Adresserat"
    synthetic = f"  SYNTHETIC ({made_up})" if info.synthetic else ""
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
    with client_of(args) as client:
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
    except (ValueError, OSError) as error:  # WashError, EncodingError, UsageError; unreadable files
        print(f"nixlookup {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"nixlookup {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
