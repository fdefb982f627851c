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
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field, replace
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
from nixlookup.server.app._metrics import FollowerGauges, MetricsEndpoint, start_metrics
from nixlookup.server.app._repair import repair
from nixlookup.server.app._security import Security
from nixlookup.server.app._source import attach_register_source
from nixlookup.server.errors import NixlookupError
from nixlookup.server.logs import configure_logging, get_logger
from nixlookup.server.policy import Policy, PolicySettings
from nixlookup.server.rpc import (
    AdminServicer,
    Follower,
    FollowerSettings,
    FreshnessGate,
    LookupServicer,
    ReadOnlyAdminServicer,
    ReplicationServicer,
    RpcGuard,
    ServiceLimits,
    metrics_interceptor,
)
from nixlookup.server.store import (
    ListDescription,
    Replica,
    StateHolder,
    Store,
    StoreSettings,
    write_synthetic_file,
)
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = ["InitialState", "RunningServer", "build_server", "load_initial_state", "main", "serve"]

_log = get_logger("nixlookup.server")

LOOKUP_SERVICE = lookup_pb2.DESCRIPTOR.services_by_name["Lookup"].full_name
ADMIN_SERVICE = lookup_pb2.DESCRIPTOR.services_by_name["Admin"].full_name


REPLICATION_SERVICE = lookup_pb2.DESCRIPTOR.services_by_name["Replication"].full_name
LIVENESS_SERVICE = "nixlookup.liveness"
"""A health entry that is SERVING from bind to shutdown whatever the data says: the liveness probe's (a
follower that is behind is NOT_SERVING for Lookup, to be taken out of rotation, not restarted)."""

EPHEMERAL_DATA_DIR_PREFIX = "nixlookup-ephemeral-"
"""Without --data-dir the store lives in a temporary directory of this name (in $TMPDIR), removed on exit."""


@dataclass
class InitialState:
    """What serving needs besides the config: where answers come from (a writer's store, or a follower's
    replica of its writer) and what the startup log says about it."""

    holder: StateHolder
    describe_lists: Callable[[], Sequence[ListDescription]]
    description: dict[str, Any]
    ephemeral: bool
    """The store's directory is a temporary one (no --data-dir): it is removed on close, and Admin is not
    served (nothing it acknowledged would survive a restart)."""
    store: Store | None = None
    """The writer's store (None on a follower)."""
    follower: Follower | None = None
    """With --follow: keeps `holder` in step with the writer (started once the server listens)."""
    stop_hooks: list[Callable[[], None]] = field(default_factory=list)
    """Run when shutdown starts, before in-flight calls get their grace (end never-ending streams)."""

    def close(self) -> None:
        if self.follower is not None:
            self.follower.stop()
        if self.store is not None:
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
    when empty. With ``--follow`` no store: a follower's lists come from its writer."""
    if config.follow is not None:
        return _follower_state(config)
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
    return InitialState(
        holder=store.holder,
        describe_lists=store.describe,
        description=description,
        ephemeral=ephemeral,
        store=store,
    )


def _follower_state(config: ServerConfig) -> InitialState:
    """A follower starts empty: its state comes from the writer once the server listens (NOT_SERVING
    until then); it keeps nothing on disk."""
    assert config.follow is not None
    if config.data_dir is not None or config.register is not None:
        _log.warning(
            "follower_ignores_local_register",
            hint="with --follow the lists come from the writer; --data-dir and --register are not used",
        )
    replica = Replica()
    settings = FollowerSettings(
        writer=config.follow, name=socket.gethostname(), max_lag_seconds=config.max_lag_seconds
    )
    return InitialState(
        holder=replica.holder,
        describe_lists=replica.describe,
        description={"follow": config.follow, "max_lag_seconds": config.max_lag_seconds},
        ephemeral=False,
        follower=Follower(replica, settings),
    )


# -- the server -------------------------------------------------------------------------------------------
@dataclass
class _Services:
    """nixlookup's own servicers, built once and added to the listener(s) that serve them."""

    lookup: LookupServicer
    admin: Any
    """AdminServicer on a writer with a lasting directory, ReadOnlyAdminServicer on a follower, or None."""
    replication: ReplicationServicer | None


def _build_services(config: ServerConfig, initial: InitialState, security: Security) -> _Services:
    policy = Policy(
        PolicySettings(
            relationship_grace_days=config.relationship_grace_days,
            block_mobile_without_relationship=config.block_mobile_without_relationship,
        )
    )
    # Build the bulk path's per-caller probes (and, the first time, compile its loops) when lists change,
    # not on the first batch that needs them.
    initial.holder.add_preparer(policy.prepare)
    lookup = LookupServicer(
        initial.holder,
        policy,
        limits=ServiceLimits(max_batch=config.max_batch),
        describe_lists=initial.describe_lists,
        server_version=_server_version(),
        meter=security.meter,
        freshness=FreshnessGate(initial.holder, config.min_version_wait_seconds),
    )
    if initial.follower is not None:  # refuses writes naming the writer; Replication is the writer's alone
        return _Services(lookup, ReadOnlyAdminServicer(initial.follower.settings.writer), None)
    admin = None
    replication = None
    if initial.store is not None and not initial.ephemeral:  # Admin changes the directory: a lasting one
        admin = AdminServicer(
            initial.store,
            reload_root=config.reload_root,
            path_reloads_need_root=security.authenticator.enabled,
            max_upload_bytes=config.max_upload_bytes,
            meter=security.meter,
        )
        replication = ReplicationServicer(initial.store)
        initial.stop_hooks.append(replication.stop)  # end follower streams first: they would wait out --grace
    return _Services(lookup=lookup, admin=admin, replication=replication)


