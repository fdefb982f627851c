"""The auth file: who may call the server, as which callers, with which roles.

Theory of operation:
- The auth file (``--auth-file``, TOML) lists principals::

      [[principal]]
      name = "acme-dialer"              # shown in logs and the audit record, never a secret
      token_sha256 = "9f86d0..."        # hex SHA-256 of the bearer token (the token is never stored)
      cert_subject = "CN=acme-dialer"   # optional: who this principal is under mTLS
      callers = ["acme"]                # caller ids it may act as; "*" = all
      roles = ["check", "lists"]        # check | lists | admin | replicate

- `load_auth_file` reads and validates the whole file or refuses it with an `AuthFileError` naming the
  file, the principal (by position and name) and the field: an unknown key (a typo such as ``role`` must
  not silently grant nothing), a token digest that is not 64 hex digits, a duplicate name, token or
  subject, an unknown role, a principal with no way to authenticate. A refused file never replaces a
  loaded one (`Authenticator.reload` keeps the old principals and says why).
- The file holds digests, never tokens: a leaked auth file does not let anyone in. A token is compared
  by its SHA-256 digest with `hmac.compare_digest`, against every principal's digest (no early exit), so
  the time a comparison takes says nothing about how close a guess was.
- `ANONYMOUS` is the principal of a server without an auth file (loopback development, ``make serve``):
  every role, every caller, so behaviour without an auth file is what it always was.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from nixlookup.server.errors import NixlookupError

__all__ = [
    "ALL_CALLERS",
    "ANONYMOUS",
    "AuthFileError",
    "Principal",
    "Principals",
    "Role",
    "load_auth_file",
    "parse_auth_file",
    "token_digest",
]

ALL_CALLERS = "*"
"""In ``callers``: the principal may act as any caller (an operator's or a test's principal)."""

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_FIELDS = frozenset({"name", "token_sha256", "cert_subject", "callers", "roles"})


class Role(StrEnum):
    """What a principal may do; docs/security.md has the table of which RPC needs which."""

    CHECK = "check"  # Check, CheckStream (as one of its callers)
    LISTS = "lists"  # its callers' lists: Admin Upload / ApplyDelta / DropList on (kind, caller)
    ADMIN = "admin"  # the register, Compact, reloads from server paths, the audit log and usage
    REPLICATE = "replicate"  # the Replicate stream of followers (replicas, LocalReplica)


class AuthFileError(NixlookupError):
    """The auth file cannot be used; the message names the file, the principal and the field."""


def token_digest(token: str) -> bytes:
    """The SHA-256 digest a token is known by (the auth file stores its hex form)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """One entry of the auth file: a name, how it authenticates, the callers and roles it has."""

    name: str
    callers: frozenset[str]
    roles: frozenset[Role]
    token_sha256: bytes | None = field(default=None, repr=False)
    cert_subject: str | None = None

    @property
    def any_caller(self) -> bool:
        return ALL_CALLERS in self.callers

    def may_act_as(self, caller: str) -> bool:
        return self.any_caller or caller in self.callers

    def sees_lists_of(self, caller: str) -> bool:
        """May this principal see that `caller`'s lists exist (GetRegisterInfo)?"""
        return self.may_act_as(caller)


ANONYMOUS = Principal(name="anonymous", callers=frozenset({ALL_CALLERS}), roles=frozenset(Role))
"""Every call's principal on a server without an auth file."""


