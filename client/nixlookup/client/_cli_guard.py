"""The one way `nixlookup` plugin commands report failure: a line on stderr and an exit status.

Usage mistakes (and unreadable files) exit 2 with the message; a server refusal exits 1 with its gRPC
status and the server's reason. Shared by `nixlookup admin ...` and `nixlookup lists ...`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import grpc

__all__ = ["Handler", "guarded"]

Handler = Callable[[argparse.Namespace], int]


def guarded(handler: Handler, *, prefix: str, usage_errors: tuple[type[BaseException], ...]) -> Handler:
    """`handler`, with `usage_errors` and OSError -> exit 2 and gRPC refusals -> exit 1, each one line."""

    caught: tuple[type[BaseException], ...] = (*usage_errors, OSError)

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except caught as error:
            print(f"{prefix}: {error}", file=sys.stderr)
            return 2
        except grpc.RpcError as error:
            code = getattr(error, "code", None)
            details = getattr(error, "details", None)
            status = code().name if callable(code) else "error"
            message = details() if callable(details) else str(error)
            print(f"{prefix}: server refused: {status}: {message}", file=sys.stderr)
            return 1

    return run