def _listener(
    config: ServerConfig,
    security: Security,
    address: str,
    *,
    lookup: LookupServicer | None,
    admin: Any,
    replication: ReplicationServicer | None = None,
    workers: int,
    metrics: MetricsEndpoint | None = None,
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
        interceptors=_interceptors(security, metrics),
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
    if replication is not None:
        lookup_pb2_grpc.add_ReplicationServicer_to_server(replication, server)
        names.append(REPLICATION_SERVICE)
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
    for name in ("", *names, LIVENESS_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, health_servicer, port, service_names, executor)


def _interceptors(security: Security, metrics: MetricsEndpoint | None) -> list[Any]:
    guard: list[Any] = [RpcGuard(security.authenticator)]
    if metrics is None:
        return guard
    return [*guard, metrics_interceptor(metrics.registry)]  # inside the guard: sees decoded messages


_ADMIN_WORKERS = 4
"""Threads of a separate Admin listener: reloads and uploads are few and long, never a crowd."""


def build_server(
    config: ServerConfig,
    initial: InitialState,
    security: Security | None = None,
    metrics: MetricsEndpoint | None = None,
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
        replication=services.replication if plan.admin_on_listen else None,
        workers=config.workers,
        metrics=metrics,
    )
    if plan.admin_listen is not None and services.admin is not None:
        try:
            running.admin = _listener(
                config,
                security,
                plan.admin_listen,
                lookup=None,
                admin=services.admin,
                replication=services.replication,  # locked down like Admin (role replicate)
                workers=_ADMIN_WORKERS,
                metrics=metrics,
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


def _wait_for_stop(
    running: RunningServer, signals: _ShutdownSignals, grace: float, hooks: Sequence[Callable[[], None]]
) -> None:
    while not signals.requested.wait(0.5):
        pass
    started = time.monotonic()
    _log.info("shutting_down", signal=signals.signal_name, grace_seconds=grace)
    listeners = running.listeners()
    for listener in listeners:
        listener.health.enter_graceful_shutdown()
    for hook in hooks:
        hook()
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
        running, metrics = _listen(config, initial, security)
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
        metrics_port=metrics.port if metrics is not None else None,
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
    writer = initial.store is not None and not initial.ephemeral
    if writer and admin_served and config.reload_root is None and not is_loopback(admin_host):
        _log.warning(
            "admin_reload_unrestricted",
            listen=admin_host,
            hint="Admin is reachable beyond loopback; set --reload-root DIR so path reloads read one "
            "directory only (with an auth file they are off without it: use Admin/Upload)",
        )
    lookup_health = _LookupHealth(running, follower=initial.follower is not None)
    watch = ExpiryWatch(initial.holder, lookup_health.register_valid, warning_days=config.expiry_warning_days)
    if initial.follower is not None:
        initial.follower.start(lookup_health.follower_ready)
    else:
        watch.start()
    try:
        _wait_for_stop(running, signals, config.grace_seconds, initial.stop_hooks)
    finally:
        watch.stop()
        if metrics is not None:
            metrics.close()
        initial.close()
    return 0


class _LookupHealth:
    """Lookup's health: the register's validity (`ExpiryWatch`) and, on a follower, its readiness (first
    snapshot in, lag within --max-lag). "" is the process's own on a writer; on a follower, which has
    nothing to serve before its first snapshot, it follows readiness too. Once shutdown begins the
    health servicer ignores further changes."""

    def __init__(self, running: RunningServer, *, follower: bool) -> None:
        self._running = running
        self._follower = follower
        self._valid = True
        self._ready = not follower
        if follower:
            self._apply()

    def register_valid(self, serving: bool) -> None:
        self._valid = serving
        self._apply()

    def follower_ready(self, ready: bool) -> None:
        self._ready = ready
        self._apply()

    def _apply(self) -> None:
        codes = health_pb2.HealthCheckResponse
        self._running.health.set(
            LOOKUP_SERVICE, codes.SERVING if self._valid and self._ready else codes.NOT_SERVING
        )
        if self._follower:
            self._running.health.set("", codes.SERVING if self._ready else codes.NOT_SERVING)


def _listen(
    config: ServerConfig, initial: InitialState, security: Security
) -> tuple[RunningServer, MetricsEndpoint | None]:
    """The metrics endpoint (with --metrics-listen), then the grpc listener(s) recording into it."""
    metrics = _start_metrics(config.metrics_listen, initial) if config.metrics_listen is not None else None
    try:
        return build_server(config, initial, security, metrics), metrics
    except NixlookupError:
        if metrics is not None:
            metrics.close()
        raise


def _start_metrics(listen: str, initial: InitialState) -> MetricsEndpoint:
    follower = initial.follower
    if follower is None:
        return start_metrics(listen, initial.holder, initial.describe_lists, store=initial.store)
    gauges = FollowerGauges(
        lag_seconds=follower.lag_seconds,
        synced=lambda: follower.synced,
        reconnects=lambda: follower.reconnects,
        writer=follower.settings.writer,
    )
    return start_metrics(listen, initial.holder, initial.describe_lists, follower=gauges)


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
