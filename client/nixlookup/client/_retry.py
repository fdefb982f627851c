"""Retry policy shared by the sync and asyncio clients: UNAVAILABLE only, exponential backoff with jitter.

Every method of the Lookup service is read-only, so repeating a call (or the unanswered batches of a
stream) cannot change anything on the server. Only UNAVAILABLE is retried: it means the call did not
reach a serving server (not started yet, restarting, shutting down). Other codes are answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc

__all__ = ["DEFAULT_RETRY", "RetryPolicy", "status_of"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry UNAVAILABLE."""

    attempts: int = 5
    """Tries in all (1 = no retry). With the default backoff, 5 tries span about 1.5 s: a restart."""
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def should_retry(self, code: grpc.StatusCode | None, attempt: int) -> bool:
        """After failed try number `attempt` (1-based) with `code`, try again?"""
        return code == grpc.StatusCode.UNAVAILABLE and attempt < self.attempts

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt`: exponential, with 50-100% jitter."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


DEFAULT_RETRY = RetryPolicy()


def status_of(error: BaseException) -> grpc.StatusCode | None:
    """The gRPC status code of an RpcError (sync or asyncio), None for anything else."""
    code_of = getattr(error, "code", None)
    if not callable(code_of):
        return None
    code = code_of()
    return code if isinstance(code, grpc.StatusCode) else None
