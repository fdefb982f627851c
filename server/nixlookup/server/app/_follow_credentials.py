"""How a follower proves who it is to its writer, and checks whom it talks to.

Theory of operation:
- A follower is a principal of its writer (role ``replicate``; docs/security.md). It presents a bearer
  token read from ``--follow-token-file`` (env ``NIXLOOKUP_FOLLOW_TOKEN_FILE``; the token itself is never
  a flag, so it shows in no process list), and/or, for mTLS, a client certificate (``--follow-cert`` with
  ``--follow-key``) whose subject the writer's auth file names.
- TLS to the writer: ``--follow-ca`` (PEM of the CA that signed the writer's certificate) or
  ``--follow-tls`` (the system's roots); a client certificate implies TLS. A token is never sent in
  plaintext to a writer beyond loopback (the same rule the server applies to its own listeners): that
  start is refused unless ``--insecure``.
- `FollowCredentials.check()` reads every file once at start, so a missing or non-PEM file refuses the
  start naming its flag; then `current()` (the follower calls it at every reconnect) reads them again, so
  a rotated token or certificate is used from the next stream on without a restart. These are grpc's own
  `ssl_channel_credentials` and per-call metadata, as the client does it (the server never imports the
  client), with the PEM checks of `_tls`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from nixlookup.server.app._config import ServerConfig
from nixlookup.server.app._exposure import host_of, is_loopback
from nixlookup.server.app._tls import TlsError, read_pem
from nixlookup.server.rpc import WriterCredentials, WriterCredentialsError

__all__ = ["FollowCredentials"]


@dataclass(frozen=True, slots=True)
class FollowCredentials:
    """The follower's credential files; see the module doc."""

    token_file: Path | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    system_roots: bool = False

    @classmethod
    def from_config(cls, config: ServerConfig) -> FollowCredentials:
        """From the ``--follow-*`` flags; refuses a token in plaintext beyond loopback unless --insecure."""
        credentials = cls(
            token_file=config.follow_token_file,
            ca=config.follow_ca,
            cert=config.follow_cert,
            key=config.follow_key,
            system_roots=config.follow_tls,
        )
        writer = config.follow or ""
        if (
            credentials.token_file is not None
            and not credentials.uses_tls
            and not is_loopback(host_of(writer))
            and not config.insecure
        ):
            raise WriterCredentialsError(
                f"refusing to start: --follow-token-file would send the token in plaintext to {writer}; "
                "set --follow-ca (or --follow-tls) for TLS to the writer, or pass --insecure to accept the "
                "risk"
            )
        credentials.check()
        return credentials

    @property
    def uses_tls(self) -> bool:
        return self.system_roots or self.ca is not None or self.cert is not None

    def describe(self) -> dict[str, str]:
        """What the startup log says about how this follower authenticates (never the token)."""
        tls = "mTLS" if self.cert is not None else ("TLS" if self.uses_tls else "plaintext")
        return {"follow_tls": tls, "follow_auth": "token" if self.token_file is not None else "none"}

    def check(self) -> None:
        """Read every file now (at start): an unreadable or malformed one is refused naming its flag."""
        self.current()

    def current(self) -> WriterCredentials:
        """What to present on the next connection, read from the files now."""
        try:
            channel = None
            if self.uses_tls:
                channel = grpc.ssl_channel_credentials(
                    root_certificates=read_pem("--follow-ca", self.ca, b"CERTIFICATE-----")
                    if self.ca
                    else None,
                    private_key=read_pem("--follow-key", self.key, b"PRIVATE KEY-----") if self.key else None,
                    certificate_chain=(
                        read_pem("--follow-cert", self.cert, b"CERTIFICATE-----") if self.cert else None
                    ),
                )
            metadata = None
            if self.token_file is not None:
                metadata = (("authorization", f"Bearer {self._token()}"),)
        except TlsError as error:
            raise WriterCredentialsError(str(error)) from None
        return WriterCredentials(channel=channel, metadata=metadata)

    def _token(self) -> str:
        assert self.token_file is not None
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise WriterCredentialsError(
                f"--follow-token-file {self.token_file}: cannot be read ({reason})"
            ) from None
        if not token:
            raise WriterCredentialsError(f"--follow-token-file {self.token_file}: the file is empty")
        return token
