"""gRPC <-> core: the Lookup and Admin servicers, proto conversion, the one place errors become statuses.
No rules live here."""

from __future__ import annotations

from nixlookup.server.rpc._admin import (
    AdminServicer,
)
from nixlookup.server.rpc._guard import (
    RpcGuard,
)
from nixlookup.server.rpc._lookup import (
    LookupServicer,
    ServiceLimits,
)

__all__ = [
    "AdminServicer",
    "LookupServicer",
    "RpcGuard",
    "ServiceLimits",
]
