"""gRPC <-> core: the Lookup and Admin servicers, proto conversion, the one place errors become statuses,
who may call (the auth file, authentication, authorisation), metering and uploads. No rules live here."""

from __future__ import annotations

from nixlookup.server.rpc._admin import (
    AdminServicer,
)
from nixlookup.server.rpc._auth import (
    Authenticator,
    current_principal,
)
from nixlookup.server.rpc._guard import (
    RpcGuard,
)
from nixlookup.server.rpc._lookup import (
    LookupServicer,
    ServiceLimits,
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
from nixlookup.server.rpc._replication import (
    HEARTBEAT_SECONDS,
    ChangeAssembler,
    ReplicationServicer,
)
from nixlookup.server.rpc._upload import (
    DEFAULT_MAX_UPLOAD_BYTES,
)

__all__ = [
    "ANONYMOUS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "HEARTBEAT_SECONDS",
    "AdminServicer",
    "AuthFileError",
    "Authenticator",
    "ChangeAssembler",
    "LookupServicer",
    "Meter",
    "Principal",
    "ReplicationServicer",
    "Role",
    "RpcGuard",
    "ServiceLimits",
    "UsageRow",
    "current_principal",
    "token_digest",
]
