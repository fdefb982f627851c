"""Which listener serves what, and the refusal to expose the server unsafely.

Theory of operation:
- `--listen` serves Lookup (and health, reflection). Admin is served on `--admin-listen` when it is set
  (its own listener, which can be bound to loopback or a management network); without it, on `--listen`
  only when that is a loopback address, and not at all otherwise. So a server on ``0.0.0.0`` never offers
  Admin unless the operator asked for an Admin listener.
- A listener beyond loopback (``--listen``, ``--admin-listen``, ``--http-listen``) needs authentication
  (``--auth-file``), and when any principal uses a bearer token, TLS (a token sent in plaintext is a
  token given away). Without them the server refuses to start and says what is missing, unless
  ``--insecure`` is given: then it starts and warns, at every start, naming what is unsafe.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from nixlookup.server.errors import NixlookupError

__all__ = ["ExposureError", "ExposurePlan", "is_loopback", "plan_exposure"]


class ExposureError(NixlookupError):
    """Starting as configured would expose the server unsafely; the message says what to add."""


def host_of(address: str) -> str:
    """``HOST`` of ``HOST:PORT`` (IPv6 in brackets kept without them)."""
    return address.rpartition(":")[0].strip("[]")


def is_loopback(host: str) -> bool:
    """Is `host` (an address or ``localhost``) reachable only from this machine?"""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True, slots=True)
class ExposurePlan:
    """Where Admin is served and what the start must warn about."""

    admin_on_listen: bool
    admin_listen: str | None
    warnings: tuple[str, ...] = ()


def plan_exposure(
    *,
    listen: str,
    admin_listen: str | None,
    authenticated: bool,
    uses_tokens: bool,
    tls: bool,
    insecure: bool,
    http_listen: str | None = None,
) -> ExposurePlan:
    """Decide where Admin goes; raise `ExposureError` for an unsafe exposure unless `insecure`.
    `http_listen` (the HTTP/JSON front) is held to the same rule as the gRPC listeners."""
    listeners = (listen, admin_listen, http_listen)
    exposed = [address for address in listeners if address and not is_loopback(host_of(address))]
    problems: list[str] = []
    for address in exposed:
        if not authenticated:
            problems.append(f"{address} is beyond loopback and calls are not authenticated (set --auth-file)")
        elif uses_tokens and not tls:
            problems.append(
                f"{address} is beyond loopback and bearer tokens would travel in plaintext "
                "(set --tls-cert and --tls-key)"
            )
    if problems and not insecure:
        raise ExposureError(
            "refusing to start: " + "; ".join(problems) + "; or pass --insecure to accept the risk"
        )
    warnings = tuple(f"--insecure: {problem}" for problem in problems)
    if insecure and not problems:
        warnings = ("--insecure is set: the server would refuse no unsafe exposure it finds now",)
    admin_on_listen = admin_listen is None and is_loopback(host_of(listen))
    return ExposurePlan(admin_on_listen=admin_on_listen, admin_listen=admin_listen, warnings=warnings)
