"""The store's part of the server process: re-read the configured register on SIGHUP and with --watch.

`app` calls `attach_register_source` once the store is open, from the main thread (Python installs signal
handlers only there). SIGHUP re-reads the ``--register`` file through the same validated reload as
`Admin/Reload`; the handler only sets an event, the watcher thread does the work. The watcher stops when
the store closes.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

from nixlookup.server.logs import get_logger
from nixlookup.server.store import RegisterSourceWatcher, Store

__all__ = ["attach_register_source"]

_log = get_logger("nixlookup.store")


def attach_register_source(
    store: Store, register: Path | None, *, watch_seconds: float, install_sighup: bool = True
) -> RegisterSourceWatcher | None:
    """Reload `register` on SIGHUP, and when it changes if `watch_seconds` > 0 (the poll interval)."""
    watcher = None
    if register is not None:
        watcher = RegisterSourceWatcher(
            store, register, watch=watch_seconds > 0, interval=watch_seconds or 1.0
        ).start()
        store.on_close(watcher.stop)

    def on_sighup(signum: int, frame: FrameType | None) -> None:
        if watcher is None:
            _log.warning("sighup_ignored", reason="no --register file configured to re-read")
        else:
            watcher.request_reload("SIGHUP")

    if install_sighup:
        signal.signal(signal.SIGHUP, on_sighup)
    return watcher
