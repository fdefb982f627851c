"""Typed client errors: every failed call surfaces as a `NixlookupClientError` carrying the gRPC status.

The message is the server's own (it names the limit or field that failed) followed by what to do about
it, so a caller can log ``str(error)`` and an operator knows the next step. Subclasses let code catch the
cases it can handle: `ServerUnavailableError` (retry later / check the address), `DeadlineExceededError`
(raise the timeout), `InvalidRequestError` (fix the request), `LimitExceededError` (smaller batches),
`ReplicaBehindError` (no replica tried served the `min_version` asked for: followers lag their writer).
"""

from __future__ import annotations

import grpc

from nixlookup.v1.vocabulary import BEHIND_DETAIL_PREFIX

__all__ = [
    "DeadlineExceededError",
    "InvalidRequestError",
    "LimitExceededError",
    "NixlookupClientError",
    "ReplicaBehindError",
    "ServerUnavailableError",
    "from_rpc_error",
    "is_behind",
]

_ADVICE: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: (
        "the server is not reachable, is shutting down, or (a follower) reports NOT_SERVING; check that "
        "nixlookup-server runs at {target} (--target / NIXLOOKUP_TARGET) and retry"
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: (
        "the call did not finish within its deadline (retries of an unreachable server count against it); "
        "check that nixlookup-server runs at {target} and its load, or raise the timeout (timeout=... / "
        "--timeout)"
    ),
    grpc.StatusCode.INVALID_ARGUMENT: (
        "the request was refused as malformed; fix the field or limit named above"
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (
        "a server limit was exceeded; send smaller batches (batch_size=...) or retry when the server is "
        "less busy"
    ),
    grpc.StatusCode.FAILED_PRECONDITION: "the server's state refused the request; see the reason above",
    grpc.StatusCode.UNIMPLEMENTED: (
        "the server at {target} does not serve this method; is it nixlookup-server?"
    ),
    grpc.StatusCode.INTERNAL: "the server failed; its log has the details",
    grpc.StatusCode.CANCELLED: "the call was cancelled",
}


_BEHIND_ADVICE = (
    "no replica tried served the min_version asked for ({tries}): the followers at {target} lag behind "
    "their writer (see nixlookup_follower_lag_seconds and their health), or the version was never "
    "acknowledged by the writer; retry later, ask the writer, or raise the followers' --min-version-wait"
)


class NixlookupClientError(Exception):
    """A call to nixlookup-server failed. `code` is the gRPC status, `details` the server's message;
    `tries` counts the calls made (retries included) when the client retried."""

    def __init__(
        self, code: grpc.StatusCode, details: str, *, target: str = "", method: str = "", tries: int = 1
    ) -> None:
        self.code = code
        self.details = details
        self.target = target
        self.method = method
        self.tries = tries
        advice = self._advice().format(
            target=target or "the target", tries=f"{tries} tries" if tries != 1 else "1 try"
        )
        where = f"{method} at {target}" if method and target else method or target or "call"
        super().__init__(f"{where} failed: {code.name}: {details or '(no details)'} -> {advice}")

    def _advice(self) -> str:
        return _ADVICE.get(self.code, "see the server's message")


class ServerUnavailableError(NixlookupClientError):
    """UNAVAILABLE after all retries: the server is down, unreachable or shutting down."""


class ReplicaBehindError(NixlookupClientError):
    """FAILED_PRECONDITION ``behind:`` after every retry: no replica served the `min_version` asked for."""

    def _advice(self) -> str:
        return _BEHIND_ADVICE


class DeadlineExceededError(NixlookupClientError):
    """DEADLINE_EXCEEDED: the call took longer than its deadline."""


class InvalidRequestError(NixlookupClientError):
    """INVALID_ARGUMENT: the request is malformed (e.g. a batch over the server's limit)."""


class LimitExceededError(NixlookupClientError):
    """RESOURCE_EXHAUSTED: a message or concurrency limit of the server was exceeded."""


_CLASS_BY_CODE: dict[grpc.StatusCode, type[NixlookupClientError]] = {
    grpc.StatusCode.UNAVAILABLE: ServerUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceededError,
}


def _code_and_details(error: BaseException) -> tuple[grpc.StatusCode, str]:
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details = details_of() if callable(details_of) else str(error)
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return code, details if isinstance(details, str) else ""


def is_behind(error: BaseException) -> bool:
    """Is this a replica's "behind" answer: FAILED_PRECONDITION whose details start with ``behind:``
    (it serves an older version than the call's min_version; another replica may not)?"""
    code, details = _code_and_details(error)
    return code == grpc.StatusCode.FAILED_PRECONDITION and details.startswith(BEHIND_DETAIL_PREFIX)


def from_rpc_error(error: grpc.RpcError, *, target: str, method: str, tries: int = 1) -> NixlookupClientError:
    """The typed error for a failed gRPC call (sync or asyncio), after `tries` calls."""
    code, details = _code_and_details(error)
    cls = ReplicaBehindError if is_behind(error) else _CLASS_BY_CODE.get(code, NixlookupClientError)
    return cls(code, details or "", target=target, method=method, tries=tries)
