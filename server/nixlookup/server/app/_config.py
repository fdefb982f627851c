"""The server's configuration: command-line flags, each with an environment variable beside it.

A flag wins over its variable, the variable over the default. Every option is explained where it is
defined (the ``help`` text is what ``nixlookup-server serve --help`` prints and what docs/service.md
lists). `parse_args` returns a frozen `ServerConfig` (for ``serve``), `SynthConfig` (for ``synth``) or
`RepairConfig` (for ``repair``).
A bad flag or variable stops the command with one line on stderr naming it and `EXIT_CONFIG_ERROR`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn, get_args

from nixlookup.server.logs import LOG_FORMATS, LogFormat
from nixlookup.server.rpc import (
    DEFAULT_MAX_LAG_SECONDS,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_MIN_VERSION_WAIT_SECONDS,
)
from nixlookup.server.store import SyntheticFileFormat

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EXIT_CONFIG_ERROR",
    "EXIT_START_FAILED",
    "RepairConfig",
    "ServerConfig",
    "SynthConfig",
    "build_parser",
    "config_error",
    "flag_and_variable",
    "package_version",
    "parse_args",
    "setting_name",
]

EXIT_START_FAILED = 1
"""Exit code: the server could not start for a reason other than its configuration (unreadable register,
refused data directory)."""
EXIT_CONFIG_ERROR = 2
"""Exit code: the command line or environment is wrong (a bad flag or variable, an address that cannot be
bound), as argparse itself exits on a bad flag."""

DEFAULT_LISTEN = "127.0.0.1:50051"
"""Loopback by default: exposing the server is a deliberate act (``--listen 0.0.0.0:50051``)."""
DEFAULT_GRACE_SECONDS = 10.0
"""How long in-flight calls (a running stream too) may take to finish after SIGTERM; Kubernetes' default
terminationGracePeriodSeconds is 30, so 10 leaves room for the pod's preStop and the kill."""
DEFAULT_MAX_BATCH = 100_000
"""Numbers per CheckBatch: 100k packed keys are 800 KB, 100k texts about 2-3 MB; larger batches gain
nothing in throughput (per-batch overhead is already < 1%) and only hold more memory per stream."""
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest request message: 100k texts of up to ~80 characters each (a phone number as written is
usually 10-20). grpc's own default is 4 MiB, too small for a full batch of long texts."""
DEFAULT_WORKERS = 2
"""Threads running stream batches' numpy/numba work (calls themselves run on the event loop and hold no
thread). numpy and numba release the GIL for part of a batch only, so on 2 cores more threads gain
nothing: measured in docs/service.md."""
DEFAULT_MAX_CONCURRENT_RPCS = 1024
"""Calls in progress (every service, unary and streaming) beyond which a new call gets RESOURCE_EXHAUSTED
at once instead of waiting. An idle call costs a suspended coroutine (a few KB), so the ceiling is about
memory and fairness, not threads."""
DEFAULT_MAX_STREAMS = 512
"""Of those, streaming calls (CheckStream, Health/Watch, reflection). Lower than the total so that open
streams, idle or stalled, can never take every slot the unary Checks need."""
DEFAULT_STREAM_IDLE_SECONDS = 60.0
"""A CheckStream whose client neither sends its next batch nor reads the last result for this long is
ended with DEADLINE_EXCEEDED: a stalled or forgotten stream frees its memory and its slot."""
DEFAULT_KEEPALIVE_SECONDS = 30.0
"""The server pings a connection after this long without traffic (grpc.keepalive_time_ms; grpc's own
default is 2 hours), so a client whose host vanished without closing is found..."""
DEFAULT_KEEPALIVE_TIMEOUT_SECONDS = 10.0
"""...when the ping is not answered within this long (grpc.keepalive_timeout_ms and
grpc.http2.ping_timeout_ms): its connection is closed and its calls cancelled. A vanished client's
streams and connections are reclaimed within keepalive + timeout (40 s by default)."""
DEFAULT_MIN_CLIENT_PING_SECONDS = 10.0
"""Clients may ping at most this often (grpc.http2.min_ping_interval_without_data_ms; grpc's default is 5
minutes, which makes common client keepalive settings of 10-60 s fail with GOAWAY too_many_pings)."""
DEFAULT_MAX_PING_STRIKES = 2
"""Pings too soon a client may send before the server closes its connection (grpc.http2.max_ping_strikes,
grpc's default): a client flooding pings is cut off."""
DEFAULT_MAX_CONNECTION_IDLE_SECONDS = 300.0
"""A connection with no call for this long is closed with GOAWAY (grpc.max_connection_idle_ms); clients
reconnect on their next call."""
DEFAULT_MAX_CONNECTION_AGE_SECONDS = 1800.0
"""A connection older than this (plus grpc's +-10% jitter) is asked to go away (grpc.max_connection_age_ms),
so clients re-resolve and load spreads over new replicas; new calls go to a new connection..."""
DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS = 300.0
"""...while calls already running on the old one get this long to finish (grpc.max_connection_age_grace_ms)
before they are cancelled."""
DEFAULT_STREAM_WINDOW_BYTES = 1024 * 1024
"""HTTP/2 flow-control window per stream, fixed (grpc's BDP auto-tuning is off: see app/_transport.py).
1 MiB, as grpc-java and grpc-go use, keeps a 100k-number batch (800 KB) in flight on a LAN; over a long
link (RTT r) a stream moves at most window / r, e.g. 50 MB/s at 20 ms."""
DEFAULT_HANDSHAKE_TIMEOUT_SECONDS = 10.0
"""A connection that has not completed the HTTP/2 handshake (the client's preface and SETTINGS, and TLS
when configured) within this long is closed (grpc.server_handshake_timeout_ms; grpc's default is 120 s),
so sockets that connect and say nothing cannot pile up."""
DEFAULT_ADDRESS_VALIDITY_MONTHS = 3
"""NIX-Adresserat: companies need not wash more often than every third month."""
DEFAULT_RELATIONSHIP_GRACE_DAYS = 365
"""NIX: a customer relationship lasts after the contract ends, "normally at most 12 months"."""
DEFAULT_EXPIRY_WARNING_DAYS = 7
"""Days before the serving register's answers expire (date + 2 months) from which the log warns, once a
day: a week leaves room for a weekend and a failed delivery of the next register."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``nixlookup-server serve`` needs to run."""

    listen: str = DEFAULT_LISTEN
    register: Path | None = None
    data_dir: Path | None = None
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    max_batch: int = DEFAULT_MAX_BATCH
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    workers: int = DEFAULT_WORKERS
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS
    max_streams: int = DEFAULT_MAX_STREAMS
    stream_idle_seconds: float = DEFAULT_STREAM_IDLE_SECONDS
    keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS
    keepalive_timeout_seconds: float = DEFAULT_KEEPALIVE_TIMEOUT_SECONDS
    min_client_ping_seconds: float = DEFAULT_MIN_CLIENT_PING_SECONDS
    max_ping_strikes: int = DEFAULT_MAX_PING_STRIKES
    max_connection_idle_seconds: float = DEFAULT_MAX_CONNECTION_IDLE_SECONDS
    max_connection_age_seconds: float = DEFAULT_MAX_CONNECTION_AGE_SECONDS
    max_connection_age_grace_seconds: float = DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS
    handshake_timeout_seconds: float = DEFAULT_HANDSHAKE_TIMEOUT_SECONDS
    stream_window_bytes: int = DEFAULT_STREAM_WINDOW_BYTES
    synthetic_size: int | None = None
    synthetic_seed: int | None = None
    address_register: Path | None = None
    address_validity_months: int = DEFAULT_ADDRESS_VALIDITY_MONTHS
    synthetic_address_size: int | None = None
    log_level: str = "info"
    log_format: LogFormat = "auto"
    port_file: Path | None = None
    watch_seconds: float = 0.0
    compact_after: int = 1000
    relationship_grace_days: int = DEFAULT_RELATIONSHIP_GRACE_DAYS
    block_mobile_without_relationship: bool = False
    reload_root: Path | None = None
    expiry_warning_days: int = DEFAULT_EXPIRY_WARNING_DAYS
    auth_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    admin_listen: str | None = None
    health_listen: str | None = None
    insecure: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    metrics_listen: str | None = None
    otel: bool = False
    http_listen: str | None = None
    follow: str | None = None
    follow_token_file: Path | None = None
    follow_ca: Path | None = None
    follow_cert: Path | None = None
    follow_key: Path | None = None
    follow_tls: bool = False
    max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS
    min_version_wait_seconds: float = DEFAULT_MIN_VERSION_WAIT_SECONDS
    processes: int = 1


