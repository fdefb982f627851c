"""What every `nixlookup` command shares: the server options, list options, and how failure is reported.

- ``--target HOST:PORT`` and ``--timeout SECONDS`` exist at the top level (``nixlookup --target X check``)
  and on every command (``nixlookup check --target X``); a command's copy has no default, so a value given
  before the command name is kept. The target resolves flag -> ``$NIXLOOKUP_TARGET`` -> 127.0.0.1:50051
  (`nixlookup.client.defaults.resolve_target`); each command picks its own default deadline. The
  security options (``--token-file``/``$NIXLOOKUP_TOKEN``, ``--tls-ca``, ``--tls-cert``, ``--tls-key``,
  ``--tls``: `nixlookup.client.security`, docs/security.md) come with them, the same way.
- ``--list-kind`` names a list (``register``, ``opt-out``, ``relationship``, ``consent``) wherever a command
  takes one. ``--kind`` is kept as a deprecated alias on ``nixlookup lists`` only: earlier docs/rules.md
  documented it there.
- Exit status (docs/client.md): 0 done, 1 the server refused or could not be reached, 2 a usage or local
  file error, 3 done but a number was BLOCKED and ``--fail-on-blocked`` was given. `guarded` maps a
  handler's exceptions to those, one line on stderr, never a traceback.
- `add_caller_purpose` and `describe_lists` are how check and wash take a caller and say which of its
  lists answered (a mistyped ``--caller`` shows as "no lists", not as silently fewer blocks).
- `add_min_version` / `min_version_of`: ``--min-version [LIST=]VERSION`` (repeatable), read-your-writes
  from the command line: the versions ``admin apply-delta``, ``admin reload`` and ``lists`` print, as the
  client's `min_version` mapping; a list name it cannot parse is a usage error before any call.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from nixlookup.client._base import min_positions
from nixlookup.client.admin import AdminClient, list_name, list_ref
from nixlookup.client.defaults import (
    DEFAULT_ADMIN_TIMEOUT,
    DEFAULT_DELTA_CHUNK,
    DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    TARGET_ENV,
    resolve_target,
)
from nixlookup.client.errors import NixlookupClientError
from nixlookup.client.results import ListVersion
from nixlookup.client.security import ChannelSecurity, add_security_arguments, security_from_args
from nixlookup.client.sync import Client
from nixlookup.v1.vocabulary import Purpose

__all__ = [
    "EXIT_BLOCKED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "SYNTHETIC_NOTE",
    "Handler",
    "UsageError",
    "add_batch_size",
    "add_caller_purpose",
    "add_list_kind",
    "add_min_version",
    "add_server_options",
    "admin_of",
    "client_of",
    "describe_lists",
    "guarded",
    "min_version_of",
    "security_of",
    "target_of",
    "timeout_of",
]

EXIT_OK = 0
EXIT_REFUSED = 1
"""The server refused the request or could not be reached (the message says what to do)."""
EXIT_USAGE = 2
"""A usage mistake or a local file that cannot be read or written."""
EXIT_BLOCKED = 3
"""Done, every answer given, but a number was BLOCKED and --fail-on-blocked was asked for."""
SYNTHETIC_NOTE = "SYNTHETIC register (made-up numbers, not the NIX register): not for real calls"

Handler = Callable[[argparse.Namespace], int]


class UsageError(ValueError):
    """The command line asks for something that cannot be done; the message says what to change."""


def add_server_options(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """--target, --timeout and the security options (see the module doc); `top_level` gives them their
    defaults."""
    default: Any = None if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--target",
        default=default,
        metavar="HOST:PORT",
        help=f"server address [env {TARGET_ENV}; default {DEFAULT_TARGET}]",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=default,
        metavar="SECONDS",
        help="deadline of one call (check/info 5 s, a wash's stream 3600 s, admin and lists 120 s)",
    )
    add_security_arguments(parser, top_level=top_level)


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    """--batch-size N: numbers per ApplyDelta call (the concept `wash --batch-size` names for CheckStream);
    --chunk, its first spelling here, stays accepted, hidden from --help."""
    parser.add_argument(
        "--batch-size",
        dest="chunk",
        type=int,
        default=DEFAULT_DELTA_CHUNK,
        metavar="N",
        help="numbers per ApplyDelta call",
    )
    parser.add_argument(
        "--chunk", dest="chunk", type=int, default=DEFAULT_DELTA_CHUNK, help=argparse.SUPPRESS
    )


def target_of(args: argparse.Namespace) -> str:
    """The server the command talks to: --target, else $NIXLOOKUP_TARGET, else the default."""
    return resolve_target(getattr(args, "target", None))


def security_of(args: argparse.Namespace) -> ChannelSecurity:
    """The token and TLS settings the command line and environment ask for."""
    return security_from_args(args)


def client_of(args: argparse.Namespace) -> Client:
    """The Lookup client a command's options describe (unary and stream deadlines: --timeout or defaults)."""
    return Client(
        target_of(args),
        timeout=timeout_of(args, DEFAULT_TIMEOUT),
        stream_timeout=timeout_of(args, DEFAULT_STREAM_TIMEOUT),
        security=security_of(args),
    )


