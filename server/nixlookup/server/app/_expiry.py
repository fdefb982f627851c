"""The serving register's expiry, watched: health for ``nixlookup.v1.Lookup`` and the daily warning.

Theory of operation:
- Every `POLL_SECONDS` the watch reads the serving register (one attribute read) and asks
  `policy.register_status`. While the register is usable, ``nixlookup.v1.Lookup`` is SERVING; once its
  answers have expired (date + 2 months) or its date lies in the future, NOT_SERVING, so load balancers
  and readiness probes that name the service move traffic to a replica with a current register. A reload
  of a current register turns it SERVING again within a poll. (The checks themselves never depend on this
  watch: the policy refuses register-dependent checks on its own, from the first second.)
- The overall ``""`` status stays SERVING: it says the process is up and can be mended (Admin, health and
  reflection answer; a reload fixes the register). That is what a liveness probe asks, and restarting the
  process would not make its register any younger. Readiness probes and load balancers must name
  ``nixlookup.v1.Lookup`` (docs/service.md).
- The log: from ``--expiry-warning-days`` before the expiry, one warning per UTC day
  (``register_expires_soon``); once it has expired, one error per day (``register_expired``), the first at
  the moment it happens; ``register_usable_again`` once a reload fixed it.
- The first check runs in `start`, called right after the server started, so a server that starts on an
  expired register turns Lookup NOT_SERVING within milliseconds (and answers no check from it meanwhile).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime

from nixlookup.server.logs import get_logger
from nixlookup.server.policy import register_status
from nixlookup.server.store import StateHolder

__all__ = ["POLL_SECONDS", "ExpiryWatch"]

_log = get_logger("nixlookup.expiry")

POLL_SECONDS = 1.0
"""How often the watch looks: health follows an expiry or a reload within this long; each look is an
attribute read and two datetime comparisons."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ExpiryWatch:
    """Keeps Lookup's health in step with the serving register's validity and warns before it ends."""

    def __init__(
        self,
        holder: StateHolder,
        set_serving: Callable[[bool], None],
        *,
        warning_days: float,
        clock: Callable[[], datetime] = _utc_now,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._holder = holder
        self._set_serving = set_serving
        self._warning_days = warning_days
        self._clock = clock
        self._poll_seconds = poll_seconds
        self._serving: bool | None = None
        self._logged: tuple[str, date] | None = None  # (what, UTC day) of the last warning or error
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Look once: set health if it changed, log what is due. Returns whether the register is usable
        (True while a follower has no state yet: its readiness, not its register, keeps it NOT_SERVING)."""
        if not self._holder.loaded:
            return True
        now = self._clock()
        meta = self._holder.current().register.meta
        status = register_status(meta, now, warning_days=self._warning_days)
        fields = {
            "register_version": meta.version,
            "register_date": meta.register_date.isoformat(),
            "valid_until": status.valid_until.isoformat(),
            "days_left": round(status.days_left, 2),
        }
        if status.usable != self._serving:
            if status.usable and self._serving is False:
                _log.info("register_usable_again", **fields)
            self._serving = status.usable
            self._set_serving(status.usable)
        what = "expired" if not status.usable else "expires_soon" if status.warn else ""
        if what and self._logged != (what, now.date()):
            self._logged = (what, now.date())
            if what == "expired":
                _log.error(
                    "register_expired",
                    **fields,
                    hint="register-dependent checks fail with FAILED_PRECONDITION and health for "
                    "nixlookup.v1.Lookup is NOT_SERVING until a current register is loaded "
                    "(nixlookup admin reload FILE)",
                )
            else:
                _log.warning(
                    "register_expires_soon",
                    **fields,
                    hint="load a newer register before valid_until: after it register-dependent checks "
                    "fail and health for nixlookup.v1.Lookup turns NOT_SERVING",
                )
        return status.usable

    def start(self) -> ExpiryWatch:
        """Check once now, then keep checking in a daemon thread until `stop`."""
        self.check()
        self._thread = threading.Thread(target=self._run, name="register-expiry", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.wait(self._poll_seconds):
            try:
                self.check()
            except Exception:  # a watch that dies would leave health wrong: log and keep watching
                _log.exception("expiry_check_failed")

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
