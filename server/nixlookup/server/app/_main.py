"""`nixlookup-server`: assembles config, logging, the register, the services, health and signals.

Theory of operation (``serve``):
1. Parse flags/env (`config`), set up logging (`logs`), install SIGTERM/SIGINT handlers (they only set an
   event, so a signal during loading is honoured as soon as loading ends).
2. `load_initial_state` opens the `Store`, the one way a register is served: on ``--data-dir``, or without
   it on a temporary directory removed on exit. An empty directory is seeded from ``--register`` (text,
   CSV or snapshot), else from a seeded SYNTHETIC register (said loudly in the log).
3. `build_server` creates a sync grpc server (thread pool, limits from the config, the `RpcGuard`
   interceptor mapping errors to statuses), adds the services through `_add_servicers` (the one place a
   new service is wired in), health and reflection, binds, starts, and only then marks health SERVING.
   From then on `ExpiryWatch` keeps ``nixlookup.v1.Lookup``'s health in step with the register's validity
   (NOT_SERVING once its answers have expired) and warns daily before that.
4. On the first signal: health NOT_SERVING for every service, stop accepting calls, give in-flight calls
   (a running stream included) up to ``--grace`` seconds to finish, exit 0. A second signal cuts the grace
   short. A startup failure (unreadable register, address in use) logs why and exits 1.
Why sync grpc and not grpc.aio: see docs/service.md (measured; the work per call is numpy, not waiting).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nixlookup.server._memory import release_free_memory
from nixlookup.server.app._config import RepairConfig, ServerConfig, SynthConfig, parse_args
from nixlookup.server.app._expiry import ExpiryWatch
from nixlookup.server.app._repair import repair
from nixlookup.server.app._source import attach_register_source
from nixlookup.server.errors import NixlookupError
from nixlookup.server.logs import configure_logging, get_logger
from nixlookup.server.policy import Policy, PolicySettings
from nixlookup.server.rpc import AdminServicer, LookupServicer, RpcGuard, ServiceLimits
from nixlookup.server.store import Store, StoreSettings, write_synthetic_file
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = ["InitialState", "RunningServer", "build_server", "load_initial_state", "main", "serve"]

_log = get_logger("nixlookup.server")

LOOKUP_SERVICE = lookup_pb2.DESCRIPTOR.services_by_name["Lookup"].full_name
ADMIN_SERVICE = lookup_pb2.DESCRIPTOR.services_by_name["Admin"].full_name


EPHEMERAL_DATA_DIR_PREFIX = "nixlookup-ephemeral-"
"""Without --data-dir the store lives in a temporary directory of this name (in $TMPDIR), removed on exit."""


@dataclass
class InitialState:
    """What serving needs besides the config: the store and what the startup log says about it."""

    store: Store
    description: dict[str, Any]
    ephemeral: bool
    """The store's directory is a temporary one (no --data-dir): it is removed on close, and Admin is not
    served (nothing it acknowledged would survive a restart)."""

    def close(self) -> None:
        self.store.close()
        if self.ephemeral:
            shutil.rmtree(self.store.root, ignore_errors=True)


@dataclass
class RunningServer:
    """A started server: the grpc server, its health servicer, the port it bound and its services."""

    server: grpc.Server
    health: health.HealthServicer
    port: int
    service_names: tuple[str, ...]
    executor: futures.ThreadPoolExecutor


def _server_version() -> str:
    try:
        return metadata.version("nixlookup")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- the register -----------------------------------------------------------------------------------------
def _open_store(config: ServerConfig, data_dir: Path) -> Store:
    settings = StoreSettings(compact_after_records=config.compact_after)
    if config.synthetic_seed is not None:
        settings = replace(settings, synthetic_seed=config.synthetic_seed)
    return Store.open(
        data_dir,
        settings=settings,
        initial_register=config.register,
        synthetic_size=config.synthetic_size,
    )


def load_initial_state(config: ServerConfig) -> InitialState:
    """The first serving state, always through a `Store`: the ``--data-dir`` directory, or without one a
    temporary directory removed on exit. Either is seeded from ``--register`` (else a synthetic register)
    when empty."""
    started = time.perf_counter()
    if config.data_dir is not None:
        data_dir, ephemeral = config.data_dir, False
    else:
        data_dir, ephemeral = Path(tempfile.mkdtemp(prefix=EPHEMERAL_DATA_DIR_PREFIX)), True
    try:
        store = _open_store(config, data_dir)
    except BaseException:
        if ephemeral:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    attach_register_source(store, config.register, watch_seconds=config.watch_seconds)  # SIGHUP, --watch
    release_free_memory()  # the load's temporaries: give them back instead of holding them as RSS
    state = store.holder.current()
    meta = state.register.meta
    description: dict[str, Any] = {
        "register": meta.source,
        "register_version": meta.version,
        "count": meta.count,
        "synthetic": meta.synthetic,
        "caller_lists": len(state.lists),
        "data_dir": str(data_dir),
        "data_dir_ephemeral": ephemeral,
        "load_seconds": round(time.perf_counter() - started, 3),
    }
    return InitialState(store=store, description=description, ephemeral=ephemeral)


# -- the server -------------------------------------------------------------------------------------------
def _add_servicers(server: grpc.Server, config: ServerConfig, initial: InitialState) -> list[str]:
    """Add nixlookup's own services to `server`; returns their full names (for health and reflection)."""
    policy = Policy(
        PolicySettings(
            relationship_grace_days=config.relationship_grace_days,
            block_mobile_without_relationship=config.block_mobile_without_relationship,
        )
    )
    # Build the bulk path's per-caller probes (and, the first time, compile its loops) when lists change,
    # not on the first batch that needs them.
    initial.store.holder.add_preparer(policy.prepare)
    lookup = LookupServicer(
        initial.store.holder,
        policy,
        limits=ServiceLimits(max_batch=config.max_batch),
        describe_lists=initial.store.describe,
        server_version=_server_version(),
    )
    lookup_pb2_grpc.add_LookupServicer_to_server(lookup, server)
    names = [LOOKUP_SERVICE]
    if not initial.ephemeral:
        # Admin changes the data directory, so it exists only when there is a lasting one.
        lookup_pb2_grpc.add_AdminServicer_to_server(
            AdminServicer(initial.store, reload_root=config.reload_root), server
        )
        names.append(ADMIN_SERVICE)
    return names


