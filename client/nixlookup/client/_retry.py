"""Retries of UNAVAILABLE: gRPC's own `retryPolicy` for unary calls, one resume helper for bulk streams.

Every method of the Lookup service is read-only, so repeating a call (or the unanswered batches of a
stream) cannot change anything on the server. Only UNAVAILABLE is retried: it means the call did not
reach a serving server (not started yet, restarting, shutting down). Other codes are answers.

- Unary calls (`Check`, `GetRegisterInfo`) are retried by grpc itself: `service_config_json` turns a
  `RetryPolicy` into the channel's default service config (``grpc.service_config``, with
  ``grpc.enable_retries``), the way grpc's examples/python/retry does. grpc caps ``maxAttempts`` at 5 and
  spreads each backoff uniformly over [0, ceiling].
- A bulk stream cannot be retried that way once answers have arrived (grpc retries a stream only until
  its first response). `StreamResume` is the one helper both clients use to reopen a failed stream: it
  counts failures since the last answer, says how long to wait, and raises the typed error when the
  policy is spent or the code is not retryable. The clients resend only the unanswered batches.
- Admin calls are never retried: a reload or delta that timed out may have landed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import grpc

from nixlookup.client.errors import NixlookupClientError, from_rpc_error

__all__ = [
    "DEFAULT_RETRY",
    "GRPC_MAX_ATTEMPTS",
    "RETRIED_UNARY_METHODS",
    "RetryPolicy",
    "StreamResume",
    "service_config_json",
    "status_of",
]

GRPC_MAX_ATTEMPTS = 5
"""grpc refuses more tries than this for one unary call (its A6 design caps maxAttempts at 5)."""
RETRIED_UNARY_METHODS = (("nixlookup.v1.Lookup", "Check"), ("nixlookup.v1.Lookup", "GetRegisterInfo"))
"""The unary methods grpc retries on UNAVAILABLE (read-only, so safe to repeat)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry UNAVAILABLE."""

    attempts: int = 5
    """Tries in all (1 = no retry). With the default backoff, 5 tries span up to about 1.5 s: a restart.
    Unary calls use at most `GRPC_MAX_ATTEMPTS` of them; a stream's resume may use more."""
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


def _seconds(value: float) -> str:
    return f"{value:.3f}s"  # the service config's google.protobuf.Duration JSON form


def service_config_json(policy: RetryPolicy) -> str:
    """The channel's service config: `RETRIED_UNARY_METHODS` retried on UNAVAILABLE per `policy`."""
    method: dict[str, object] = {
        "name": [{"service": service, "method": name} for service, name in RETRIED_UNARY_METHODS]
    }
    attempts = min(policy.attempts, GRPC_MAX_ATTEMPTS)
    if attempts >= 2:  # grpc rejects a retryPolicy with fewer than 2 attempts
        method["retryPolicy"] = {
            "maxAttempts": attempts,
            "initialBackoff": _seconds(policy.initial_backoff),
            "maxBackoff": _seconds(policy.max_backoff),
            "backoffMultiplier": policy.multiplier,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
    return json.dumps({"methodConfig": [method]})


def status_of(error: BaseException) -> grpc.StatusCode | None:
    """The gRPC status code of an RpcError (sync or asyncio), None for anything else."""
    code_of = getattr(error, "code", None)
    if not callable(code_of):
        return None
    code = code_of()
    return code if isinstance(code, grpc.StatusCode) else None


class StreamResume:
    """When and whether to reopen a failed bulk stream (see the module doc); one per `check_batches`."""

    def __init__(self, policy: RetryPolicy, *, target: str, method: str = "CheckStream") -> None:
        self.policy = policy
        self.target = target
        self.method = method
        self.failures = 0
        """Failed attempts since the last answer: a stream that makes progress is never given up on."""

    def answered(self) -> None:
        """An answer arrived: the next failure starts the policy afresh."""
        self.failures = 0

    def delay_after(self, error: grpc.RpcError) -> float:
        """Seconds to wait before reopening after `error`; raises the typed error when not to reopen."""
        self.failures += 1
        if self.policy.should_retry(status_of(error), self.failures):
            return self.policy.backoff(self.failures)
        raise from_rpc_error(error, target=self.target, method=self.method) from None

    def finished(self, unanswered: int) -> None:
        """The stream ended cleanly; raise if the server left batches unanswered."""
        if unanswered:
            raise NixlookupClientError(
                grpc.StatusCode.INTERNAL,
                f"the stream ended with {unanswered} batches unanswered",
                target=self.target,
                method=self.method,
            )
