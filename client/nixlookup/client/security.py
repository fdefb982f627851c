"""How a client proves who it is and checks whom it talks to: a bearer token, TLS, mTLS.

Theory of operation:
- `ChannelSecurity` holds the token (sent as ``authorization: Bearer TOKEN`` metadata, the gRPC
  convention) and the TLS material: ``ca`` (PEM of the CA that signed the server's certificate; without
  it, with ``tls=True``, the system's roots), ``cert``/``key`` (a client certificate for mTLS).
- `channel_credentials()` is grpc's own `ssl_channel_credentials`, or None for plaintext. The token is
  not a call-credentials plugin: grpc runs such a plugin on a new thread per call (measured: a unary call
  took 2-4x as long) and refuses it on plaintext channels; instead `metadata` is passed with each call
  (`Client`, `AsyncClient`), or added by `TokenInterceptor` on a channel the CLI's admin commands use.
- `from_sources` reads what the command line and environment give: ``--token-file`` or ``$NIXLOOKUP_TOKEN``
  (the token itself), ``--tls-ca``, ``--tls-cert``, ``--tls-key`` (files; the first spellings ``--ca``,
  ``--cert``, ``--key`` are hidden aliases), ``--tls``. A file that cannot be read is a
  `ValueError` naming it; an empty token file too (a token is never guessed).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

__all__ = [
    "TOKEN_ENV",
    "ChannelSecurity",
    "TokenInterceptor",
    "add_security_arguments",
    "open_channel",
    "security_from_args",
]

TOKEN_ENV = "NIXLOOKUP_TOKEN"  # noqa: S105 - the variable's name, not a secret
"""The bearer token itself (for a file, use ``--token-file`` / ``$NIXLOOKUP_TOKEN_FILE``)."""
TOKEN_FILE_ENV = "NIXLOOKUP_TOKEN_FILE"  # noqa: S105 - a name, not a secret
CA_ENV = "NIXLOOKUP_CA"
CERT_ENV = "NIXLOOKUP_CERT"
KEY_ENV = "NIXLOOKUP_KEY"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ValueError(f"{what} {path}: cannot be read ({error.strerror or error})") from None


@dataclass(frozen=True)
class ChannelSecurity:
    """A bearer token and TLS settings for one client; the default is plaintext without a token."""

    token: str | None = field(default=None, repr=False)
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)
    tls: bool = False

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key: give --tls-cert and --tls-key together")

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca is not None or self.cert is not None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        """The metadata every call carries (None without a token)."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else None

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        if not self.uses_tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )

    @classmethod
    def from_sources(
        cls,
        *,
        token_file: str | Path | None = None,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        tls: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> ChannelSecurity:
        """From files (flags first, then ``$NIXLOOKUP_TOKEN_FILE``, ``$NIXLOOKUP_CA``, ...) and
        ``$NIXLOOKUP_TOKEN``; see the module doc."""
        environ = os.environ if env is None else env
        token = None
        token_path = token_file or environ.get(TOKEN_FILE_ENV) or None
        if token_path is not None:
            token = _read(Path(token_path), "--token-file").decode("utf-8", "replace").strip()
            if not token:
                raise ValueError(f"--token-file {token_path}: the file is empty")
        else:
            token = environ.get(TOKEN_ENV, "").strip() or None
        ca_path = ca or environ.get(CA_ENV) or None
        cert_path = cert or environ.get(CERT_ENV) or None
        key_path = key or environ.get(KEY_ENV) or None
        return cls(
            token=token,
            ca=_read(Path(ca_path), "--tls-ca") if ca_path else None,
            cert=_read(Path(cert_path), "--tls-cert") if cert_path else None,
            key=_read(Path(key_path), "--tls-key") if key_path else None,
            tls=tls,
        )


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """grpc.ClientCallDetails with the token added (grpc leaves building one to the interceptor)."""


if TYPE_CHECKING:
    _Interceptors = (
        grpc.UnaryUnaryClientInterceptor[Any, Any],
        grpc.StreamUnaryClientInterceptor[Any, Any],
    )
else:
    _Interceptors = (grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor)


class TokenInterceptor(*_Interceptors):  # type: ignore[misc]  # grpc's interceptor bases are generic
    """Adds the bearer token to every unary and client-streaming call of a channel (admin commands)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            (*(details.metadata or ()), *self._metadata),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def open_channel(
    target: str, security: ChannelSecurity | None = None, *, options: tuple[tuple[str, Any], ...] = ()
) -> grpc.Channel:
    """A sync channel to `target` with `security`'s TLS, the token added to every call."""
    security = security or ChannelSecurity()
    credentials = security.channel_credentials()
    channel = (
        grpc.secure_channel(target, credentials, options=options)
        if credentials is not None
        else grpc.insecure_channel(target, options=options)
    )
    metadata = security.metadata
    return grpc.intercept_channel(channel, TokenInterceptor(metadata)) if metadata else channel


def add_security_arguments(parser: Any, *, top_level: bool = False) -> None:
    """--token-file, --tls-ca, --tls-cert, --tls-key, --tls on an argparse parser; a command's copy has no
    default, so a value given before the command name is kept (`top_level` gives them their None defaults)."""
    import argparse

    default: Any = None if top_level else argparse.SUPPRESS
    flag_default: Any = False if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--token-file",
        default=default,
        metavar="PATH",
        help=f"file holding the bearer token [env {TOKEN_FILE_ENV}; or the token itself in {TOKEN_ENV}]",
    )
    # One name per concept across the three commands: the server's TLS files are --tls-cert, --tls-key
    # (and --tls-client-ca), so the client's are --tls-ca, --tls-cert, --tls-key. The first spellings
    # (--ca, --cert, --key) stay accepted, hidden from --help.
    for name, old_name, dest, help_text in (
        ("--tls-ca", "--ca", "ca", f"CA certificate to verify the server by (TLS) [env {CA_ENV}]"),
        ("--tls-cert", "--cert", "cert", f"client certificate for mTLS, with --tls-key [env {CERT_ENV}]"),
        ("--tls-key", "--key", "key", f"its private key [env {KEY_ENV}]"),
    ):
        parser.add_argument(name, dest=dest, default=default, metavar="PEM", help=help_text)
        parser.add_argument(old_name, dest=dest, default=default, metavar="PEM", help=argparse.SUPPRESS)
    parser.add_argument(
        "--tls",
        action="store_true",
        default=flag_default,
        help="use TLS with the system's CA certificates (implied by --tls-ca or --tls-cert)",
    )


def security_from_args(args: Any) -> ChannelSecurity:
    """The `ChannelSecurity` the command line (and environment) asks for."""
    return ChannelSecurity.from_sources(
        token_file=getattr(args, "token_file", None),
        ca=getattr(args, "ca", None),
        cert=getattr(args, "cert", None),
        key=getattr(args, "key", None),
        tls=bool(getattr(args, "tls", False)),
    )