def build_server(config: ServerConfig, initial: InitialState) -> RunningServer:
    """Create, bind and start the grpc server; health is SERVING when this returns."""
    executor = futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="rpc")
    options = [
        # Requests up to this size are accepted; a larger one fails with RESOURCE_EXHAUSTED naming the limit.
        ("grpc.max_receive_message_length", config.max_message_bytes),
        # Replies are smaller than requests (bits and bytes per number), the same ceiling is ample.
        ("grpc.max_send_message_length", config.max_message_bytes),
        # A second server on a busy port must fail, not silently share it (grpc enables SO_REUSEPORT).
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        executor,
        interceptors=[RpcGuard()],
        options=options,
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = _add_servicers(server, config, initial)
    service_names = (*names, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(service_names, server)
    try:
        port = server.add_insecure_port(config.listen)
    except RuntimeError as error:
        executor.shutdown(wait=False)
        raise NixlookupError(
            f"cannot listen on {config.listen}: address in use or not available ({error})"
        ) from error
    server.start()
    for name in ("", *names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, health_servicer, port, service_names, executor)


def _write_port_file(path: Path, port: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{port}\n", encoding="ascii")
    os.replace(temporary, path)


class _ShutdownSignals:
    """SIGTERM/SIGINT handlers: the first asks for a graceful stop, a second one for an immediate stop."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.hurry = threading.Event()
        self.signal_name = ""

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        # SIGHUP re-reads --register once the store is open (it installs its own handler); while the register
        # loads it must not kill the server, as its default action would.
        signal.signal(signal.SIGHUP, self._ignore_hangup)

    @staticmethod
    def _ignore_hangup(signum: int, frame: FrameType | None) -> None:
        _log.warning("sighup_ignored", reason="the register is still loading; send SIGHUP again once serving")

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            self.hurry.set()
        self.signal_name = signal.Signals(signum).name
        self.requested.set()


def _wait_for_stop(running: RunningServer, signals: _ShutdownSignals, grace: float) -> None:
    while not signals.requested.wait(0.5):
        pass
    started = time.monotonic()
    _log.info("shutting_down", signal=signals.signal_name, grace_seconds=grace)
    running.health.enter_graceful_shutdown()
    stopped = running.server.stop(grace)
    while not stopped.wait(0.1):
        if signals.hurry.is_set():
            _log.warning("shutdown_hurried", reason="second signal; cancelling in-flight calls")
            running.server.stop(0)
            signals.hurry.clear()
    running.executor.shutdown(wait=False, cancel_futures=True)
    _log.info("stopped", seconds=round(time.monotonic() - started, 3))


def serve(config: ServerConfig) -> int:
    """Run the server until SIGTERM/SIGINT; 0 after a clean stop, 1 when it cannot start."""
    signals = _ShutdownSignals()
    signals.install()
    try:
        initial = load_initial_state(config)
    except (NixlookupError, OSError) as error:
        _log.error("startup_failed", step="load register", error=str(error))
        return 1
    if initial.description.get("synthetic"):
        _log.warning(
            "SYNTHETIC register: serving made-up numbers, not the NIX register",
            hint="pass --register FILE or --data-dir DIR holding a real register",
        )
    if signals.requested.is_set():
        _log.info("stopped", reason=f"{signals.signal_name} during startup")
        initial.close()
        return 0
    try:
        running = build_server(config, initial)
    except NixlookupError as error:
        _log.error("startup_failed", step="listen", error=str(error))
        initial.close()
        return 1
    host = config.listen.rpartition(":")[0]
    if config.port_file is not None:
        _write_port_file(config.port_file, running.port)
    _log.info(
        "serving",
        listen=f"{host}:{running.port}",
        services=list(running.service_names),
        workers=config.workers,
        max_batch=config.max_batch,
        max_message_bytes=config.max_message_bytes,
        **initial.description,
    )
    if not initial.ephemeral and config.reload_root is None and not _is_loopback(host):
        _log.warning(
            "admin_reload_unrestricted",
            listen=host,
            hint="Admin is reachable beyond loopback and may reload any file the server can read; "
            "set --reload-root DIR (and keep Admin behind authentication)",
        )
    watch = ExpiryWatch(
        initial.store.holder,
        lambda serving: _set_lookup_health(running, serving),
        warning_days=config.expiry_warning_days,
    ).start()
    try:
        _wait_for_stop(running, signals, config.grace_seconds)
    finally:
        watch.stop()
        initial.close()
    return 0


def _set_lookup_health(running: RunningServer, serving: bool) -> None:
    """Lookup's health follows the register's validity (`ExpiryWatch`); "" stays the process's own."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    running.health.set(LOOKUP_SERVICE, status)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def synth(config: SynthConfig) -> int:
    """Write a seeded synthetic register as text or snapshot."""
    started = time.perf_counter()
    index = write_synthetic_file(config.out, size=config.size, seed=config.seed, fmt=config.format)
    _log.info(
        "synthetic_register_written",
        path=str(config.out),
        format=config.format,
        count=index.meta.count,
        version=index.meta.version,
        seconds=round(time.perf_counter() - started, 3),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nixlookup-server``."""
    config = parse_args(argv)
    configure_logging(config.log_level, config.log_format)
    if isinstance(config, SynthConfig):
        return synth(config)
    if isinstance(config, RepairConfig):
        return repair(config)
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
