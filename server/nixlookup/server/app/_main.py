"""`nixlookup-server`: assembles config, logging, the register, the services, health and signals.

Theory of operation (``serve``):
1. Parse flags/env (`config`), set up logging (`logs`), install SIGTERM/SIGINT handlers (they only set an
   event, so a signal during loading is honoured as soon as loading ends).
2. `load_initial_state` opens the `Store`, the one way a register is served: on ``--data-dir``, or without
   it on a temporary directory removed on exit. An empty directory is seeded from ``--register`` (text,
   CSV or snapshot), else from a seeded SYNTHETIC register (said loudly in the log).
3. `Security.from_config` (before the register loads) reads the auth file, checks the TLS files and
   decides where Admin is served, refusing an unsafe exposure (docs/security.md). `build_server` builds
   the servicers once (`_build_services`, the one place a new service is wired in) and a sync grpc server
   per listener (`_listener`: thread pool, limits, the `RpcGuard` interceptor mapping errors to statuses
   and authenticating each call, health, reflection listing only that listener's services, TLS when
   configured): ``--listen`` with Lookup (and Admin when it is loopback), ``--admin-listen`` with Admin.
   Each is bound, started, and only then marked SERVING. SIGHUP also re-reads the auth file and the
   certificates.
   From then on `ExpiryWatch` keeps ``nixlookup.v1.Lookup``'s health in step with the register's validity
   (NOT_SERVING once its answers have expired) and warns daily before that.
4. On the first signal: health NOT_SERVING for every service, stop accepting calls, give in-flight calls
   (a running stream included) up to ``--grace`` seconds to finish, exit 0. A second signal cuts the grace
   short. A startup failure (unreadable register, address in use) logs why and exits 1.
Why sync grpc and not grpc.aio: see docs/service.md (measured; the work per call is numpy, not waiting).
"""

from __future__ import annotations

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
from nixlookup.server.app._exposure import host_of, is_loopback
from nixlookup.server.app._repair import repair
from nixlookup.server.app._security import Security
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
    """A started server: the grpc server, its health servicer, the port it bound and its services; the
    separate Admin listener (``--admin-listen``) as `admin`."""

    server: grpc.Server
    health: health.HealthServicer
    port: int
    service_names: tuple[str, ...]
    executor: futures.ThreadPoolExecutor
    admin: RunningServer | None = None

    def listeners(self) -> list[RunningServer]:
        return [self] if self.admin is None else [self, self.admin]

    def stop_now(self) -> None:
        for listener in self.listeners():
            listener.server.stop(0)
            listener.executor.shutdown(wait=False, cancel_futures=True)


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
@dataclass
class _Services:
    """nixlookup's own servicers, built once and added to the listener(s) that serve them."""

    lookup: LookupServicer
    admin: AdminServicer | None


def _build_services(config: ServerConfig, initial: InitialState, security: Security) -> _Services:
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
        meter=security.meter,
    )
    admin = None
    if not initial.ephemeral:  # Admin changes the data directory: only a lasting one
        admin = AdminServicer(
            initial.store,
            reload_root=config.reload_root,
            path_reloads_need_root=security.authenticator.enabled,
            max_upload_bytes=config.max_upload_bytes,
            meter=security.meter,
        )
    return _Services(lookup=lookup, admin=admin)


