"""The one wire vocabulary: the words answers are made of, shared by server, client and bench.

Theory of operation:
- `Verdict`, `Reason`, `Problem`, `LineType`, `Purpose`, `ListKind` and `MatchedOn` (and every other enum of
  ``lookup.proto``) are `IntEnum`s whose values are the proto enums of the same names, member names
  without the proto's type prefix (``LIST_KIND_OPT_OUT`` -> ``ListKind.OPT_OUT``, ``VERDICT_UNSPECIFIED`` ->
  ``Verdict.UNSPECIFIED``). They are generated from the proto by ``make proto`` (`nixlookup.v1.enums`),
  so they cannot drift from it; `tests/test_generated_code.py` regenerates them and fails on a diff.
- This is the only home of these enums. The server core, the client and the CLI import them from here,
  so the core converts to and from proto messages with ``int(...)`` and nothing keeps a copy.
- `slug` is the one spelling of a member on the command line, in file names and in logs
  (``opt-out``, ``market-research``); `parse` reads a member back from a slug, a name or a value.
- `mask_number` is how a phone number (or personnummer) appears in any log line or error message: the
  digits with all but the last two replaced by ``*``.
"""

from __future__ import annotations

from nixlookup.v1._wire_enum import WireEnum
from nixlookup.v1.enums import ChangeKind, LineType, ListKind, MatchedOn, Problem, Purpose, Reason, Verdict

__all__ = [
    "BEHIND_DETAIL_PREFIX",
    "ChangeKind",
    "LineType",
    "ListKind",
    "MatchedOn",
    "Problem",
    "Purpose",
    "Reason",
    "Verdict",
    "WireEnum",
    "mask_number",
]

BEHIND_DETAIL_PREFIX = "behind:"
"""How a server's FAILED_PRECONDITION details start when it does not serve a request's ``min_version`` yet
(a follower catching up): the one answer a client retries on another replica."""


def mask_number(value: object) -> str:
    """All but the last 2 digits as ``*``, everything else dropped (``"?"`` without digits); never raises.

    ``mask_number("070-123 45 67") == "********67"``: how a number appears in logs and error messages.
    """
    try:
        text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
        digits = [char for char in text[:256] if char.isdigit()]
    except Exception:  # a hostile __str__: show nothing
        return "?"
    if not digits:
        return "?"
    hidden = max(0, len(digits) - 2)
    return "*" * hidden + "".join(digits[hidden:])
