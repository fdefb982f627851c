"""Authentication (who is calling) and authorisation (may they do this, as this caller).

Theory of operation:
- One `Authenticator` per server holds the auth file's `Principals` (``--auth-file``), or none: then every
  call is `ANONYMOUS` (all roles, all callers) and the server behaves as it did before auth existed.
- `authenticate(metadata, auth_context)` runs once per call, in the one per-RPC hook (`RpcGuard`), for
  every method but ``grpc.health.v1.Health``: a bearer token in ``authorization: Bearer TOKEN`` metadata
  (the gRPC convention) is looked up by its SHA-256 digest in constant time; without a token, a verified
  client certificate (mTLS) is looked up by its subject (``x509_subject``, RFC 2253, as grpc reports it).
  No credentials, an unknown token or an unknown subject: UNAUTHENTICATED. The principal is put in a
  context variable for the call (`current_principal`), so handlers never parse metadata themselves.
- `authorize(principal, role, caller)` is the table in docs/security.md, called at the top of each handler
  that needs it (a stream: per batch, memoised per caller): the role must be among the principal's, and a
  caller, when the call names one, must be one the principal may act as, else PERMISSION_DENIED naming
  the principal and the caller. A check that leaves the caller empty gets the principal's only caller
  when it has exactly one (a dialer cannot forget or mistype it); a principal with several callers must
  name one; one with none checks the register alone.
- `reload()` re-reads the auth file (SIGHUP): a file that fails validation keeps the principals in force
  and logs why, so a typo never locks everyone out or lets anyone in.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nixlookup.server.errors import PermissionDeniedError, UnauthenticatedError
from nixlookup.server.logs import get_logger
from nixlookup.server.rpc._principals import (
    ANONYMOUS,
    AuthFileError,
    Principal,
    Principals,
    Role,
    load_auth_file,
)

__all__ = [
    "AUTHORIZATION_KEY",
    "UNAUTHENTICATED_METHODS",
    "Admit",
    "Authenticator",
    "authorize",
    "current_principal",
]

_log = get_logger("nixlookup.auth")

AUTHORIZATION_KEY = "authorization"
"""The metadata key of the bearer token (lower case: gRPC metadata keys are)."""
UNAUTHENTICATED_METHODS = ("/grpc.health.v1.Health/",)
"""Method prefixes that need no principal: load balancers and kubelets probe health without a token."""
_BEARER = "bearer "
_SUBJECT_PROPERTY = "x509_subject"

Admit = Callable[[Any], "contextvars.Token[Principal]"]
"""`Authenticator.admit`: authenticate a call from its servicer context, set its principal."""

_principal_var: contextvars.ContextVar[Principal] = contextvars.ContextVar("nixlookup_principal")


def current_principal() -> Principal:
    """The principal of the call being handled (`ANONYMOUS` outside a call or without an auth file)."""
    return _principal_var.get(ANONYMOUS)


Metadata = Sequence[Any]
"""``context.invocation_metadata()``: (key, value) pairs (grpc's ``_Metadatum`` tuples)."""
AuthContext = Mapping[str, Sequence[bytes]]
"""``context.auth_context()``: property name -> values, e.g. ``{"x509_subject": [b"CN=acme"]}``."""


class Authenticator:
    """The server's principals (from ``--auth-file``, re-read by `reload`), and who a call is."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._principals: Principals | None = load_auth_file(path) if path is not None else None

    @property
    def enabled(self) -> bool:
        return self._principals is not None

    @property
    def principals(self) -> Principals | None:
        return self._principals

    def reload(self) -> bool:
        """Re-read the auth file; True when the new principals are in force. A refused file changes
        nothing (the error is logged)."""
        if self.path is None:
            return False
        try:
            loaded = load_auth_file(self.path)
        except AuthFileError as error:
            _log.error(
                "auth_file_refused", path=str(self.path), error=str(error), kept="the loaded principals"
            )
            return False
        with self._lock:
            self._principals = loaded
        _log.info("auth_file_loaded", path=str(self.path), principals=len(loaded.principals))
        return True

    def needs_principal(self, method: str) -> bool:
        return self._principals is not None and not method.startswith(UNAUTHENTICATED_METHODS)

    def authenticate(self, metadata: Metadata | None, auth_context: AuthContext | None) -> Principal:
        """Who is calling: the bearer token's principal, else the client certificate's; UNAUTHENTICATED
        when neither is known. `ANONYMOUS` without an auth file."""
        principals = self._principals
        if principals is None:
            return ANONYMOUS
        token = _bearer_token(metadata)
        if token is not None:
            found = principals.by_token(token)
            if found is None:
                raise UnauthenticatedError("the bearer token is not known to this server")
            return found
        subject = _certificate_subject(auth_context)
        if subject is not None:
            found = principals.by_subject.get(subject)
            if found is None:
                raise UnauthenticatedError(
                    f"the client certificate's subject {subject!r} is no principal of this server"
                )
            return found
        raise UnauthenticatedError(
            "this server needs credentials: send `authorization: Bearer TOKEN` metadata "
            "(nixlookup --token-file, env NIXLOOKUP_TOKEN) or a client certificate"
        )

    def admit(self, context: Any) -> contextvars.Token[Principal]:
        """Authenticate the call of `context` (a grpc or grpc.aio servicer context) and make its
        principal the current one; `leave` with the returned token when the call ends."""
        try:
            principal = self.authenticate(context.invocation_metadata(), context.auth_context())
        except UnauthenticatedError as error:
            _log.warning("unauthenticated", peer=context.peer(), reason=str(error))
            raise
        return _principal_var.set(principal)

    @staticmethod
    def leave(token: contextvars.Token[Principal]) -> None:
        try:
            _principal_var.reset(token)
        except ValueError:  # a stream closed from another context: that context never saw it set
            _principal_var.set(ANONYMOUS)


def _bearer_token(metadata: Metadata | None) -> str | None:
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if not text[: len(_BEARER)].lower() == _BEARER or not text[len(_BEARER) :].strip():
                raise UnauthenticatedError("`authorization` metadata must be `Bearer TOKEN`")
            return text[len(_BEARER) :].strip()
    return None


def _certificate_subject(auth_context: AuthContext | None) -> str | None:
    values = (auth_context or {}).get(_SUBJECT_PROPERTY)
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def authorize(principal: Principal, role: Role, caller: str | None = None) -> str:
    """May `principal` do what needs `role`, as `caller`? Returns the caller the call acts as.

    `caller` None: the call names no caller (the register, Compact, the audit log). A check (role
    `check`) with an empty caller gets the principal's only caller, if it has exactly one. Raises
    PERMISSION_DENIED naming the principal, the role or the caller.
    """
    if role not in principal.roles:
        having = ", ".join(sorted(r.value for r in principal.roles))
        raise PermissionDeniedError(
            f"principal {principal.name!r} lacks role {role.value!r} for this call (it has: {having})"
        )
    if caller is None or principal.any_caller:
        return caller or ""
    if caller:
        if caller not in principal.callers:
            raise PermissionDeniedError(
                f"principal {principal.name!r} may not act as caller {caller!r} "
                f"(it may act as: {_callers(principal)})"
            )
        return caller
    if role is not Role.CHECK or not principal.callers:
        return ""
    if len(principal.callers) == 1:
        return next(iter(principal.callers))
    raise PermissionDeniedError(
        f"principal {principal.name!r} acts as several callers ({_callers(principal)}): "
        "name one in `caller`, so the right company's lists answer"
    )


def _callers(principal: Principal) -> str:
    return ", ".join(sorted(principal.callers)) or "none"
