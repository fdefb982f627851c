"""`nixlookup check`: one answer per number, as a table on a terminal, tab-separated or JSON otherwise.

    nixlookup check "070-123 45 67" "+46 8 123 456 78" [--caller acme] [--purpose sales] [--json]
    printf '0701234567\\n08-123 456 78\\n' | nixlookup check -          (numbers from standard input)

Each number is one `Check` (with its `problem`, the code of why an invalid number is invalid, and its
`detail`, the same in words). The register's
SYNTHETIC flag comes from one `GetRegisterInfo` per command (asked again only if a reload brings a new
version), since a CheckResponse does not carry it: every answer from a synthetic register is marked. After
the answers, standard error says which of the caller's lists answered (or that the caller has none: a
mistyped ``--caller``). ``--fail-on-blocked`` exits 3 when any number is BLOCKED. ``--min-version
[LIST=]VERSION`` (what ``admin apply-delta`` printed) makes every answer rest on at least that version:
on a follower that has not replayed it yet the check is retried on another replica, and the command
exits 1 saying so when none had it (read your writes).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from nixlookup.client._cli_common import (
    EXIT_BLOCKED,
    EXIT_OK,
    SYNTHETIC_NOTE,
    UsageError,
    add_caller_purpose,
    add_min_version,
    client_of,
    describe_lists,
    min_version_of,
)
from nixlookup.client._files import STDIO
from nixlookup.client.results import CheckResult, ListVersion
from nixlookup.v1.vocabulary import LineType, Problem, Verdict

__all__ = ["add_check_parser"]

_MOBILE_NOTE = "mobile without relationship"
_SYNTHETIC_MARK = "SYNTHETIC register"
_ALIGNED = 7  # number, verdict, reason, problem, e164, line type, valid until; notes follow unpadded


def _date(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment is not None else "-"


def _cells(number: str, result: CheckResult, synthetic: bool) -> list[str]:
    line_type = "-" if result.line_type is LineType.UNSPECIFIED else result.line_type.name
    e164 = f"+{result.e164}" if result.e164 else "-"
    until = f"valid until {_date(result.valid_until)}" if result.valid_until else result.detail
    problem = "-" if result.problem is Problem.OK else result.problem.name
    cells = [number, result.verdict.name, result.reason.name, problem, e164, line_type, until]
    # Swedma/Kontakta: marketing calls to mobiles only to existing customers. A flag, not a verdict, and
    # only news when the call is otherwise allowed (--json carries the raw flag for every answer).
    if result.mobile_flag and result.verdict is Verdict.ALLOWED:
        cells.append(_MOBILE_NOTE)
    if synthetic:
        cells.append(_SYNTHETIC_MARK)
    return cells


def _lists_json(used: Sequence[ListVersion]) -> list[dict[str, Any]]:
    return [{"kind": item.kind.slug, "caller": item.caller, "version": item.version} for item in used]


def _json_line(number: str, result: CheckResult, synthetic: bool) -> str:
    return json.dumps(
        {
            "number": number,
            "verdict": result.verdict.name,
            "reason": result.reason.name,
            "problem": None if result.problem is Problem.OK else result.problem.name,
            "e164": result.e164 or None,
            "line_type": result.line_type.name,
            "register_version": result.register_version,
            "synthetic_register": synthetic,
            "valid_until": result.valid_until.isoformat() if result.valid_until else None,
            "mobile_flag": result.mobile_flag,
            "detail": result.detail,
            "lists_used": _lists_json(result.lists_used),
        },
        ensure_ascii=False,
    )


def _print_table(rows: list[list[str]], out: TextIO) -> None:
    """Aligned columns on a terminal; tab-separated (one record per line) for pipes and files."""
    if not out.isatty():
        for cells in rows:
            print("\t".join(cells), file=out)
        return
    widths = [max(len(cells[column]) for cells in rows if len(cells) > column) for column in range(_ALIGNED)]
    for cells in rows:
        padded = [cell.ljust(widths[at]) if at < _ALIGNED else cell for at, cell in enumerate(cells)]
        print("  ".join(padded).rstrip(), file=out)


def _numbers(args: argparse.Namespace) -> list[str]:
    if args.numbers == [STDIO]:
        return [line.strip() for line in sys.stdin if line.strip()]
    if STDIO in args.numbers:
        raise UsageError("`-` (read the numbers from standard input) stands alone")
    return list(args.numbers)


def _run_check(args: argparse.Namespace) -> int:
    numbers = _numbers(args)
    min_version = min_version_of(args)
    answers: list[tuple[str, CheckResult, bool]] = []
    with client_of(args) as client:
        register = client.register_info().register
        synthetic = {register.version: register.synthetic}
        for number in numbers:
            result = client.check(number, caller=args.caller, purpose=args.purpose, min_version=min_version)
            if result.register_version not in synthetic:  # a reload between two checks
                synthetic[result.register_version] = client.register_info().register.synthetic
            answers.append((number, result, synthetic[result.register_version]))
    if args.json:
        for number, result, is_synthetic in answers:
            print(_json_line(number, result, is_synthetic))
    elif answers:
        _print_table(
            [_cells(number, result, is_synthetic) for number, result, is_synthetic in answers], sys.stdout
        )
    if any(is_synthetic for _, _, is_synthetic in answers):
        print(f"nixlookup check: {SYNTHETIC_NOTE}", file=sys.stderr)
    if answers:
        print(
            f"nixlookup check: lists: {describe_lists(args.caller, answers[-1][1].lists_used)}",
            file=sys.stderr,
        )
    blocked = any(result.verdict is Verdict.BLOCKED for _, result, _ in answers)
    return EXIT_BLOCKED if blocked and args.fail_on_blocked else EXIT_OK


def add_check_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `check` to the `nixlookup` subcommands."""
    check = commands.add_parser("check", parents=[common], help="check numbers, one line per number")
    check.add_argument(
        "numbers",
        nargs="+",
        metavar="NUMBER",
        help="numbers as written (quote spaces); - reads standard input",
    )
    add_caller_purpose(check)
    add_min_version(check)
    check.add_argument("--json", action="store_true", help="one JSON object per line")
    check.add_argument("--fail-on-blocked", action="store_true", help="exit 3 when any number is BLOCKED")
    check.set_defaults(func=_run_check)
