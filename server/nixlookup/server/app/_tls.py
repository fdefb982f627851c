"""TLS for every listener, with certificates rotated without a restart.

Theory of operation:
- ``--tls-cert`` / ``--tls-key`` (PEM: the certificate chain and its private key) turn TLS on for every
  listener; ``--tls-client-ca`` adds mTLS: a client must present a certificate signed by that CA, and its
  subject can name a principal (``cert_subject`` in the auth file).
- The server credentials are grpc's own (`grpc.dynamic_ssl_server_credentials`): grpc calls
  `CertificateSource.fetch` before every new connection's handshake; it answers None (keep the current
  configuration) unless a file's (size, mtime) changed or SIGHUP asked for a re-read, and then returns a
  new `grpc.ssl_server_certificate_configuration` read from the files. So a renewed certificate (certbot,
  cert-manager) is used from the next connection on, without a restart; connections already open keep
  theirs. Checking costs three ``stat`` calls per new connection, nothing per call.
- Each listener has its own fetcher (`fetcher`), which remembers the configuration its listener has:
  the files are read once per change, and every listener is handed the new configuration.
- A re-read that fails (a file half-written, a key that is not PEM) keeps the configuration in force and
  logs why; it is tried again on the next connection. The files are checked when the server starts: a
  missing or non-PEM file refuses the start, naming the file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc

from nixlookup.server.errors import NixlookupError
from nixlookup.server.logs import get_logger

__all__ = ["CertificateSource", "FilesSignature", "TlsError", "TlsFiles", "files_signature", "read_pem"]

_log = get_logger("nixlookup.tls")


class TlsError(NixlookupError):
    """A TLS file is missing or not PEM; the message names the flag and the file."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The PEM files of ``--tls-cert``, ``--tls-key`` and, for mTLS, ``--tls-client-ca``."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def named(self) -> tuple[tuple[str, Path], ...]:
        files = (("--tls-cert", self.cert), ("--tls-key", self.key))
        return (*files, ("--tls-client-ca", self.client_ca)) if self.client_ca is not None else files


FilesSignature = tuple[tuple[int, int], ...]
"""Each file's (size, mtime in ns), (-1, -1) for one that cannot be read: changes when a file is replaced."""


def files_signature(paths: Iterable[Path]) -> FilesSignature:
    """What tells a renewed certificate from the one in force without reading it: a ``stat`` per file."""
    signature = []
    for path in paths:
        try:
            status = path.stat()
            signature.append((status.st_size, status.st_mtime_ns))
        except OSError:
            signature.append((-1, -1))
    return tuple(signature)


def read_pem(flag: str, path: Path, marker: bytes) -> bytes:
    """The bytes of a PEM file holding `marker` (``CERTIFICATE-----``, ``PRIVATE KEY-----``); a `TlsError`
    naming `flag` and the file otherwise (also used for the follower's files, `_follow_credentials`)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TlsError(f"{flag} {path}: cannot be read ({error.strerror or error})") from None
    if b"-----BEGIN " not in data or marker not in data:
        raise TlsError(f"{flag} {path}: not a PEM file holding {marker.decode().strip('-')}")
    return data


class CertificateSource:
    """The current certificate configuration, re-read when the files change or on `request_reload`."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._reload_requested = False
        self._signature = self._stat()
        self._initial = self._configuration()
        self._current = self._initial
        self.reloads = 0
        self._default_fetch = self.fetcher()

    @property
    def mutual(self) -> bool:
        return self.files.client_ca is not None

    def _stat(self) -> FilesSignature:
        return files_signature(path for _flag, path in self.files.named())

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert = read_pem("--tls-cert", self.files.cert, b"CERTIFICATE-----")
        key = read_pem("--tls-key", self.files.key, b"PRIVATE KEY-----")
        root = (
            read_pem("--tls-client-ca", self.files.client_ca, b"CERTIFICATE-----")
            if self.files.client_ca is not None
            else None
        )
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=root)

    def request_reload(self) -> None:
        """Re-read the files before the next handshake even if they look unchanged (SIGHUP)."""
        with self._lock:
            self._reload_requested = True

    def _refresh(self) -> None:
        """Re-read the files when they changed (or SIGHUP asked); a failed read keeps the current one."""
        signature = self._stat()
        with self._lock:
            if signature == self._signature and not self._reload_requested:
                return
            try:
                configuration = self._configuration()
            except TlsError as error:
                _log.error("tls_reload_failed", error=str(error), kept="the certificate in use")
                return
            self._reload_requested = False
            self._signature = signature
            self._current = configuration
            self.reloads += 1
        _log.info("tls_certificate_reloaded", cert=str(self.files.cert), reloads=self.reloads)

    def fetcher(self) -> Callable[[], grpc.ServerCertificateConfiguration | None]:
        """A certificate_configuration_fetcher for one listener: it remembers which configuration its
        listener has, so every listener gets a renewed certificate, not only the first to ask."""
        seen = [self.reloads]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            self._refresh()
            with self._lock:
                if seen[0] == self.reloads:
                    return None
                seen[0] = self.reloads
                return self._current

        return fetch

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """What `fetcher`'s callable answers, for a single listener (and tests)."""
        return self._default_fetch()

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials for one listener's ``add_secure_port`` (call once per listener)."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self.fetcher(),  # type: ignore[arg-type]  # grpc-stubs omit the documented None (= no change)
            require_client_authentication=self.mutual,
        )
