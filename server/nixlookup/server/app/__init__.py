"""Assembly: flags and environment, logging, health, reflection, signals; the `nixlookup-server` command."""

from __future__ import annotations

from nixlookup.server.app._config import (
    ServerConfig,
)
from nixlookup.server.app._main import (
    main,
)

__all__ = [
    "ServerConfig",
    "main",
]
