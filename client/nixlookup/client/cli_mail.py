"""`nixlookup check-addressee`: one NIX-Adresserat answer per addressee given on the command line.

The addressee is given by options (``--personnummer``, ``--name``, ``--street``, ``--postcode``,
``--city``, ``--care-of``; any of them, a personnummer alone or a whole name and address). The answer is
one tab-separated line (or one JSON object with ``--json``): verdict, reason, matched_on, valid_until,
register version and detail. Exit 3 with ``--fail-on-blocked`` when the addressee is BLOCKED. Registered
as a plugin of `nixlookup.client.cli` (`register_commands`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from nixlookup.client._cli_common import (
    EXIT_BLOCKED,
    EXIT_OK,
    add_caller_purpose,
    add_server_options,
    client_of,
)
from nixlookup.client.mail import ADDRESSEE_FIELDS, AddresseeResult
from nixlookup.v1.vocabulary import Verdict

__all__ = ["register_commands"]


def _line(result: AddresseeResult, as_json: bool) -> str:
    until = "" if result.valid_until is None else f"{result.valid_until:%Y-%m-%d}"
    fields = {
        "verdict": result.verdict.name,
        "reason": result.reason.name,
        "matched_on": result.matched_on.slug,
        "valid_until": until,
        "register_version": result.register_version,
        "detail": result.detail,
    }
    return json.dumps(fields, ensure_ascii=False) if as_json else "\t".join(fields.values())


def _run(args: argparse.Namespace) -> int:
    addressee = {name: getattr(args, name) or "" for name in ADDRESSEE_FIELDS}
    with client_of(args) as client:
        result = client.check_addressee(addressee, caller=args.caller, purpose=args.purpose)
    print(_line(result, args.json))
    return EXIT_BLOCKED if result.verdict is Verdict.BLOCKED and args.fail_on_blocked else EXIT_OK


def register_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add `check-addressee` to the `nixlookup` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check-addressee", help="may this addressee get addressed direct mail (NIX-Adresserat)?"
    )
    add_server_options(parser)
    for name in ADDRESSEE_FIELDS:
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, default="", help=f"the addressee's {name}"
        )
    add_caller_purpose(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--fail-on-blocked", action="store_true", help="exit 3 when the addressee is BLOCKED")
    parser.set_defaults(func=_run)
    return parser