def _listener(
    config: ServerConfig,
    security: Security,
    address: str,
    *,
    lookup: LookupServicer | None,
    admin: AdminServicer | None,
    workers: int,
) -> RunningServer:
    """One grpc server bound to `address` with the given services, health and reflection (listing only
    what this listener serves), TLS when configured; started, health SERVING."""
    executor = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc")
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
        interceptors=[RpcGuard(security.authenticator)],
        options=options,
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = []
    if lookup is not None:
        lookup_pb2_grpc.add_LookupServicer_to_server(lookup, server)
        names.append(LOOKUP_SERVICE)
    if admin is not None:
        lookup_pb2_grpc.add_AdminServicer_to_server(admin, server)
        names.append(ADMIN_SERVICE)
    service_names = (*names, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(service_names, server)
    credentials = security.credentials()
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as error:
        executor.shutdown(wait=False)
        raise NixlookupError(
            f"cannot listen on {address}: address in use or not available ({error})"
        ) from error
    server.start()
    for name in ("", *names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, health_servicer, port, service_names, executor)


_ADMIN_WORKERS = 4
"""Threads of a separate Admin listener: reloads and uploads are few and long, never a crowd."""


def build_server(
    config: ServerConfig, initial: InitialState, security: Security | None = None
) -> RunningServer:
    """Create, bind and start the grpc server(s); health is SERVING when this returns. Admin is on
    --listen, on its own --admin-listen listener (`RunningServer.admin`), or nowhere (`Security.plan`)."""
    security = security or Security.from_config(config)
    services = _build_services(config, initial, security)
    plan = security.plan
    running = _listener(
        config,
        security,
        config.listen,
        lookup=services.lookup,
        admin=services.admin if plan.admin_on_listen else None,
        workers=config.workers,
    )
    if plan.admin_listen is not None and services.admin is not None:
        try:
            running.admin = _listener(
                config, security, plan.admin_listen, lookup=None, admin=services.admin, workers=_ADMIN_WORKERS
            )
        except NixlookupError:
            running.stop_now()
            raise
    return running


def _write_port_file(path: Path, running: RunningServer) -> None:
    """The bound port on the first line; ``admin PORT`` on the next when Admin has its own listener."""
    text = f"{running.port}\n" + (f"admin {running.admin.port}\n" if running.admin is not None else "")
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="ascii")
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
        signal.signal(signal.SIGHUP, self.ignore_hangup)

    @staticmethod
    def ignore_hangup(signum: int, frame: FrameType | None) -> None:
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
    listeners = running.listeners()
    for listener in listeners:
        listener.health.enter_graceful_shutdown()
    stopping = [listener.server.stop(grace) for listener in listeners]
    for stopped in stopping:
        while not stopped.wait(0.1):
            if signals.hurry.is_set():
                _log.warning("shutdown_hurried", reason="second signal; cancelling in-flight calls")
                for listener in listeners:
                    listener.server.stop(0)
                signals.hurry.clear()
    for listener in listeners:
        listener.executor.shutdown(wait=False, cancel_futures=True)
    _log.info("stopped", seconds=round(time.monotonic() - started, 3))


def serve(config: ServerConfig) -> int:
    """Run the server until SIGTERM/SIGINT; 0 after a clean stop, 1 when it cannot start."""
    signals = _ShutdownSignals()
    signals.install()
    try:
        security = Security.from_config(config)  # before the register loads: a refusal is immediate
    except NixlookupError as error:
        _log.error("startup_failed", step="security", error=str(error))
        return 1
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
        running = build_server(config, initial, security)
    except NixlookupError as error:
        _log.error("startup_failed", step="listen", error=str(error))
        initial.close()
        return 1
    security.install_sighup(replaces=_ShutdownSignals.ignore_hangup)
    host = host_of(config.listen)
    if config.port_file is not None:
        _write_port_file(config.port_file, running)
    for warning in security.startup_warnings():
        _log.warning("insecure" if warning.startswith("--insecure") else "security_warning", problem=warning)
    _log.info(
        "serving",
        listen=f"{host}:{running.port}",
        admin_listen=(
            f"{host_of(config.admin_listen or '')}:{running.admin.port}"
            if running.admin is not None
            else ("on --listen" if security.plan.admin_on_listen else "not served")
        ),
        services=list(running.service_names),
        workers=config.workers,
        max_batch=config.max_batch,
        max_message_bytes=config.max_message_bytes,
        **security.describe(),
        **initial.description,
    )
    admin_host = host_of(config.admin_listen) if config.admin_listen else host
    admin_served = running.admin is not None or security.plan.admin_on_listen
    if not initial.ephemeral and admin_served and config.reload_root is None and not is_loopback(admin_host):
        _log.warning(
            "admin_reload_unrestricted",
            listen=admin_host,
            hint="Admin is reachable beyond loopback; set --reload-root DIR so path reloads read one "
            "directory only (with an auth file they are off without it: use Admin/Upload)",
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
