"""Assembly: the store or a follower's replica serving the register, the services on it, the grpc.aio server.

- `load_initial_state` opens the `Store`, the one way a register is served: on ``--data-dir``, or without
  it on a temporary directory removed on exit. An empty directory is seeded from ``--register`` (text, CSV
  or snapshot), else from a seeded SYNTHETIC register. With ``--follow`` there is no store: a `Replica`
  fed by a `Follower` (a client thread replaying the writer's Replicate stream) holds the lists.
- `start_server` builds the servicers once (`_build_services`, the one place a service is wired in) and a
  `grpc.aio` server per listener (`_listener`: the transport options of `_transport`, the `RpcGuard`
  interceptor (admission limits, authentication, error mapping), health, reflection listing only that
  listener's services, TLS when configured; the `MetricsInterceptor` inside it with ``--metrics-listen``,
  OpenTelemetry's outside it with ``--otel``, `_tracing`):
  ``--listen`` with Lookup (and Admin and Replication when `Security.plan` puts Admin there),
  ``--admin-listen`` with Admin and Replication, ``--health-listen`` with health only (plaintext, for
  probes that cannot speak TLS, answering what the Lookup listener's health says). Each is bound,
  started, and only then marked SERVING (and ``nixlookup.liveness``, which stays SERVING until
  shutdown whatever the data says).
- Threads: the event loop runs every call; stream batches' numpy work and GetRegisterInfo go to the bulk
  executor (``--workers`` threads), Admin's store calls to a small admin executor of their own, so a
  seconds-long reload never delays a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from grpc import aio
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from nixlookup.server._memory import release_free_memory
from nixlookup.server.app._config import ServerConfig, flag_and_variable, package_version, setting_name
from nixlookup.server.app._follow_credentials import FollowCredentials
from nixlookup.server.app._mail import mail_lookup
from nixlookup.server.app._metrics import MetricsEndpoint
from nixlookup.server.app._security import Security
from nixlookup.server.app._source import attach_register_source
from nixlookup.server.app._tracing import Tracing
from nixlookup.server.app._transport import server_options
from nixlookup.server.errors import NixlookupError
from nixlookup.server.logs import get_logger
from nixlookup.server.policy import Policy, PolicySettings
from nixlookup.server.rpc import (
    AdminServicer,
    Authenticator,
    CallLimiter,
    Follower,
    FollowerSettings,
    FreshnessGate,
    Limit,
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
    open_address_register,
)
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = [
    "EPHEMERAL_DATA_DIR_PREFIX",
    "LIVENESS_SERVICE",
    "LOOKUP_SERVICE",
    "InitialState",
    "ListenError",
    "ProcessRole",
    "RunningServer",
    "check_listen_address",
    "load_initial_state",
    "start_server",
]

_log = get_logger("nixlookup.server")

LOOKUP_SERVICE = lookup_pb2.DESCRIPTOR.services_by_name["Lookup"].full_name
ADMIN_SERVICE = lookup_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
REPLICATION_SERVICE = lookup_pb2.DESCRIPTOR.services_by_name["Replication"].full_name
LIVENESS_SERVICE = "nixlookup.liveness"
"""A health entry that is SERVING from bind to shutdown whatever the data says: the liveness probe's (a
follower that is behind is NOT_SERVING for Lookup, to be taken out of rotation, not restarted)."""
EPHEMERAL_DATA_DIR_PREFIX = "nixlookup-ephemeral-"
"""Without --data-dir the store lives in a temporary directory of this name (in $TMPDIR), removed on exit."""
ADMIN_THREADS = 2
"""Threads for Admin's store calls: the store serialises its writes anyway; two let a quick delta pass a
reload's file parsing, which runs outside the store's write lock."""


@dataclass(frozen=True, slots=True)
class ProcessRole:
    """What one process of ``--processes N`` does (`app._processes`); None everywhere else."""

    label: str
    """In every log event as ``process``: ``writer``, ``0``, ``1`` ..."""
    replication_listen: str | None = None
    """The writer: serve Replication (and health) only here, a unix socket in a private directory
    (anonymous: only this user can reach it), and Admin on --admin-listen; no Lookup listener."""
    reuse_port: bool = False
    """A serving process: --listen (and --health-listen) with SO_REUSEPORT, shared with its siblings."""


class ListenError(NixlookupError):
    """The server cannot bind its address (in use, not local, not permitted)."""


def _listen_problem(listen: str, reason: str) -> ListenError:
    flag, variable = flag_and_variable("listen")
    return ListenError(
        f"cannot listen on {listen}: {reason}; choose another with {flag} HOST:PORT or {variable}"
    )


def check_listen_address(listen: str) -> None:
    """Refuse an address that cannot be bound, before the register is loaded and before grpc tries (whose
    own failure is a multi-line log on stderr). Binds a throwaway socket to each address `listen` resolves
    to, as grpc does (SO_REUSEADDR, no SO_REUSEPORT); one that binds is enough."""
    host, _, port = listen.rpartition(":")
    if int(port) == 0:
        return  # any free port
    try:
        resolved = socket.getaddrinfo(
            host.strip("[]"), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise _listen_problem(listen, f"the host does not resolve ({error.strerror})") from None
    reasons: list[str] = []
    for family, kind, protocol, _name, address in resolved:
        with contextlib.closing(socket.socket(family, kind, protocol)) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                reasons.append(error.strerror or str(error))
                continue
            return
    raise _listen_problem(listen, (reasons[0] if reasons else "no address").lower())


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
    """A started server: the grpc server, its health servicer, the port it bound, its services, and the
    executors to shut down after it."""

    server: aio.Server
    health: health_async.HealthServicer
    port: int
    service_names: tuple[str, ...]
    executors: tuple[futures.ThreadPoolExecutor, ...] = ()
    admin: RunningServer | None = None
    """The separate Admin listener (``--admin-listen``), when there is one."""
    lookup: LookupServicer | None = None
    """The Lookup servicer on ``--listen``: the HTTP front (``--http-listen``) answers through it too."""
    health_only: RunningServer | None = None
    """The plaintext health listener (``--health-listen``), sharing this listener's health servicer."""

    def listeners(self) -> list[RunningServer]:
        return [each for each in (self, self.admin, self.health_only) if each is not None]

    def shutdown_executors(self) -> None:
        for executor in self.executors:
            executor.shutdown(wait=False, cancel_futures=True)


