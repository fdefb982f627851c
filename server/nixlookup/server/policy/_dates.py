"""Calendar arithmetic for the NIX rules: day numbers, calendar months, UTC.

The lists store end dates as *day numbers* (uint32 days since 1970-01-01, 0 = no end), so the rules
compare days, never clock times. Naive datetimes are taken to be UTC; every datetime this module returns
is timezone-aware UTC.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta

__all__ = [
    "EPOCH",
    "add_calendar_months",
    "as_utc",
    "date_of_day",
    "day_number",
    "day_of",
    "midnight_of_day",
]

EPOCH = date(1970, 1, 1)


def as_utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime (a naive one is taken to already be UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def day_number(day: date) -> int:
    """Days since 1970-01-01 (the encoding the lists use for end dates)."""
    return (day - EPOCH).days


def day_of(moment: datetime) -> int:
    """The day number of `moment`'s UTC calendar date."""
    return day_number(as_utc(moment).date())


def date_of_day(day: int) -> date:
    """The calendar date of a day number."""
    return EPOCH + timedelta(days=day)


def midnight_of_day(day: int) -> datetime:
    """00:00 UTC at the start of a day number."""
    found = date_of_day(day)
    return datetime(found.year, found.month, found.day, tzinfo=UTC)


def add_calendar_months(moment: datetime, months: int) -> datetime:
    """`moment` plus whole calendar months, the day clamped to the target month's length.

    Dec 31 + 2 months is Feb 28 (Feb 29 in a leap year); Aug 31 + 2 months is Oct 31; the time of day is
    kept. This is how "two months counted from the register's date" is read.
    """
    utc = as_utc(moment)
    month_index = utc.year * 12 + (utc.month - 1) + months
    year, month0 = divmod(month_index, 12)
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return utc.replace(year=year, month=month0 + 1, day=min(utc.day, last_day))
