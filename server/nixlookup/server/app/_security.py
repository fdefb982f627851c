"""The server's security, assembled from its flags: principals, TLS, where Admin goes, SIGHUP.

Theory of operation:
- `Security.from_config` loads the auth file (`rpc.Authenticator`), checks the TLS files
  (`CertificateSource`) and decides where Admin is served (`plan_exposure`), refusing an unsafe exposure
  before anything listens. Each failure is a `NixlookupError` whose message names the flag or file.
- On a follower (``--follow``), `follow` holds what it presents to its writer (`FollowCredentials`:
  token file, TLS to the writer, mTLS), its files checked here too.
- `credentials()` is what every listener binds with: TLS credentials shared by all listeners, or None
  for plaintext.
- `install_sighup` adds to whatever SIGHUP already does (the store re-reads ``--register``): re-read the
  auth file (a refused file keeps the principals in force) and the certificates.
- `startup_warnings` is what the start logs at warning level: every ``--insecure`` exposure, principals
  with a ``cert_subject`` while no client CA is configured (they can never authenticate).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import grpc

from nixlookup.server.app._config import ServerConfig
from nixlookup.server.app._exposure import ExposurePlan, plan_exposure
from nixlookup.server.app._follow_credentials import FollowCredentials
from nixlookup.server.app._tls import CertificateSource, TlsFiles
from nixlookup.server.logs import get_logger
from nixlookup.server.rpc import Authenticator, Meter

__all__ = ["Security"]

_log = get_logger("nixlookup.server")


@dataclass
class Security:
    """Who may call, over what transport, and where Admin listens."""

    authenticator: Authenticator
    tls: CertificateSource | None
    plan: ExposurePlan
    meter: Meter = field(default_factory=Meter)
    follow: FollowCredentials | None = None
    """With --follow: how this follower authenticates to its writer."""

    @classmethod
    def from_config(cls, config: ServerConfig) -> Security:
        authenticator = Authenticator(config.auth_file)
        tls = None
        if config.tls_cert is not None and config.tls_key is not None:
            tls = CertificateSource(TlsFiles(config.tls_cert, config.tls_key, config.tls_client_ca))
        principals = authenticator.principals
        plan = plan_exposure(
            listen=config.listen,
            admin_listen=config.admin_listen,
            authenticated=authenticator.enabled,
            uses_tokens=principals is not None and principals.uses_tokens,
            tls=tls is not None,
            insecure=config.insecure,
            http_listen=config.http_listen,
        )
        follow = FollowCredentials.from_config(config) if config.follow is not None else None
        return cls(authenticator=authenticator, tls=tls, plan=plan, follow=follow)

    def credentials(self) -> grpc.ServerCredentials | None:
        return self.tls.server_credentials() if self.tls is not None else None

    def startup_warnings(self) -> list[str]:
        warnings = list(self.plan.warnings)
        principals = self.authenticator.principals
        if (
            principals is not None
            and principals.uses_certificates
            and (self.tls is None or not self.tls.mutual)
        ):
            warnings.append(
                "principals with cert_subject cannot authenticate: no --tls-client-ca asks for client "
                "certificates"
            )
        return warnings

    def describe(self) -> dict[str, Any]:
        """What the `serving` log line says about security."""
        principals = self.authenticator.principals
        return {
            **(self.follow.describe() if self.follow is not None else {}),
            "auth": "auth-file" if principals is not None else "none (every call is anonymous)",
            "principals": len(principals.principals) if principals is not None else 0,
            "tls": "mTLS"
            if self.tls is not None and self.tls.mutual
            else ("TLS" if self.tls else "plaintext"),
        }

    def install_sighup(self, *, replaces: object = None) -> None:
        """On SIGHUP also re-read the auth file and the certificates (main thread only); the handler
        in place is called after, unless it is `replaces` (a placeholder that only logs)."""
        if not self.authenticator.enabled and self.tls is None:
            return  # nothing of ours to re-read
        previous = signal.getsignal(signal.SIGHUP)
        chained: Callable[[int, FrameType | None], Any] | None = (
            previous if callable(previous) and previous is not replaces else None
        )
        tls = self.tls
        authenticator = self.authenticator

        def on_sighup(signum: int, frame: FrameType | None) -> None:
            if authenticator.enabled:
                authenticator.reload()
            if tls is not None:
                tls.request_reload()
            if chained is not None:
                chained(signum, frame)

        signal.signal(signal.SIGHUP, on_sighup)