def admin_of(args: argparse.Namespace) -> AdminClient:
    """The Admin client a command's options describe."""
    return AdminClient(
        target_of(args), timeout=timeout_of(args, DEFAULT_ADMIN_TIMEOUT), security=security_of(args)
    )


def timeout_of(args: argparse.Namespace, default: float) -> float:
    """--timeout when given, else the command's `default`."""
    timeout = getattr(args, "timeout", None)
    return float(timeout) if timeout is not None else default


def _purpose(text: str) -> Purpose:
    try:
        return Purpose.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_caller_purpose(parser: argparse.ArgumentParser) -> None:
    """--caller and --purpose, as check and wash take them."""
    parser.add_argument("--caller", default="", help="company id selecting its own lists (default: none)")
    parser.add_argument(
        "--purpose",
        type=_purpose,
        default=Purpose.SALES,
        help=", ".join(member.slug for member in Purpose) + " (default: sales)",
    )


def add_min_version(parser: argparse.ArgumentParser) -> None:
    """--min-version [LIST=]VERSION, repeatable (see the module doc)."""
    parser.add_argument(
        "--min-version",
        action="append",
        metavar="[LIST=]VERSION",
        help="answer only from at least this version, as admin apply-delta/reload and lists print it "
        "(read your writes on a follower): VERSION alone is the register's, LIST=VERSION names a list "
        "(opt-out/acme=000003-1a2b3c4d); repeatable. A replica behind it is left for another; exit 1 "
        "when every one tried is behind",
    )


def min_version_of(args: argparse.Namespace) -> dict[str, str] | None:
    """The ``--min-version`` values as the client's `min_version` mapping (None: not given)."""
    named: dict[str, str] = {}
    for value in getattr(args, "min_version", None) or ():
        name, equals, version = value.partition("=")
        name, version = (name.strip(), version.strip()) if equals else ("register", name.strip())
        if not version:
            raise UsageError(f"--min-version {value!r}: give VERSION or LIST=VERSION")
        if named.get(name, version) != version:
            raise UsageError(f"--min-version names {name} twice ({named[name]}, {version}): give one")
        named[name] = version
    try:
        min_positions(named)  # a list name it cannot read: exit 2 before any call
    except ValueError as error:
        raise UsageError(f"--min-version: {error}") from None
    return named or None


def describe_lists(caller: str, used: Sequence[ListVersion]) -> str:
    """Which of the caller's lists answered, or that it has none (a mistyped --caller shows here)."""
    if not caller:
        return "no caller: the register only"
    mine = [item for item in used if item.caller == caller]
    if not mine:
        return f"caller {caller!r} has no lists on this server: the register only (is the name right?)"
    return ", ".join(f"{list_name(list_ref(item.kind, item.caller))} {item.version}" for item in mine)


class _DeprecatedAlias(argparse.Action):
    """Accept an old option spelling, say which one replaces it, store under the new name."""

    def __init__(self, option_strings: Sequence[str], dest: str, replacement: str = "", **kwargs: Any):
        self.replacement = replacement
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        print(f"nixlookup: {option} is deprecated; use {self.replacement}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_list_kind(
    parser: argparse.ArgumentParser,
    choices: Sequence[str],
    *,
    default: str | None = None,
    deprecated_alias: str | None = None,
) -> None:
    """--list-kind KIND (required when there is no default), and optionally a deprecated alias."""
    parser.add_argument(
        "--list-kind",
        dest="list_kind",
        choices=list(choices),
        default=default,
        required=default is None and deprecated_alias is None,
        help="which list" + (f" (default: {default})" if default else ""),
    )
    if deprecated_alias is not None:
        parser.add_argument(
            deprecated_alias,
            dest="list_kind",
            choices=list(choices),
            action=_DeprecatedAlias,
            replacement="--list-kind",
            help=argparse.SUPPRESS,
        )


def guarded(handler: Handler, *, prefix: str) -> Handler:
    """`handler` with failures as exit statuses: usage and file errors 2, server refusals 1, one line."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except NixlookupClientError as error:
            print(f"{prefix}: {error}", file=sys.stderr)
            return EXIT_REFUSED
        except (ValueError, OSError) as error:  # UsageError, bad dates and kinds, unreadable files
            print(f"{prefix}: {error}", file=sys.stderr)
            return EXIT_USAGE

    return run


def run_alone(register: Callable[[Any], object], argv: Sequence[str] | None) -> int:
    """Run a plugin's subcommands on their own (``python -m nixlookup.client.cli_admin ...``): `register`
    adds them to a bare ``nixlookup`` parser, as it does to the full one."""
    parser = argparse.ArgumentParser(prog="nixlookup")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    handler: Handler = args.func
    return handler(args)
