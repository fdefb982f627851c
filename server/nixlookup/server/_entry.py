"""The `nixlookup-server` command's entry point: the server, or one line saying which extra it needs.

`pip install nixlookup` is the lean client; the server's own dependencies (pyroaring, numba, structlog,
phonenumbers, grpcio-health-checking, ...) come with ``nixlookup[server]``. This module imports nothing
but the standard library until it imports the server, so on a client-only install the command ends with
one clear line and exit status 2 (the configuration-mistake code of docs/service.md), not an ImportError
traceback. Any module missing from outside the ``nixlookup`` package counts: the extra brings them all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["EXIT_MISSING_EXTRA", "SERVER_EXTRA_HINT", "main"]

EXIT_MISSING_EXTRA = 2
SERVER_EXTRA_HINT = "the server needs the [server] extra: pip install 'nixlookup[server]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nixlookup-server`` (`nixlookup.server.app.main`), or say which extra is missing."""
    try:
        from nixlookup.server.app import main as server_main
    except ModuleNotFoundError as missing:
        top = (missing.name or "").partition(".")[0]
        if not top or top == "nixlookup":
            raise
        print(f"nixlookup-server: {SERVER_EXTRA_HINT} (missing module {top!r})", file=sys.stderr)
        return EXIT_MISSING_EXTRA
    return server_main(argv)