@dataclass(frozen=True, slots=True)
class Principals:
    """A validated auth file: its principals, by token digest and by certificate subject."""

    source: str
    principals: tuple[Principal, ...]
    by_subject: Mapping[str, Principal]
    digests: tuple[tuple[bytes, Principal], ...]

    @property
    def uses_tokens(self) -> bool:
        return bool(self.digests)

    @property
    def uses_certificates(self) -> bool:
        return bool(self.by_subject)

    def by_token(self, token: str) -> Principal | None:
        """The principal whose digest is the token's; every digest is compared, in constant time each."""
        digest = token_digest(token)
        found: Principal | None = None
        for known, principal in self.digests:
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def load_auth_file(path: Path) -> Principals:
    """Read and validate the auth file at `path` (see the module doc); `AuthFileError` names what's wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise AuthFileError(f"auth file {path}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise AuthFileError(f"auth file {path}: not UTF-8 text ({error.reason})") from None
    return parse_auth_file(text, source=str(path))


def parse_auth_file(text: str, *, source: str = "auth file") -> Principals:
    """Validate the TOML `text` of an auth file; `source` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise AuthFileError(f"auth file {source}: not valid TOML ({error})") from None
    unknown = sorted(set(data) - {"principal"})
    if unknown:
        raise AuthFileError(
            f"auth file {source}: unknown top-level key(s) {', '.join(unknown)}; "
            "only [[principal]] tables are allowed"
        )
    entries = data.get("principal", [])
    if not isinstance(entries, list) or not entries:
        raise AuthFileError(
            f"auth file {source}: defines no [[principal]]; every call would be refused"
            if not entries
            else f"auth file {source}: `principal` must be an array of tables ([[principal]])"
        )
    principals = tuple(_principal(entry, position, source) for position, entry in enumerate(entries, 1))
    _refuse_duplicates(principals, source)
    return Principals(
        source=source,
        principals=principals,
        by_subject={p.cert_subject: p for p in principals if p.cert_subject is not None},
        digests=tuple((p.token_sha256, p) for p in principals if p.token_sha256 is not None),
    )


def _principal(entry: Any, position: int, source: str) -> Principal:
    where = f"auth file {source}: principal #{position}"
    if not isinstance(entry, dict):
        raise AuthFileError(f"{where} is not a table")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise AuthFileError(f"{where}: `name` is required, a non-empty string")
    where = f"{where} ({name!r})"
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise AuthFileError(
            f"{where}: unknown field(s) {', '.join(unknown)}; the fields are {', '.join(sorted(_FIELDS))}"
        )
    digest = _digest(entry.get("token_sha256"), where)
    subject = entry.get("cert_subject")
    if subject is not None and (not isinstance(subject, str) or not subject.strip()):
        raise AuthFileError(f'{where}: `cert_subject` must be a non-empty string such as "CN=acme-dialer"')
    if digest is None and subject is None:
        raise AuthFileError(
            f"{where}: needs `token_sha256` or `cert_subject`, else nothing can authenticate as it"
        )
    callers = _strings(entry.get("callers", []), "callers", where)
    if ALL_CALLERS in callers and len(callers) > 1:
        raise AuthFileError(f'{where}: `callers` holds "*" (all callers) beside others; use one or the other')
    roles = _roles(entry.get("roles"), where)
    return Principal(
        name=name,
        callers=frozenset(callers),
        roles=roles,
        token_sha256=digest,
        cert_subject=subject.strip() if subject is not None else None,
    )


def _digest(value: Any, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX_DIGEST.fullmatch(value.strip().lower()):
        raise AuthFileError(
            f"{where}: `token_sha256` must be the 64 hex digits of the token's SHA-256 "
            '(e.g. `printf %s "$TOKEN" | sha256sum`), never the token itself'
        )
    return bytes.fromhex(value.strip())


def _strings(value: Any, name: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise AuthFileError(f"{where}: `{name}` must be a list of non-empty strings")
    return list(value)


def _roles(value: Any, where: str) -> frozenset[Role]:
    known = ", ".join(role.value for role in Role)
    if value is None:
        raise AuthFileError(f"{where}: `roles` is required, a list of {known}")
    names = _strings(value, "roles", where)
    if not names:
        raise AuthFileError(f"{where}: `roles` is empty; give at least one of {known}")
    roles: set[Role] = set()
    for item in names:
        try:
            roles.add(Role(item))
        except ValueError:
            raise AuthFileError(f"{where}: unknown role {item!r}; the roles are {known}") from None
    return frozenset(roles)


def _refuse_duplicates(principals: tuple[Principal, ...], source: str) -> None:
    for what in ("name", "token_sha256", "cert_subject"):
        owners: dict[object, str] = {}
        for principal in principals:
            value = getattr(principal, what)
            if value is None:
                continue
            if value in owners:
                raise AuthFileError(
                    f"auth file {source}: principals {owners[value]!r} and {principal.name!r} have the same "
                    f"`{what}`; each must be unique"
                )
            owners[value] = principal.name
