"""The words answers are made of: verdicts, reasons and purposes, as plain Python enums.

Their values equal the `nixlookup.v1` proto enums of the same names, so the core never imports generated
code and the service converts with ``int(...)``. `tests/test_vocabulary.py` keeps the two in step.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Purpose", "Reason", "Verdict"]


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


class Purpose(IntEnum):
    SALES = 0
    MARKETING = 1
    FUNDRAISING = 2
    MARKET_RESEARCH = 3
    PUBLIC_INFORMATION = 4
    POLITICAL = 5
    RELIGIOUS = 6
    PUBLIC_INTEREST = 7
