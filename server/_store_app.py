"""The store's part of the server process: open the data directory, serve Admin, reload on SIGHUP/--watch.

`app` calls `open_store_assembly` when ``--data-dir`` is set and gets back what it wires in: the store
(its holder is what the Lookup service reads, its `describe` what GetRegisterInfo shows), a function adding
the Admin servicer, and `close` (stop the watcher, close the journals, release the directory lock).
SIGHUP re-reads the configured ``--register`` file through the same validated reload as `Admin/Reload`;
the handler only sets an event, the watcher thread does the work (`attach_register_source`).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

from nixlookup.server._store_watch import RegisterSourceWatcher
from nixlookup.server.admin_service import AdminServicer
from nixlookup.server.logs import get_logger
from nixlookup.server.store import Store, StoreSettings
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = ["ADMIN_SERVICE", "StoreAssembly", "attach_register_source", "open_store_assembly"]

_log = get_logger("nixlookup.store")

ADMIN_SERVICE = lookup_pb2.DESCRIPTOR.services_by_name["Admin"].full_name


def attach_register_source(
    store: Store, register: Path | None, *, watch_seconds: float, install_sighup: bool = True
) -> RegisterSourceWatcher | None:
    """Reload `register` on SIGHUP, and when it changes if `watch_seconds` > 0 (the poll interval).

    Call from the main thread when `install_sighup` is set (Python installs signal handlers only there).
    The watcher stops when the store closes.
    """
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


@dataclass
class StoreAssembly:
    """An open store and what the server process wires in around it."""

    store: Store
    watcher: RegisterSourceWatcher | None
    description: dict[str, Any] = field(default_factory=dict)

    def add_servicers(self, server: grpc.Server) -> list[str]:
        """Add the Admin service; returns its full name (for health and reflection)."""
        lookup_pb2_grpc.add_AdminServicer_to_server(AdminServicer(self.store), server)
        return [ADMIN_SERVICE]

    def close(self) -> None:
        self.store.close()  # stops the watcher first (on_close hook)


def open_store_assembly(
    data_dir: Path,
    *,
    register: Path | None,
    synthetic_size: int | None,
    synthetic_seed: int | None,
    watch_seconds: float = 0.0,
    settings: StoreSettings | None = None,
    install_sighup: bool = True,
) -> StoreAssembly:
    """Open `data_dir` (seeded from `register` or a synthetic register when empty) and get it ready."""
    settings = settings or StoreSettings()
    if synthetic_seed is not None:
        from dataclasses import replace

        settings = replace(settings, synthetic_seed=synthetic_seed)
    store = Store.open(data_dir, settings=settings, initial_register=register, synthetic_size=synthetic_size)
    try:
        watcher = attach_register_source(
            store, register, watch_seconds=watch_seconds, install_sighup=install_sighup
        )
    except BaseException:
        store.close()
        raise
    meta = store.holder.current().register.meta
    description = {
        "data_dir": str(data_dir),
        "register": meta.source,
        "register_version": meta.version,
        "count": meta.count,
        "synthetic": meta.synthetic,
        "lists": len(store.keys()),
        "watch_seconds": watch_seconds,
    }
    return StoreAssembly(store, watcher, description)
