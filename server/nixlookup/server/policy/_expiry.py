"""Never an answer from an expired register: when a register version's answers stop holding, and what the
server does before and after.

Theory of operation:
- A NOT_REGISTERED answer holds for `VALID_MONTHS` calendar months from the register version's date
  (`valid_until_for`; NIX: "2 months counted from the register version's date"). A register is *usable* at
  `now` while ``date - MAX_CLOCK_SKEW <= now < date + 2 months``: before that window its date lies in the
  future (a wrong date would stretch every valid_until), after it every answer resting on it has expired.
- Outside the window no answer that depends on the register is given: a Check, or a CheckStream batch, for
  a purpose the register applies to (sales, marketing, fundraising) fails with `RegisterExpiredError`
  (FAILED_PRECONDITION) naming the expiry date and what to do. This holds for every number of such a
  request, including invalid or opted-out ones: one rule for the request, so a dialer never mistakes a
  partial answer for a working register.
- Requests for an exempt purpose (market research, public information ...) never consult the register
  (rules 1-3 decide them), so they are still answered, but without a valid_until (Check: the field unset;
  CheckStream: valid_until unset and valid_until_days 0): nothing counted from an expired register may be
  sent, and no ALLOWED answer ever carries a valid_until in the past.
- `register_status` is what the app's watch reads every second: whether ``nixlookup.v1.Lookup`` is
  SERVING, and whether the daily warning (from ``--expiry-warning-days`` before the expiry) is due.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from nixlookup.server.errors import RegisterExpiredError
from nixlookup.server.index import IndexMeta
from nixlookup.server.policy._dates import add_calendar_months, as_utc
from nixlookup.server.store import MAX_CLOCK_SKEW

__all__ = [
    "VALID_MONTHS",
    "RegisterStatus",
    "RegisterValidity",
    "expired_error",
    "register_status",
    "valid_until_for",
    "validity_of",
]

VALID_MONTHS: Final = 2
"""A number found not registered may be called for this many calendar months from the register's date."""

_LATEST = datetime.max.replace(tzinfo=UTC)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_WHAT_TO_DO = (
    "load a current register (nixlookup admin reload FILE, or SIGHUP with --register) or send the call "
    "to a replica that serves one"
)


@dataclass(frozen=True, slots=True)
class RegisterValidity:
    """The window in which answers may rest on a register version of this date."""

    register_date: datetime
    valid_until: datetime
    """register_date + 2 calendar months (UTC); clamped to the largest datetime for absurd dates."""
    not_before: datetime
    """register_date - MAX_CLOCK_SKEW: a clock earlier than this means the date lies in the future."""

    def usable_at(self, now: datetime) -> bool:
        return self.not_before <= now < self.valid_until


@functools.lru_cache(maxsize=64)  # one register date per version: computed once, not per call
def validity_of(register_date: datetime) -> RegisterValidity:
    """The validity window of a register version dated `register_date`."""
    date = as_utc(register_date)
    try:
        valid_until = add_calendar_months(date, VALID_MONTHS)
    except (ValueError, OverflowError):  # past year 9999: such a register is refused as future-dated
        valid_until = _LATEST
    try:
        not_before = date - MAX_CLOCK_SKEW
    except OverflowError:
        not_before = _EARLIEST
    return RegisterValidity(date, valid_until, not_before)


def valid_until_for(register_date: datetime) -> datetime:
    """Until when a NOT_REGISTERED answer holds: the register's date + 2 calendar months (UTC)."""
    return validity_of(register_date).valid_until


def _shown(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def expired_error(meta: IndexMeta, now: datetime) -> RegisterExpiredError:
    """The refusal for a register-dependent request while the register is not usable at `now`."""
    validity = validity_of(meta.register_date)
    if now < validity.not_before:
        return RegisterExpiredError(
            f"the serving register {meta.version} is dated {_shown(validity.register_date)}, more than "
            f"{MAX_CLOCK_SKEW.days} day ahead of this server's clock ({_shown(now)}): answers resting on it "
            f"would claim a validity it does not have. Fix the clock, or {_WHAT_TO_DO}"
        )
    return RegisterExpiredError(
        f"the serving register {meta.version} (dated {validity.register_date:%Y-%m-%d}) expired at "
        f"{_shown(validity.valid_until)}: its answers hold {VALID_MONTHS} months from its date, so no call "
        f"for this purpose may rest on it. To answer again, {_WHAT_TO_DO}"
    )


@dataclass(frozen=True, slots=True)
class RegisterStatus:
    """What the serving register's dates mean now, for health and the log."""

    usable: bool
    valid_until: datetime
    days_left: float
    """Days until valid_until (negative once expired)."""
    warn: bool
    """Within the warning window before the expiry, or not usable: the daily warning is due."""
    message: str


def register_status(meta: IndexMeta, now: datetime, *, warning_days: float) -> RegisterStatus:
    """Is the register `meta` usable at `now`, and is a warning due (`warning_days` before it expires)?"""
    validity = validity_of(meta.register_date)
    left = validity.valid_until - now if validity.valid_until < _LATEST else timedelta.max
    days_left = left.total_seconds() / 86_400
    if not validity.usable_at(now):
        return RegisterStatus(False, validity.valid_until, days_left, True, str(expired_error(meta, now)))
    message = (
        f"the serving register {meta.version} (dated {validity.register_date:%Y-%m-%d}) expires at "
        f"{_shown(validity.valid_until)}, in {days_left:.1f} days; after that register-dependent checks fail "
        f"and health for nixlookup.v1.Lookup turns NOT_SERVING. Before then, {_WHAT_TO_DO}"
    )
    return RegisterStatus(True, validity.valid_until, days_left, days_left <= warning_days, message)
