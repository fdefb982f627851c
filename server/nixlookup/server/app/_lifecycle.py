"""Signals and the graceful stop.

- `ShutdownSignals` is installed before the register loads (plain signal handlers that only record the
  request, so a signal during loading is honoured as soon as loading ends) and attached to the event
  loop once serving (``loop.add_signal_handler``), where the first SIGTERM/SIGINT asks for a graceful stop
  and a second one for an immediate one.
- `serve_until_stopped`: on the first signal, health turns NOT_SERVING for every service (watchers see it
  at once), the server stops accepting calls, in-flight calls (a running stream included) get up to
  ``--grace`` seconds to finish, then the rest are cancelled. A second signal cuts the grace short.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType

from nixlookup.server.app._assembly import RunningServer
from nixlookup.server.logs import get_logger

__all__ = ["ShutdownSignals", "serve_until_stopped"]

_log = get_logger("nixlookup.server")
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShutdownSignals:
    """SIGTERM/SIGINT: the first asks for a graceful stop, a second one for an immediate stop."""

    def __init__(self) -> None:
        self.count = 0
        self.signal_name = ""
        self._changed: asyncio.Event | None = None

    @property
    def requested(self) -> bool:
        return self.count > 0

    def install(self) -> None:
        """Before the event loop runs: record signals (loading is not interrupted)."""
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._record)
        # SIGHUP re-reads --register once the store is open (it installs its own handler); while the register
        # loads it must not kill the server, as its default action would.
        signal.signal(signal.SIGHUP, self.ignore_hangup)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the serving loop: handle signals there, so waiting for one is an `asyncio.Event`."""
        self._changed = asyncio.Event()
        if self.requested:
            self._changed.set()
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, self._on_loop, signum)

    async def next(self) -> None:
        """Wait until a signal arrives that was not waited for yet."""
        assert self._changed is not None, "attach() first"
        await self._changed.wait()
        self._changed.clear()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.signal_name = signal.Signals(signum).name

    def _on_loop(self, signum: int) -> None:
        self._record(signum, None)
        assert self._changed is not None
        self._changed.set()

    @staticmethod
    def ignore_hangup(signum: int, frame: FrameType | None) -> None:
        _log.warning("sighup_ignored", reason="the register is still loading; send SIGHUP again once serving")


async def serve_until_stopped(
    running: RunningServer,
    signals: ShutdownSignals,
    grace: float,
    stop_hooks: Sequence[Callable[[], None]] = (),
) -> None:
    """Serve until a stop signal, then stop every listener gracefully (see the module doc); `stop_hooks`
    run before the grace starts (they end streams that would never end by themselves)."""
    await signals.next()
    started = time.monotonic()
    _log.info("shutting_down", signal=signals.signal_name, grace_seconds=grace)
    listeners = running.listeners()
    for listener in listeners:
        await listener.health.enter_graceful_shutdown()
    for hook in stop_hooks:
        hook()
    stopping = asyncio.ensure_future(asyncio.gather(*(listener.server.stop(grace) for listener in listeners)))
    second_signal = asyncio.ensure_future(signals.next())
    await asyncio.wait((stopping, second_signal), return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        _log.warning("shutdown_hurried", reason="second signal; cancelling in-flight calls")
        await asyncio.gather(*(listener.server.stop(None) for listener in listeners))
        await stopping
    second_signal.cancel()
    running.shutdown_executors()
    _log.info("stopped", seconds=round(time.monotonic() - started, 3))
