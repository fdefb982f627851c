"""The NIX rules as one ordered table, applied per number and per batch against one `ServingState`."""

from __future__ import annotations

from nixlookup.server.policy._expiry import (
    RegisterStatus,
    register_status,
)
from nixlookup.server.policy._policy import (
    Decision,
    ListUse,
    Policy,
    PolicySettings,
    valid_until_for,
)

__all__ = [
    "Decision",
    "ListUse",
    "Policy",
    "PolicySettings",
    "RegisterStatus",
    "register_status",
    "valid_until_for",
]
