"""One error family for the server: each class knows its gRPC status code.

The service layer maps any `NixlookupError` to ``context.abort(error.status_code, str(error))`` in one
place, so every refusal a client sees names the limit, field or check that failed. Messages never carry a
full phone number (use `numbering.mask_number`).
"""

from __future__ import annotations

import grpc

__all__ = [
    "DataDirDamagedError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NixlookupError",
    "NotFoundError",
    "PermissionDeniedError",
    "RegisterExpiredError",
    "RegisterFileError",
    "ResourceExhaustedError",
    "SnapshotError",
    "StoreError",
    "UnauthenticatedError",
    "UnavailableError",
    "ValidationError",
]


class NixlookupError(Exception):
    """Base of every error the server reports on purpose."""

    status_code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgumentError(NixlookupError):
    """The request itself is malformed: a field is missing, contradictory or out of range."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT


class ResourceExhaustedError(NixlookupError):
    """A named capacity limit is reached (concurrent calls, open streams ...); an oversized batch is an
    `InvalidArgumentError` naming --max-batch, since retrying it unchanged can never succeed."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(NixlookupError):
    """A call made no progress within a named time limit (e.g. a stalled CheckStream)."""

    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class FailedPreconditionError(NixlookupError):
    """The request is well-formed but the server's state refuses it (version mismatch, count drop ...)."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION


class ValidationError(FailedPreconditionError):
    """A new register version failed validation; the serving version is unchanged."""


class NotFoundError(NixlookupError):
    """A named list, file or version does not exist."""

    status_code = grpc.StatusCode.NOT_FOUND


class PermissionDeniedError(NixlookupError):
    """The request is understood but not allowed: a principal without the role or the caller a call
    needs, a reload path outside --reload-root."""

    status_code = grpc.StatusCode.PERMISSION_DENIED


class UnauthenticatedError(NixlookupError):
    """The call carries no credentials the server knows (no token, an unknown token, an unknown client
    certificate) while an auth file is in force."""

    status_code = grpc.StatusCode.UNAUTHENTICATED


class UnavailableError(NixlookupError):
    """The server cannot answer right now (no register loaded yet, shutting down)."""

    status_code = grpc.StatusCode.UNAVAILABLE


class RegisterFileError(InvalidArgumentError):
    """A register file cannot be read: unknown format, missing column, too many bad lines."""


class SnapshotError(FailedPreconditionError):
    """A snapshot file is refused. `check` names the check that failed (magic, version, checksum ...)."""

    def __init__(self, path: str, check: str, detail: str) -> None:
        self.path = path
        self.check = check
        self.detail = detail
        super().__init__(f"snapshot {path} refused: {check} check failed: {detail}")


class StoreError(NixlookupError):
    """The data directory is unusable (unwritable, inconsistent beyond recovery)."""

    status_code = grpc.StatusCode.INTERNAL


class DataDirDamagedError(StoreError):
    """The data directory holds damage that recovery will not guess about (a missing CURRENT, a corrupt
    journal record before the tail, a lost reload ...): the server refuses to start and the message names
    what was found (`finding`) and then what to do (`hint`: the repair command)."""

    def __init__(self, finding: str, hint: str) -> None:
        self.finding = finding
        self.hint = hint
        super().__init__(f"{finding}; {hint}")


class RegisterExpiredError(FailedPreconditionError):
    """The serving register cannot back an answer: its answers' validity (date + 2 months) has passed, or
    its date lies in the future. The message names the date and what to do (load a current register)."""
