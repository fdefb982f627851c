"""The one wire vocabulary: the words answers are made of, shared by server, client and bench.

Theory of operation:
- `Verdict`, `Reason`, `LineType`, `Purpose` and `ListKind` are `IntEnum`s whose values are the proto
  enums of the same names (``lookup.proto``), member names without the proto's type prefix
  (``LIST_KIND_OPT_OUT`` -> ``ListKind.OPT_OUT``, ``VERDICT_UNSPECIFIED`` -> ``Verdict.UNSPECIFIED``).
  They are written out (so type checkers and readers see every member) and checked against the generated
  descriptors when this module is imported: an enum that drifts from the proto fails at import, in every
  process and in the first test, never silently.
- This is the only home of these enums. The server core, the client and the CLI import them from here,
  so the core converts to and from proto messages with ``int(...)`` and nothing keeps a copy.
- `slug` is the one spelling of a member on the command line, in file names and in logs
  (``opt-out``, ``market-research``); `parse` reads a member back from a slug, a name or a value.
- `mask_number` is how a phone number (or personnummer) appears in any log line or error message: the
  digits with all but the last two replaced by ``*``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Self

from google.protobuf.descriptor import EnumDescriptor

from nixlookup.v1 import lookup_pb2

__all__ = ["LineType", "ListKind", "Purpose", "Reason", "Verdict", "mask_number"]


class _WireEnum(IntEnum):
    """An enum of the wire contract, with one command-line spelling and one way to read it back."""

    @property
    def slug(self) -> str:
        """Lower-case name with ``-`` (``opt-out``, ``market-research``): CLI values, file names, logs."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, value: Self | int | str) -> Self:
        """A member from a member, its value, its name or its slug (case and ``-``/``_`` insensitive)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            name = value.strip().upper().replace("-", "_")
            try:
                return cls[name]
            except KeyError:
                known = ", ".join(member.slug for member in cls)
                noun = cls.__name__.lower()
                raise ValueError(f"unknown {noun} {value!r}; use one of {known}") from None
        return cls(value)


class Verdict(_WireEnum):
    UNSPECIFIED = 0
    ALLOWED = 1
    BLOCKED = 2
    INVALID = 3


class Reason(_WireEnum):
    UNSPECIFIED = 0
    NOT_REGISTERED = 1
    NIX_REGISTERED = 2
    COMPANY_OPT_OUT = 3
    EXEMPT_PURPOSE = 4
    CUSTOMER_RELATIONSHIP = 5
    CONSENT = 6
    INVALID_NUMBER = 7
    MOBILE_WITHOUT_RELATIONSHIP = 8


class LineType(_WireEnum):
    UNSPECIFIED = 0  # invalid numbers
    MOBILE = 1
    FIXED = 2
    OTHER = 3  # valid but neither: premium rate, toll free, UAN, voicemail ..., or any foreign number


class Purpose(_WireEnum):
    SALES = 0
    MARKETING = 1
    FUNDRAISING = 2
    MARKET_RESEARCH = 3
    PUBLIC_INFORMATION = 4
    POLITICAL = 5
    RELIGIOUS = 6
    PUBLIC_INTEREST = 7


class ListKind(_WireEnum):
    REGISTER = 0
    OPT_OUT = 1
    RELATIONSHIP = 2
    CONSENT = 3


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


def _check_against_proto(enum: type[_WireEnum], descriptor: EnumDescriptor) -> None:
    """Raise ImportError unless `enum` has exactly the proto enum's values under its prefix-free names."""
    prefix = "".join(f"_{c}" if c.isupper() else c.upper() for c in descriptor.name).lstrip("_") + "_"
    wire = {
        (value.name[len(prefix) :] if value.name.startswith(prefix) else value.name): value.number
        for value in descriptor.values
    }
    ours = {member.name: member.value for member in enum}
    if wire != ours:
        raise ImportError(
            f"nixlookup.v1.vocabulary.{enum.__name__} differs from lookup.proto: {ours} vs {wire}"
        )


for _enum, _descriptor in (
    (Verdict, lookup_pb2.DESCRIPTOR.enum_types_by_name["Verdict"]),
    (Reason, lookup_pb2.DESCRIPTOR.enum_types_by_name["Reason"]),
    (LineType, lookup_pb2.DESCRIPTOR.enum_types_by_name["LineType"]),
    (Purpose, lookup_pb2.DESCRIPTOR.enum_types_by_name["Purpose"]),
    (ListKind, lookup_pb2.DESCRIPTOR.enum_types_by_name["ListKind"]),
):
    _check_against_proto(_enum, _descriptor)
