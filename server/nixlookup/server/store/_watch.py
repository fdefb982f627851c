"""Re-reading the configured register file: on SIGHUP, and (``--watch``) when the file changes.

- A signal handler must not do work: `request_reload` only sets an event; one background thread does the
  reload through `Store.reload`, so a refused file is logged and the serving version stays.
- Watching polls ``(mtime, size, inode)`` every `interval` seconds. A change is acted on only once the
  signature has been the same for two polls in a row, so a file still being copied in place is not read
  half-written (writing a temporary file and renaming it is still the better habit). A signature that
  was refused is not retried until the file changes again.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from nixlookup.server.errors import NixlookupError
from nixlookup.server.logs import get_logger
from nixlookup.server.store._registerfile import shown_path
from nixlookup.server.store._state import REGISTER_KEY
from nixlookup.server.store._store import Store

__all__ = ["RegisterSourceWatcher"]

_log = get_logger("nixlookup.store.watch")

_Signature = tuple[int, int, int]


def _signature(path: Path) -> _Signature | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class RegisterSourceWatcher:
    """Reloads the register from `path` on request, and on change when `watch` is set."""

    def __init__(
        self,
        store: Store,
        path: Path,
        *,
        watch: bool,
        interval: float = 2.0,
        fmt: str | None = None,
        column: str | None = None,
    ) -> None:
        self._store = store
        self._path = path
        self._watch = watch
        self._interval = interval
        self._fmt = fmt
        self._column = column
        self._requested = threading.Event()
        self._stopping = threading.Event()
        self._reason = ""
        self._loaded = _signature(path)
        self._pending: _Signature | None = None
        self._thread = threading.Thread(target=self._run, name="register-watch", daemon=True)
        self.reloads = 0

    def start(self) -> RegisterSourceWatcher:
        self._thread.start()
        return self

    def request_reload(self, reason: str) -> None:
        """Ask for a reload of the register file (safe to call from a signal handler)."""
        self._reason = reason
        self._requested.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._requested.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            requested = self._requested.wait(self._interval if self._watch else None)
            if self._stopping.is_set():
                return
            if requested:
                self._requested.clear()
                self._reload(self._reason or "request", _signature(self._path))
            elif self._watch:
                self._poll()

    def _poll(self) -> None:
        current = _signature(self._path)
        if current is None or current == self._loaded:
            self._pending = None
            return
        if current != self._pending:
            self._pending = current  # changed since the last poll: wait until it holds still
            return
        self._pending = None
        self._reload("file changed", current)

    def _reload(self, reason: str, signature: _Signature | None) -> None:
        self._loaded = signature
        _log.info("register_reload_requested", reason=reason, path=shown_path(self._path))
        try:
            self._store.reload(REGISTER_KEY, self._path, fmt=self._fmt, column=self._column)
        except (NixlookupError, OSError) as error:
            _log.warning("register_reload_failed", path=shown_path(self._path), error=str(error))
            return
        self.reloads += 1
