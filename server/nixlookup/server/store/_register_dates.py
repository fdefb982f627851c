"""Which dates a register version may carry: the bounds every load checks, before anything serves it.

A register version's date is what every answer's `valid_until` is counted from (date + 2 months, see
`policy._expiry`), so a wrong date is a wrong answer: a date in the future stretches validity past what the
register supports, one in 1970 (a zero timestamp) or 9999 (a sentinel) is a unit mistake. So a reload,
and the file an empty data directory is seeded from, are refused (INVALID_ARGUMENT) when their date is:
- more than `MAX_CLOCK_SKEW` ahead of this server's clock (a day: clocks of the machine that exported the
  file and of this server may disagree a little, a register from tomorrow is a mistake);
- before `EARLIEST_REGISTER_DATE`.
A date older than the serving version's is refused too, unless forced (`check_not_older`): going back to an
older register is a rollback an operator means, never an accident of picking the wrong file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from nixlookup.server.errors import InvalidArgumentError, ValidationError
from nixlookup.server.index import Index

__all__ = [
    "EARLIEST_REGISTER_DATE",
    "MAX_CLOCK_SKEW",
    "check_not_older",
    "check_register_date",
]

MAX_CLOCK_SKEW: Final = timedelta(days=1)
"""How far a register's date may lie ahead of this server's clock (the exporting machine's clock may run a
little ahead); the serving check (`policy`) refuses answers from a register dated further ahead."""
EARLIEST_REGISTER_DATE: Final = datetime(1999, 1, 1, tzinfo=UTC)
"""No real register version is older; an earlier date is a unit or sentinel mistake (0 s = 1970-01-01)."""


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _shown(moment: datetime) -> str:
    return f"{_utc(moment):%Y-%m-%d %H:%M} UTC"


def check_register_date(date: datetime, *, now: datetime, source: str) -> None:
    """Refuse a register date out of the plausible range (`InvalidArgumentError` naming the bound)."""
    moment = _utc(date)
    if moment > now + MAX_CLOCK_SKEW:
        raise InvalidArgumentError(
            f"{source}: register_date {_shown(moment)} is in the future (more than "
            f"{MAX_CLOCK_SKEW.days} day ahead of this server's clock, {_shown(now)}); every answer's "
            "valid_until is counted from it, so give the register version's real date"
        )
    if moment < EARLIEST_REGISTER_DATE:
        raise InvalidArgumentError(
            f"{source}: register_date {_shown(moment)} is before {EARLIEST_REGISTER_DATE:%Y-%m-%d}, older "
            "than any register version (a zero or wrongly scaled timestamp?); give its real date"
        )


def check_not_older(new: Index, current: Index, *, source: str) -> None:
    """Refuse (unless the caller forces it) a register dated before the serving one."""
    new_date, serving_date = _utc(new.meta.register_date), _utc(current.meta.register_date)
    if new_date < serving_date:
        raise ValidationError(
            f"{source}: register date {_shown(new_date)} is older than the serving version "
            f"{current.meta.version}'s ({_shown(serving_date)}): loading it would go back to an older "
            "register. Pass force to load it anyway (to undo a bad reload, say). The serving version is "
            "unchanged"
        )