# -- the register -----------------------------------------------------------------------------------------
def _open_store(config: ServerConfig, data_dir: Path) -> Store:
    settings = StoreSettings(compact_after_records=config.compact_after)
    if config.synthetic_seed is not None:
        settings = replace(settings, synthetic_seed=config.synthetic_seed)
    store = Store.open(
        data_dir,
        settings=settings,
        initial_register=config.register,
        synthetic_size=config.synthetic_size,
    )
    try:
        open_address_register(store, config.address_register, synthetic_size=config.synthetic_address_size)
    except BaseException:
        store.close()
        raise
    return store


def load_initial_state(config: ServerConfig, follow: FollowCredentials | None = None) -> InitialState:
    """The first serving state, always through a `Store` (see the module doc); with ``--follow`` an empty
    `Replica` that the follower fills once the server listens, presenting `follow` to the writer."""
    if config.follow is not None:
        return _follower_state(config, follow or FollowCredentials())
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


def _follower_state(config: ServerConfig, follow: FollowCredentials) -> InitialState:
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
        writer=config.follow,
        name=socket.gethostname(),
        max_lag_seconds=config.max_lag_seconds,
        credential_source=follow.current,  # re-read at each reconnect: rotated files used on the next stream
    )
    return InitialState(
        holder=replica.holder,
        describe_lists=replica.describe,
        description={"follow": config.follow, "max_lag_seconds": config.max_lag_seconds},
        ephemeral=False,
        follower=Follower(replica, settings),
    )


# -- the server -------------------------------------------------------------------------------------------
def service_limits(config: ServerConfig) -> ServiceLimits:
    """The limits the services enforce, each named by the setting that changes it."""

    def limit(dest: str) -> Limit:
        return Limit(getattr(config, dest), setting_name(dest))

    return ServiceLimits(
        max_batch=limit("max_batch"),
        max_concurrent_rpcs=limit("max_concurrent_rpcs"),
        max_streams=limit("max_streams"),
        stream_idle_seconds=limit("stream_idle_seconds"),
    )


@dataclass
class _Services:
    """nixlookup's own servicers, built once and added to the listener(s) that serve them."""

    lookup: LookupServicer
    admin: AdminServicer | ReadOnlyAdminServicer | None
    """AdminServicer on a writer with a lasting directory, ReadOnlyAdminServicer on a follower, or None."""
    replication: ReplicationServicer | None = None


def _build_services(
    config: ServerConfig,
    initial: InitialState,
    security: Security,
    *,
    limits: ServiceLimits,
    bulk: futures.Executor,
    admin: futures.Executor,
) -> _Services:
    policy = Policy(
        PolicySettings(
            relationship_grace_days=config.relationship_grace_days,
            block_mobile_without_relationship=config.block_mobile_without_relationship,
        )
    )
    # Build the bulk path's per-caller probes (and, the first time, compile its loops) when lists change,
    # not on the first batch that needs them.
    initial.holder.add_preparer(policy.prepare)
    freshness = FreshnessGate(initial.holder, config.min_version_wait_seconds)
    lookup = LookupServicer(
        initial.holder,
        policy,
        describe_lists=initial.describe_lists,
        bulk_executor=bulk,
        limits=limits,
        server_version=package_version(),
        meter=security.meter,
        freshness=freshness,
        mail=mail_lookup(config, initial.holder, limits=limits, meter=security.meter, freshness=freshness),
    )
    if initial.follower is not None:  # refuses writes naming the writer; Replication is the writer's alone
        return _Services(lookup, ReadOnlyAdminServicer(initial.follower.settings.writer))
    if initial.store is None or initial.ephemeral:  # Admin changes the data directory: only a lasting one
        return _Services(lookup, None)
    admin_servicer = AdminServicer(
        initial.store,
        admin,
        reload_root=config.reload_root,
        path_reloads_need_root=security.authenticator.enabled,
        max_upload_bytes=config.max_upload_bytes,
        meter=security.meter,
    )
    # The rule settings travel in each stream's scope: a LocalReplica answers by the writer's own rules.
    replication = ReplicationServicer(initial.store, policy_settings=policy.settings)
    initial.stop_hooks.append(replication.stop)  # end follower streams first: they would wait out --grace
    return _Services(lookup, admin_servicer, replication)


