"""The words of an answer on the client side: enums equal to the `nixlookup.v1` proto enums.

The client never imports the server, so it has its own copies; `tests/test_vocabulary.py` keeps
them equal to the wire contract. `Purpose.parse` accepts a member, its value or its name in any case
(``"market-research"``, ``"MARKET_RESEARCH"``), which is what the CLI and config files pass.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["LineType", "ListKind", "Purpose", "Reason", "Verdict"]


class Verdict(IntEnum):
    UNSPECIFIED = 0
    ALLOWED = 1
    BLOCKED = 2
    INVALID = 3


class Reason(IntEnum):
    UNSPECIFIED = 0
    NOT_REGISTERED = 1
    NIX_REGISTERED = 2
    COMPANY_OPT_OUT = 3
    EXEMPT_PURPOSE = 4
    CUSTOMER_RELATIONSHIP = 5
    CONSENT = 6
    INVALID_NUMBER = 7
    MOBILE_WITHOUT_RELATIONSHIP = 8


class LineType(IntEnum):
    UNSPECIFIED = 0
    MOBILE = 1
    FIXED = 2
    OTHER = 3


class ListKind(IntEnum):
    REGISTER = 0
    OPT_OUT = 1
    RELATIONSHIP = 2
    CONSENT = 3


class Purpose(IntEnum):
    SALES = 0
    MARKETING = 1
    FUNDRAISING = 2
    MARKET_RESEARCH = 3
    PUBLIC_INFORMATION = 4
    POLITICAL = 5
    RELIGIOUS = 6
    PUBLIC_INTEREST = 7

    @classmethod
    def parse(cls, value: Purpose | int | str) -> Purpose:
        """A purpose from a member, an int or a name (case and '-'/'_' insensitive)."""
        if isinstance(value, str):
            name = value.strip().upper().replace("-", "_")
            try:
                return cls[name]
            except KeyError:
                known = ", ".join(member.name.lower() for member in cls)
                raise ValueError(f"unknown purpose {value!r}; use one of {known}") from None
        return cls(value)
