"""Retries that move to another replica: gRPC's own `retryPolicy` and `round_robin` for UNAVAILABLE, the
client's own bounded retry for a follower's "behind" answer, one resume helper for bulk streams.

Every method of the Lookup service is read-only, so repeating a call (or the unanswered batches of a
stream) cannot change anything on the server. Two failures are retried: UNAVAILABLE (the call did not
reach a serving server: not started yet, restarting, shutting down) and a replica's "behind" answer
(FAILED_PRECONDITION whose details start with ``behind:``: it serves an older version than the call's
``min_version``, another replica may not). Other codes are answers.

- The channel's service config (`service_config_json`) balances with gRPC's ``round_robin`` over every
  address the target names (``ipv4:10.0.0.1:50051,10.0.0.2:50051``, or ``dns:///nixlookup-headless:50051``
  resolving to every ready follower) and asks each replica's health (``healthCheckConfig``, service
  ``""``: a follower without its first snapshot, beyond its --max-lag or shutting down says NOT_SERVING
  and gets no calls until it is SERVING again). Each try of a call is a new pick, so a retry goes to the
  next replica. ``load_balancing="pick_first"`` turns this off (one connection, the first address).

- Unary calls (`Check`, `GetRegisterInfo`) are retried by grpc itself: `service_config_json` turns a
  `RetryPolicy` into the channel's default service config (``grpc.service_config``, with
  ``grpc.enable_retries``), the way grpc's examples/python/retry does. grpc caps ``maxAttempts`` at 5 and
  spreads each backoff uniformly over [0, ceiling].
- gRPC's retryPolicy cannot look at a status's details, so "behind" is retried by `BehindRetry` (unary
  calls) and `StreamResume` (streams): at most `RetryPolicy.attempts` tries with the same backoff, then
  `ReplicaBehindError` saying how many tries were made and what to look at. Each try has the call's
  full deadline (a follower waits up to its --min-version-wait, 0.5 s by default, before answering behind).
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

from nixlookup.client.errors import NixlookupClientError, from_rpc_error, is_behind

__all__ = [
    "DEFAULT_RETRY",
    "GRPC_MAX_ATTEMPTS",
    "LOAD_BALANCING_POLICIES",
    "RETRIED_UNARY_METHODS",
    "BehindRetry",
    "RetryPolicy",
    "StreamResume",
    "service_config_json",
    "status_of",
]

LOAD_BALANCING_POLICIES = ("round_robin", "pick_first")
"""gRPC's built-in policies the client can be told to use (see the module doc)."""
HEALTH_SERVICE = ""
"""The health entry the client asks each replica about: the process's own, which on a follower is
SERVING only with a whole writer state within --max-lag (Lookup's would also drop a writer whose register
expired, hiding the server's own clear FAILED_PRECONDITION behind UNAVAILABLE)."""

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

    def should_retry(self, code: grpc.StatusCode | None, attempt: int, *, behind: bool = False) -> bool:
        """After failed try number `attempt` (1-based) with `code` (`behind`: a replica's "behind"
        answer), try again?"""
        return (code == grpc.StatusCode.UNAVAILABLE or behind) and attempt < self.attempts

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt`: exponential, with 50-100% jitter."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


DEFAULT_RETRY = RetryPolicy()


def _seconds(value: float) -> str:
    return f"{value:.3f}s"  # the service config's google.protobuf.Duration JSON form


def service_config_json(policy: RetryPolicy, load_balancing: str = "round_robin") -> str:
    """The channel's service config: `RETRIED_UNARY_METHODS` retried on UNAVAILABLE per `policy`, calls
    spread by `load_balancing` (with round_robin, over the replicas whose health says SERVING)."""
    if load_balancing not in LOAD_BALANCING_POLICIES:
        raise ValueError(
            f"load_balancing must be one of {', '.join(LOAD_BALANCING_POLICIES)}, got {load_balancing!r}"
        )
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
    config: dict[str, object] = {
        "loadBalancingConfig": [{load_balancing: {}}],
        "methodConfig": [method],
    }
    if load_balancing == "round_robin":
        config["healthCheckConfig"] = {"serviceName": HEALTH_SERVICE}
    return json.dumps(config)


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
        if self.policy.should_retry(status_of(error), self.failures, behind=is_behind(error)):
            return self.policy.backoff(self.failures)
        raise from_rpc_error(error, target=self.target, method=self.method, tries=self.failures) from None

    def finished(self, unanswered: int) -> None:
        """The stream ended cleanly; raise if the server left batches unanswered."""
        if unanswered:
            raise NixlookupClientError(
                grpc.StatusCode.INTERNAL,
                f"the stream ended with {unanswered} batches unanswered",
                target=self.target,
                method=self.method,
            )


class BehindRetry:
    """Whether to repeat a unary call a replica answered "behind" (see the module doc); one per call.
    UNAVAILABLE never reaches it as retryable: grpc's retryPolicy has already spent its tries on it."""

    def __init__(self, policy: RetryPolicy, *, target: str, method: str) -> None:
        self.policy = policy
        self.target = target
        self.method = method
        self.tries = 0

    def delay_after(self, error: grpc.RpcError) -> float:
        """Seconds to wait before the next try after `error`; raises the typed error when not to retry."""
        self.tries += 1
        behind = is_behind(error)
        if behind and self.policy.should_retry(None, self.tries, behind=True):
            return self.policy.backoff(self.tries)
        raise from_rpc_error(error, target=self.target, method=self.method, tries=self.tries) from None