async def _listener(
    config: ServerConfig,
    security: Security,
    limiter: CallLimiter,
    address: str,
    *,
    lookup: LookupServicer | None,
    admin: AdminServicer | ReadOnlyAdminServicer | None,
    replication: ReplicationServicer | None,
    metrics: MetricsEndpoint | None,
    tracing: Tracing | None,
    reuse_port: bool = False,
    internal: bool = False,
) -> RunningServer:
    """One grpc.aio server bound to `address` with the given services, health and reflection (listing only
    what this listener serves), TLS when configured; started, health SERVING. `internal`: the private
    replication socket of --processes (plaintext, anonymous, untraced)."""
    authenticator = Authenticator(None) if internal else security.authenticator
    interceptors: list[Any] = [RpcGuard(limiter, authenticator)]
    if tracing is not None and not internal:  # outermost: a span covers admission and authentication too
        interceptors.insert(0, tracing.interceptor())
    if metrics is not None:  # inside the guard: sees decoded messages and the errors handlers raise
        interceptors.append(metrics_interceptor(metrics.registry))
    server = aio.server(interceptors=interceptors, options=server_options(config, reuse_port=reuse_port))
    health_servicer = health_async.HealthServicer()
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
    credentials = None if internal else security.credentials()
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as error:  # lost a race with another process since `check_listen_address`
        raise _listen_problem(address, "address in use or not available") from error
    await server.start()
    for name in ("", *names, LIVENESS_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, health_servicer, port, service_names)


async def start_server(
    config: ServerConfig,
    initial: InitialState,
    security: Security,
    metrics: MetricsEndpoint | None = None,
    role: ProcessRole | None = None,
    *,
    tracing: Tracing | None = None,
) -> RunningServer:
    """Create, bind and start the grpc.aio server(s) on the running loop; health is SERVING on return.
    Admin is on --listen, on its own --admin-listen listener (`RunningServer.admin`), or nowhere. The
    writer of --processes (`role`) listens on its replication socket instead of --listen. `tracing`: each
    call's span (``--otel``)."""
    limits = service_limits(config)
    limiter = CallLimiter(limits)  # one count for every listener: the limits are the process's
    bulk = futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="bulk")
    admin = futures.ThreadPoolExecutor(max_workers=ADMIN_THREADS, thread_name_prefix="admin")
    executors = (bulk, admin)
    services = _build_services(config, initial, security, limits=limits, bulk=bulk, admin=admin)
    plan = security.plan
    reuse_port = role is not None and role.reuse_port
    listener = functools.partial(_listener, config, security, limiter, metrics=metrics, tracing=tracing)
    try:
        if role is not None and role.replication_listen is not None:
            running = await listener(
                role.replication_listen,
                lookup=None,
                admin=None,
                replication=services.replication,
                internal=True,
            )
        else:
            running = await listener(
                config.listen,
                lookup=services.lookup,
                admin=services.admin if plan.admin_on_listen else None,
                replication=services.replication if plan.admin_on_listen else None,
                reuse_port=reuse_port,
            )
        running.executors = executors
        running.lookup = services.lookup
        if plan.admin_listen is not None and services.admin is not None:
            try:
                running.admin = await listener(
                    plan.admin_listen,
                    lookup=None,
                    admin=services.admin,
                    replication=services.replication,  # locked down like Admin (role replicate)
                )
            except ListenError:
                await running.server.stop(None)
                raise
        if config.health_listen is not None:
            try:
                running.health_only = await _health_listener(
                    config, config.health_listen, running.health, reuse_port=reuse_port
                )
            except ListenError:
                await asyncio.gather(*(each.server.stop(None) for each in running.listeners()))
                raise
    except ListenError:
        for executor in executors:
            executor.shutdown(wait=False)
        raise
    return running


async def _health_listener(
    config: ServerConfig, address: str, health_servicer: health_async.HealthServicer, *, reuse_port: bool
) -> RunningServer:
    """``--health-listen``: grpc.health.v1 only, in plaintext, answering what `health_servicer` (the Lookup
    listener's) says. For probes that cannot speak TLS (Kubernetes' native gRPC probes): health needs no
    principal anyway, and this listener serves nothing else."""
    server = aio.server(options=server_options(config, reuse_port=reuse_port))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise _listen_problem(address, "address in use or not available") from error
    await server.start()
    return RunningServer(server, health_servicer, port, (health.SERVICE_NAME,))
