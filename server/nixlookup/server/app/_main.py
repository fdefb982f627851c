"""`nixlookup-server`: parse the command line, set up logging, and run ``serve`` or ``synth``.

Theory of operation (``serve``):
1. Parse flags/env (`_config`), set up logging (`logs`), check that the address can be bound (else one
   line naming ``--listen`` and exit 2), install the SIGTERM/SIGINT handlers (`_lifecycle`; they only
   record the signal, so one arriving during loading is honoured once it ends).
2. `Security.from_config` (before the register loads) reads the auth file, checks the TLS files and
   decides where Admin is served, refusing an unsafe exposure (docs/security.md); with ``--otel`` the
   tracer provider is built (`_tracing`; without the extra: exit 2 naming it). `load_initial_state`
   (`_assembly`) opens the Store that serves the register, synchronously, before any port is bound.
3. On a uvloop event loop, the metrics endpoint starts (``--metrics-listen``), then `start_server` builds
   and starts the grpc.aio listener(s); SIGHUP also re-reads the auth file and the certificates; the port
   file is written and ``serving`` logged. `_LookupHealth` keeps ``nixlookup.v1.Lookup``'s health in step
   with the register's validity (`ExpiryWatch`: NOT_SERVING once its answers have expired, a daily warning
   before that) and, on a follower, with its readiness (first snapshot in, lag within ``--max-lag``); the
   follower starts replaying its writer. `serve_until_stopped` waits for a signal and stops gracefully
   (ending follower streams first). Exit 0.
4. Exit codes: 0 after a clean stop, 1 when the server cannot start (unreadable register, refused data
   directory: logged), 2 when its configuration is wrong (bad flag or variable, an address it cannot bind).
Why grpc.aio: an open stream, idle or stalled, must hold no thread (docs/service.md, "Server model").
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import uvloop
from grpc_health.v1 import health_pb2

from nixlookup.server.app._assembly import (
    LOOKUP_SERVICE,
    InitialState,
    ListenError,
    ProcessRole,
    RunningServer,
    check_listen_address,
    load_initial_state,
    start_server,
)
from nixlookup.server.app._config import (
    EXIT_CONFIG_ERROR,
    EXIT_START_FAILED,
    RepairConfig,
    ServerConfig,
    SynthConfig,
    config_error,
    parse_args,
)
from nixlookup.server.app._expiry import ExpiryWatch
from nixlookup.server.app._exposure import host_of, is_loopback
from nixlookup.server.app._http import start_http_front
from nixlookup.server.app._lifecycle import ShutdownSignals, serve_until_stopped
from nixlookup.server.app._metrics import FollowerGauges, MetricsEndpoint, start_metrics
from nixlookup.server.app._repair import repair
from nixlookup.server.app._security import Security
from nixlookup.server.app._tracing import Tracing, start_tracing
from nixlookup.server.errors import NixlookupError
from nixlookup.server.logs import configure_logging, get_logger
from nixlookup.server.store import write_synthetic_file

__all__ = ["main", "serve", "synth"]

_log = get_logger("nixlookup.server")


def _write_port_file(path: Path, running: RunningServer) -> None:
    """The bound port on the first line; ``admin PORT`` when Admin has its own listener, ``health PORT``
    for the plaintext health listener."""
    text = f"{running.port}\n" + (f"admin {running.admin.port}\n" if running.admin is not None else "")
    text += f"health {running.health_only.port}\n" if running.health_only is not None else ""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="ascii")
    os.replace(temporary, path)


class _LookupHealth:
    """Lookup's health: the register's validity (`ExpiryWatch`) and, on a follower, its readiness (first
    snapshot in, lag within --max-lag). "" is the process's own on a writer; on a follower, which has
    nothing to serve before its first snapshot, it follows readiness too. Both are set from threads (the
    watch, the follower) onto the loop the health servicer lives on. Once shutdown begins the health
    servicer ignores further changes."""

    def __init__(self, running: RunningServer, loop: asyncio.AbstractEventLoop, *, follower: bool) -> None:
        self._running = running
        self._loop = loop
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
        lookup = codes.SERVING if self._valid and self._ready else codes.NOT_SERVING
        asyncio.run_coroutine_threadsafe(self._running.health.set(LOOKUP_SERVICE, lookup), self._loop)
        if self._follower:
            process = codes.SERVING if self._ready else codes.NOT_SERVING
            asyncio.run_coroutine_threadsafe(self._running.health.set("", process), self._loop)


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


async def _serve_on_loop(
    config: ServerConfig,
    initial: InitialState,
    security: Security,
    signals: ShutdownSignals,
    role: ProcessRole | None = None,
    *,
    tracing: Tracing | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    signals.attach(loop)
    try:
        metrics = _start_metrics(config.metrics_listen, initial) if config.metrics_listen else None
    except NixlookupError as error:
        _log.error("startup_failed", step="metrics listen", error=str(error))
        return EXIT_CONFIG_ERROR
    try:
        running = await start_server(config, initial, security, metrics, role, tracing=tracing)
        start_http_front(config, running, security, initial.stop_hooks)  # --http-listen: docs/http.md
    except ListenError as error:
        _log.error("startup_failed", step="listen", error=str(error))
        if metrics is not None:
            metrics.close()
        return EXIT_CONFIG_ERROR
    try:
        return await _serve(
            config,
            initial=initial,
            security=security,
            signals=signals,
            running=running,
            metrics=metrics,
            role=role,
        )
    finally:
        if metrics is not None:
            metrics.close()


async def _serve(
    config: ServerConfig,
    *,
    initial: InitialState,
    security: Security,
    signals: ShutdownSignals,
    running: RunningServer,
    metrics: MetricsEndpoint | None,
    role: ProcessRole | None,
) -> int:
    loop = asyncio.get_running_loop()
    security.install_sighup(replaces=ShutdownSignals.ignore_hangup)
    host = host_of(config.listen)
    if config.port_file is not None:
        _write_port_file(config.port_file, running)
    for warning in security.startup_warnings():
        _log.warning("insecure" if warning.startswith("--insecure") else "security_warning", problem=warning)
    listen = f"{host}:{running.port}"
    if role is not None and role.replication_listen is not None:
        listen = f"none (the serving processes' replication socket: {role.replication_listen})"
    _log.info(
        "serving",
        listen=listen,
        metrics_port=metrics.port if metrics is not None else None,
        admin_listen=(
            f"{host_of(config.admin_listen or '')}:{running.admin.port}"
            if running.admin is not None
            else ("on --listen" if security.plan.admin_on_listen else "not served")
        ),
        health_listen=(
            f"{host_of(config.health_listen)}:{running.health_only.port}"
            if config.health_listen and running.health_only is not None
            else None
        ),
        services=list(running.service_names),
        workers=config.workers,
        max_batch=config.max_batch,
        max_message_bytes=config.max_message_bytes,
        max_concurrent_rpcs=config.max_concurrent_rpcs,
        max_streams=config.max_streams,
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
    lookup_health = _LookupHealth(running, loop, follower=initial.follower is not None)
    watch = ExpiryWatch(initial.holder, lookup_health.register_valid, warning_days=config.expiry_warning_days)
    if initial.follower is not None:  # the writer's register expires on its followers too
        initial.follower.start(lookup_health.follower_ready)
    watch.start()
    try:
        await serve_until_stopped(running, signals, config.grace_seconds, initial.stop_hooks)
    finally:
        watch.stop()
    return 0


def serve(config: ServerConfig, role: ProcessRole | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; the exit code (module doc). `role`: one process of
    ``--processes N`` (`_processes`), whose shared port the supervisor holds (so it is not probed)."""
    try:
        if role is None:
            check_listen_address(config.listen)
        for other in (config.admin_listen, config.health_listen):
            if other and not (role is not None and role.reuse_port and other == config.health_listen):
                check_listen_address(other)
    except ListenError as error:
        config_error(str(error))
    signals = ShutdownSignals()
    signals.install()
    try:
        security = Security.from_config(config)  # before the register loads: a refusal is immediate
    except NixlookupError as error:
        _log.error("startup_failed", step="security", error=str(error))
        return EXIT_START_FAILED
    try:
        tracing = start_tracing() if config.otel else None
    except NixlookupError as error:
        _log.error("startup_failed", step="tracing", error=str(error))
        return EXIT_CONFIG_ERROR
    try:
        initial = load_initial_state(config, security.follow)
    except (NixlookupError, OSError) as error:
        _log.error("startup_failed", step="load register", error=str(error))
        if tracing is not None:
            tracing.close()
        return EXIT_START_FAILED
    try:
        if initial.description.get("synthetic"):
            _log.warning(
                "SYNTHETIC register: serving made-up numbers, not the NIX register",
                hint="pass --register FILE or --data-dir DIR holding a real register",
            )
        if signals.requested:
            _log.info("stopped", reason=f"{signals.signal_name} during startup")
            return 0
        # uvloop: grpc.aio on it spent ~10% less server CPU per unary Check than on asyncio's own loop.
        return uvloop.run(_serve_on_loop(config, initial, security, signals, role, tracing=tracing))
    finally:
        initial.close()
        if tracing is not None:  # the listeners have stopped: export the spans still batched
            tracing.close()


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
    if config.processes > 1:
        from nixlookup.server.app._processes import supervise

        return supervise(config)
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
