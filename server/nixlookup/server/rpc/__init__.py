"""gRPC <-> core: the Lookup and Admin servicers (grpc.aio), proto conversion, the limits, the one place
calls are admitted and errors become statuses, who may call (the auth file, authentication, authorisation),
metering and uploads. No rules live here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nixlookup.server.rpc._admin import (
    AdminServicer,
)
from nixlookup.server.rpc._auth import (
    Authenticator,
    current_principal,
)
from nixlookup.server.rpc._follower import (
    DEFAULT_MAX_LAG_SECONDS,
    Follower,
    FollowerSettings,
    WriterCredentials,
    WriterCredentialsError,
)
from nixlookup.server.rpc._freshness import (
    DEFAULT_MIN_VERSION_WAIT_SECONDS,
    BehindError,
    FreshnessGate,
)
from nixlookup.server.rpc._guard import (
    RpcGuard,
)
from nixlookup.server.rpc._limits import (
    CallLimiter,
    Limit,
    ServiceLimits,
)
from nixlookup.server.rpc._lookup import (
    LookupServicer,
)
from nixlookup.server.rpc._metering import (
    Meter,
    UsageRow,
)
from nixlookup.server.rpc._principals import (
    ANONYMOUS,
    AuthFileError,
    Principal,
    Role,
    token_digest,
)
from nixlookup.server.rpc._readonly import (
    ReadOnlyAdminServicer,
)
from nixlookup.server.rpc._replication import (
    HEARTBEAT_SECONDS,
    ChangeAssembler,
    ReplicationServicer,
)
from nixlookup.server.rpc._upload import (
    DEFAULT_MAX_UPLOAD_BYTES,
)

if TYPE_CHECKING:
    from grpc import aio
    from prometheus_client import CollectorRegistry

__all__ = [
    "ANONYMOUS",
    "DEFAULT_MAX_LAG_SECONDS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_MIN_VERSION_WAIT_SECONDS",
    "HEARTBEAT_SECONDS",
    "AdminServicer",
    "AuthFileError",
    "Authenticator",
    "BehindError",
    "CallLimiter",
    "ChangeAssembler",
    "Follower",
    "FollowerSettings",
    "FreshnessGate",
    "Limit",
    "LookupServicer",
    "Meter",
    "Principal",
    "ReadOnlyAdminServicer",
    "ReplicationServicer",
    "Role",
    "RpcGuard",
    "ServiceLimits",
    "UsageRow",
    "WriterCredentials",
    "WriterCredentialsError",
    "current_principal",
    "metrics_interceptor",
    "token_digest",
]


def metrics_interceptor(registry: CollectorRegistry) -> aio.ServerInterceptor[Any, Any]:
    """The RPC metrics interceptor (`_metrics`); imported here on demand, as prometheus-client is optional."""
    from nixlookup.server.rpc._metrics import MetricsInterceptor

    return MetricsInterceptor(registry)