@dataclass(frozen=True, slots=True)
class SynthConfig:
    """What ``nixlookup-server synth`` writes."""

    size: int
    seed: int | None
    out: Path
    format: SyntheticFileFormat
    log_level: str = "info"
    log_format: LogFormat = "auto"


@dataclass(frozen=True, slots=True)
class RepairConfig:
    """What ``nixlookup-server repair`` looks at, and whether it may act."""

    data_dir: Path
    yes: bool = False
    log_level: str = "info"
    log_format: LogFormat = "auto"


def _positive_int(text: str) -> int:
    value = int(text.replace("_", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected yes/no (true/false, 1/0), got {text!r}")


def _listen_address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 127.0.0.1:50051), got {text!r}")
    return text


def _env_default(env: Mapping[str, str], name: str, convert: Callable[[str], Any], default: Any) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return convert(raw)
    except (ValueError, argparse.ArgumentTypeError) as error:
        config_error(f"{name}={raw!r} is invalid: {error}")


@dataclass(frozen=True, slots=True)
class _Option:
    """One flag, its environment variable, how to read it, its default and what it does."""

    flag: str
    var: str
    convert: Callable[[str], Any]
    default: Any
    help: str
    dest: str | None = None
    choices: tuple[str, ...] | None = None

    def add_to(self, parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
        value = _env_default(env, self.var, self.convert, self.default)
        if self.choices is not None and value not in self.choices:
            config_error(f"{self.var}={value!r} is not one of {', '.join(self.choices)}")
        extra: dict[str, Any] = {"dest": self.dest} if self.dest else {}
        if self.convert is _boolean:
            extra["nargs"] = "?"  # a bare flag means yes; `--flag no` turns off what the env var set
            extra["const"] = True
        shown = "none" if self.default is None else self.default
        parser.add_argument(
            self.flag,
            type=self.convert,
            default=value,
            choices=self.choices,
            help=f"{self.help} [env {self.var}; default {shown}]",
            **extra,
        )


_SERVE_OPTIONS = (
    _Option("--listen", "NIXLOOKUP_LISTEN", _listen_address, DEFAULT_LISTEN,
            "address to listen on, HOST:PORT; port 0 picks a free port (see --port-file)"),
    _Option("--register", "NIXLOOKUP_REGISTER", Path, None,
            "register file to serve: text (one number per line), CSV or snapshot; without it (and "
            "without a register in --data-dir) the server serves a SYNTHETIC register"),
    _Option("--address-register", "NIXLOOKUP_ADDRESS_REGISTER", Path, None,
            "NIX-Adresserat register file: CSV with any of personnummer,name,street,postcode,city(,care_of), "
            "or a snapshot; without it (and without one in --data-dir) a SYNTHETIC address register"),
    _Option("--address-validity-months", "NIXLOOKUP_ADDRESS_VALIDITY_MONTHS", _positive_int,
            DEFAULT_ADDRESS_VALIDITY_MONTHS,
            "calendar months an answer from an address register version holds, from the version's date"),
    _Option("--synthetic-address-size", "NIXLOOKUP_SYNTHETIC_ADDRESS_SIZE", _positive_int, None,
            "people in the synthetic address register served when none is given (none: built-in size)"),
    _Option("--data-dir", "NIXLOOKUP_DATA_DIR", Path, None,
            "data directory holding the register's and callers' lists, snapshots and journal"),
    _Option("--grace", "NIXLOOKUP_GRACE", _non_negative_float, DEFAULT_GRACE_SECONDS,
            "seconds in-flight calls get to finish after SIGTERM/SIGINT", dest="grace_seconds"),
    _Option("--max-batch", "NIXLOOKUP_MAX_BATCH", _positive_int, DEFAULT_MAX_BATCH,
            "most numbers in one CheckBatch; larger batches get INVALID_ARGUMENT"),
    _Option("--max-message-bytes", "NIXLOOKUP_MAX_MESSAGE_BYTES", _positive_int, DEFAULT_MAX_MESSAGE_BYTES,
            "largest request message in bytes; larger ones get RESOURCE_EXHAUSTED"),
    _Option("--workers", "NIXLOOKUP_WORKERS", _positive_int, DEFAULT_WORKERS,
            "threads running stream batches' numpy work (calls run on the event loop, holding no thread)"),
    _Option("--max-concurrent-rpcs", "NIXLOOKUP_MAX_CONCURRENT_RPCS", _positive_int,
            DEFAULT_MAX_CONCURRENT_RPCS, "calls in progress beyond which new calls get RESOURCE_EXHAUSTED"),
    _Option("--max-streams", "NIXLOOKUP_MAX_STREAMS", _positive_int, DEFAULT_MAX_STREAMS,
            "streaming calls open at once (CheckStream, Health/Watch, reflection) beyond which new ones get "
            "RESOURCE_EXHAUSTED"),
    _Option("--stream-idle-timeout", "NIXLOOKUP_STREAM_IDLE_TIMEOUT", _positive_float,
            DEFAULT_STREAM_IDLE_SECONDS, "seconds a CheckStream may go without sending a batch or reading a "
            "result before it is ended with DEADLINE_EXCEEDED", dest="stream_idle_seconds"),
    _Option("--keepalive-time", "NIXLOOKUP_KEEPALIVE_TIME", _positive_float, DEFAULT_KEEPALIVE_SECONDS,
            "seconds without traffic after which the server pings a connection", dest="keepalive_seconds"),
    _Option("--keepalive-timeout", "NIXLOOKUP_KEEPALIVE_TIMEOUT", _positive_float,
            DEFAULT_KEEPALIVE_TIMEOUT_SECONDS, "seconds a ping may go unanswered before the connection is "
            "closed and its calls cancelled", dest="keepalive_timeout_seconds"),
    _Option("--min-client-ping-interval", "NIXLOOKUP_MIN_CLIENT_PING_INTERVAL", _positive_float,
            DEFAULT_MIN_CLIENT_PING_SECONDS, "seconds a client must leave between its pings; sooner ones "
            "are strikes", dest="min_client_ping_seconds"),
    _Option("--max-ping-strikes", "NIXLOOKUP_MAX_PING_STRIKES", _non_negative_int, DEFAULT_MAX_PING_STRIKES,
            "pings too soon before the connection is closed with GOAWAY too_many_pings (0 = no limit)"),
    _Option("--max-connection-idle", "NIXLOOKUP_MAX_CONNECTION_IDLE", _positive_float,
            DEFAULT_MAX_CONNECTION_IDLE_SECONDS, "seconds a connection may carry no call before it is "
            "closed", dest="max_connection_idle_seconds"),
    _Option("--max-connection-age", "NIXLOOKUP_MAX_CONNECTION_AGE", _positive_float,
            DEFAULT_MAX_CONNECTION_AGE_SECONDS, "seconds after which a connection is asked to go away "
            "(+-10%% jitter), so clients reconnect and spread over replicas",
            dest="max_connection_age_seconds"),
    _Option("--max-connection-age-grace", "NIXLOOKUP_MAX_CONNECTION_AGE_GRACE", _non_negative_float,
            DEFAULT_MAX_CONNECTION_AGE_GRACE_SECONDS, "seconds calls on a connection past its age get to "
            "finish before they are cancelled", dest="max_connection_age_grace_seconds"),
    _Option("--stream-window", "NIXLOOKUP_STREAM_WINDOW", _positive_int, DEFAULT_STREAM_WINDOW_BYTES,
            "HTTP/2 flow-control window per stream in bytes: how far a client may send ahead of the server",
            dest="stream_window_bytes"),
    _Option("--handshake-timeout", "NIXLOOKUP_HANDSHAKE_TIMEOUT", _positive_float,
            DEFAULT_HANDSHAKE_TIMEOUT_SECONDS, "seconds a new connection has to complete the HTTP/2 "
            "handshake before it is closed", dest="handshake_timeout_seconds"),
    _Option("--synthetic-size", "NIXLOOKUP_SYNTHETIC_SIZE", _positive_int, None,
            "numbers in the synthetic register served when no register is given (none: built-in size)"),
    _Option("--synthetic-seed", "NIXLOOKUP_SYNTHETIC_SEED", int, None,
            "seed of the synthetic register (none: the built-in seed)"),
    _Option("--port-file", "NIXLOOKUP_PORT_FILE", Path, None,
            "write the bound port here once listening (for supervisors and tests that listen on port 0)"),
    _Option("--watch", "NIXLOOKUP_WATCH", _non_negative_float, 0.0,
            "with --register: poll the register file this often (seconds) and reload it "
            "when it changed (0 = only on SIGHUP)", dest="watch_seconds"),
    _Option("--compact-after", "NIXLOOKUP_COMPACT_AFTER", _positive_int, 1000,
            "with --data-dir: journalled deltas per list before they are folded into a new snapshot"),
    _Option("--reload-root", "NIXLOOKUP_RELOAD_ROOT", Path, None,
            "with --data-dir: Admin/Reload may only read files inside this directory (none: any path "
            "the server can read; set it whenever Admin is reachable by others)"),
    _Option("--metrics-listen", "NIXLOOKUP_METRICS_LISTEN", _listen_address, None,
            "serve Prometheus metrics over HTTP on HOST:PORT (needs the server extra: prometheus-client); "
            "none: no metrics endpoint"),
    _Option("--otel", "NIXLOOKUP_OTEL", _boolean, False,
            "trace every RPC with OpenTelemetry, exporting as the standard OTEL_* variables say (default "
            "OTLP over gRPC to OTEL_EXPORTER_OTLP_ENDPOINT); needs pip install 'nixlookup[server,otel]'"),
    _Option("--http-listen", "NIXLOOKUP_HTTP_LISTEN", _listen_address, None,
            "also answer Check as JSON over HTTP on HOST:PORT (POST /v1/check, /v1/check:batch; "
            "docs/http.md): the same principals, TLS and --insecure rule as --listen; none: no HTTP"),
    _Option("--follow", "NIXLOOKUP_FOLLOW", str, None,
            "run as a read-only follower of the writer at this address (HOST:PORT): serve Lookup from the "
            "writer's replicated lists, refuse Admin writes; no data directory is used"),
    _Option("--follow-token-file", "NIXLOOKUP_FOLLOW_TOKEN_FILE", Path, None,
            "with --follow: file holding the bearer token this follower presents to the writer (a "
            "principal with role replicate; re-read at each reconnect; never the token on the command line)"),
    _Option("--follow-ca", "NIXLOOKUP_FOLLOW_CA", Path, None,
            "with --follow: PEM CA certificate to verify the writer by (TLS to the writer)"),
    _Option("--follow-cert", "NIXLOOKUP_FOLLOW_CERT", Path, None,
            "with --follow: PEM client certificate for mTLS to the writer (with --follow-key)"),
    _Option("--follow-key", "NIXLOOKUP_FOLLOW_KEY", Path, None,
            "with --follow: the private key of --follow-cert"),
    _Option("--follow-tls", "NIXLOOKUP_FOLLOW_TLS", _boolean, False,
            "with --follow: TLS to the writer, verified by the system's CA certificates (implied by "
            "--follow-ca or --follow-cert)"),
    _Option("--max-lag", "NIXLOOKUP_MAX_LAG", _non_negative_float, DEFAULT_MAX_LAG_SECONDS,
            "with --follow: report NOT_SERVING while further behind the writer than this (seconds)",
            dest="max_lag_seconds"),
    _Option("--min-version-wait", "NIXLOOKUP_MIN_VERSION_WAIT", _non_negative_float,
            DEFAULT_MIN_VERSION_WAIT_SECONDS,
            "seconds a call naming a min_version not yet served waits for it (within its deadline) "
            "before FAILED_PRECONDITION", dest="min_version_wait_seconds"),
    _Option("--processes", "NIXLOOKUP_PROCESSES", _positive_int, 1,
            "serving processes on this machine: N > 1 runs a writer process (the data directory, Admin on "
            "--admin-listen) and N serving processes sharing --listen (SO_REUSEPORT), each a follower of the "
            "writer over a private unix socket, under a supervisor that restarts them"),
    _Option("--relationship-grace-days", "NIXLOOKUP_RELATIONSHIP_GRACE_DAYS", _non_negative_int,
            DEFAULT_RELATIONSHIP_GRACE_DAYS,
            "days a customer relationship still counts after it ended (NIX: normally at most 12 months)"),
    _Option("--expiry-warning-days", "NIXLOOKUP_EXPIRY_WARNING_DAYS", _non_negative_int,
            DEFAULT_EXPIRY_WARNING_DAYS,
            "warn in the log once a day from this many days before the serving register's answers expire "
            "(its date + 2 months; then register-dependent checks fail and Lookup's health is NOT_SERVING)"),
    _Option("--block-mobile-without-relationship", "NIXLOOKUP_BLOCK_MOBILE_WITHOUT_RELATIONSHIP", _boolean,
            False, "apply the Swedma/Kontakta ethics rule as a block (MOBILE_WITHOUT_RELATIONSHIP) "
            "instead of only flagging mobile numbers without a relationship or consent"),
)  # fmt: skip

_SECURITY_OPTIONS = (
    _Option("--auth-file", "NIXLOOKUP_AUTH_FILE", Path, None,
            "TOML file of principals (bearer token digests, mTLS subjects, callers, roles); with it every "
            "call but health needs a known principal; re-read on SIGHUP (docs/security.md)"),
    _Option("--tls-cert", "NIXLOOKUP_TLS_CERT", Path, None,
            "PEM certificate chain: TLS on every listener (with --tls-key); re-read when it changes"),
    _Option("--tls-key", "NIXLOOKUP_TLS_KEY", Path, None, "PEM private key of --tls-cert"),
    _Option("--tls-client-ca", "NIXLOOKUP_TLS_CLIENT_CA", Path, None,
            "PEM CA certificate(s): require client certificates signed by it (mTLS)"),
    _Option("--admin-listen", "NIXLOOKUP_ADMIN_LISTEN", _listen_address, None,
            "serve nixlookup.v1.Admin on its own listener HOST:PORT (none: on --listen only when that is "
            "loopback, else not at all)"),
    _Option("--health-listen", "NIXLOOKUP_HEALTH_LISTEN", _listen_address, None,
            "also serve grpc.health.v1 alone, in plaintext, on HOST:PORT, for probes that cannot speak TLS "
            "(Kubernetes' gRPC probes); health needs no principal, so no auth file is needed there"),
    _Option("--insecure", "NIXLOOKUP_INSECURE", _boolean, False,
            "start even beyond loopback without --auth-file, or with tokens but no TLS (warned at every "
            "start)"),
    _Option("--max-upload-bytes", "NIXLOOKUP_MAX_UPLOAD_BYTES", _positive_int, DEFAULT_MAX_UPLOAD_BYTES,
            "largest file Admin/Upload accepts; larger ones get RESOURCE_EXHAUSTED"),
)  # fmt: skip

_LOGGING_OPTIONS = (
    _Option("--log-level", "NIXLOOKUP_LOG_LEVEL", str.lower, "info",
            "debug (one event per RPC), info (batch summaries, reloads, lifecycle), warning, error",
            choices=("debug", "info", "warning", "error")),
    _Option("--log-format", "NIXLOOKUP_LOG_FORMAT", str.lower, "auto",
            "json, console, or auto (json unless stderr is a terminal)", choices=LOG_FORMATS),
)  # fmt: skip


def flag_and_variable(dest: str) -> tuple[str, str]:
    """The flag and the environment variable of the ``serve`` setting `dest` (``max_batch`` ->
    ``("--max-batch", "NIXLOOKUP_MAX_BATCH")``)."""
    for option in _SERVE_OPTIONS:
        if (option.dest or option.flag.lstrip("-").replace("-", "_")) == dest:
            return option.flag, option.var
    raise KeyError(dest)


def setting_name(dest: str) -> str:
    """How an operator changes the ``serve`` setting `dest`: ``--max-batch, env NIXLOOKUP_MAX_BATCH``
    (quoted in the errors a client gets when it hits that limit)."""
    flag, variable = flag_and_variable(dest)
    return f"{flag}, env {variable}"


def config_error(message: str) -> NoReturn:
    """Stop with one line on stderr and `EXIT_CONFIG_ERROR` (no traceback, no log noise)."""
    sys.stderr.write(f"nixlookup-server: {message}\n")
    raise SystemExit(EXIT_CONFIG_ERROR)


def package_version() -> str:
    """The installed nixlookup version (``--version``, GetRegisterInfo's ``server_version``)."""
    try:
        return metadata.version("nixlookup")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The ``nixlookup-server`` argument parser, with defaults taken from `env` (``os.environ``)."""
    environ = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="nixlookup-server",
        description="gRPC lookup server for the Swedish NIX-Telefon do-not-call register.",
    )
    parser.add_argument("--version", action="version", version=f"nixlookup-server {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the Lookup service (and Admin, health, reflection)")
    for option in (*_SERVE_OPTIONS, *_SECURITY_OPTIONS, *_LOGGING_OPTIONS):
        option.add_to(serve, environ)

    synth = commands.add_parser("synth", help="write a seeded synthetic register file")
    synth.add_argument("--size", type=_positive_int, required=True, help="numbers in the register")
    synth.add_argument("--seed", type=int, default=None, help="random seed [default: the built-in seed]")
    synth.add_argument("--out", type=Path, required=True, help="file to write")
    synth.add_argument(
        "--format",
        choices=get_args(SyntheticFileFormat),
        default="text",
        help="text: one +46... number per line; snapshot: the server's snapshot format [default text]",
    )
    for option in _LOGGING_OPTIONS:
        option.add_to(synth, environ)

    repair = commands.add_parser(
        "repair",
        help="report (and with --yes repair) damage in a data directory that the server refuses to start on",
        description="Finds, in every list of DATA_DIR, the longest history its files still prove, says what "
        "a repair keeps and what it would lose, and with --yes moves every file it replaces into the list's "
        "quarantine/ folder and commits the kept version. Stop the server first (the repair takes the "
        "directory's lock). Exit status: 0 nothing to repair or repaired, 1 damage found and not repaired "
        "(no --yes), 2 the directory cannot be read or is in use.",
    )
    repair.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="the data directory (--data-dir)")
    repair.add_argument("--yes", action="store_true", help="carry the repair out (default: only report)")
    for option in _LOGGING_OPTIONS:
        option.add_to(repair, environ)
    return parser


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> ServerConfig | SynthConfig | RepairConfig:
    """Parse ``nixlookup-server`` arguments (``sys.argv[1:]`` when `argv` is None)."""
    parser = build_parser(env)
    namespace = parser.parse_args(argv)
    values = vars(namespace)
    command = values.pop("command")
    if command == "synth":
        return SynthConfig(**values)
    if command == "repair":
        return RepairConfig(**values)
    config = ServerConfig(**values)
    if (config.tls_cert is None) != (config.tls_key is None):
        parser.error("--tls-cert and --tls-key go together (NIXLOOKUP_TLS_CERT, NIXLOOKUP_TLS_KEY)")
    if config.processes > 1 and config.follow is not None:
        parser.error("--processes N runs a writer and N followers of it on this machine; drop --follow")
    if config.processes > 1 and config.http_listen is not None:
        parser.error("--processes N does not serve --http-listen (one HTTP port per process); run without it")
    if (config.follow_cert is None) != (config.follow_key is None):
        parser.error(
            "--follow-cert and --follow-key go together (NIXLOOKUP_FOLLOW_CERT, NIXLOOKUP_FOLLOW_KEY)"
        )
    following = (config.follow_token_file, config.follow_ca, config.follow_cert, config.follow_tls or None)
    if config.follow is None and any(value is not None for value in following):
        parser.error(
            "--follow-token-file, --follow-ca, --follow-cert, --follow-tls are for a follower: set --follow"
        )
    if config.tls_client_ca is not None and config.tls_cert is None:
        parser.error("--tls-client-ca (mTLS) needs TLS: set --tls-cert and --tls-key as well")
    return config
