"""The server's configuration: command-line flags, each with an environment variable beside it.

A flag wins over its variable, the variable over the default. Every option is explained where it is
defined (the ``help`` text is what ``nixlookup-server serve --help`` prints and what docs/service.md
lists). `parse_args` returns a frozen `ServerConfig` (for ``serve``), `SynthConfig` (for ``synth``) or
`RepairConfig` (for ``repair``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

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
    "RepairConfig",
    "ServerConfig",
    "SynthConfig",
    "build_parser",
    "parse_args",
]

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
DEFAULT_WORKERS = 8
"""Threads answering RPCs. A running stream occupies one thread for its whole life, so this also bounds
concurrent streams; unary Checks are short and share the rest."""
DEFAULT_MAX_CONCURRENT_RPCS = 256
"""Beyond this many calls in progress (running + queued for a thread), new calls get RESOURCE_EXHAUSTED
immediately instead of queueing without bound."""
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
    synthetic_size: int | None = None
    synthetic_seed: int | None = None
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
    insecure: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    metrics_listen: str | None = None
    follow: str | None = None
    max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS
    min_version_wait_seconds: float = DEFAULT_MIN_VERSION_WAIT_SECONDS


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
        raise SystemExit(f"nixlookup-server: {name}={raw!r} is invalid: {error}") from None


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
            raise SystemExit(
                f"nixlookup-server: {self.var}={value!r} is not one of {', '.join(self.choices)}"
            )
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
    _Option("--data-dir", "NIXLOOKUP_DATA_DIR", Path, None,
            "data directory holding the register's and callers' lists, snapshots and journal"),
    _Option("--grace", "NIXLOOKUP_GRACE", _non_negative_float, DEFAULT_GRACE_SECONDS,
            "seconds in-flight calls get to finish after SIGTERM/SIGINT", dest="grace_seconds"),
    _Option("--max-batch", "NIXLOOKUP_MAX_BATCH", _positive_int, DEFAULT_MAX_BATCH,
            "most numbers in one CheckBatch; larger batches get INVALID_ARGUMENT"),
    _Option("--max-message-bytes", "NIXLOOKUP_MAX_MESSAGE_BYTES", _positive_int, DEFAULT_MAX_MESSAGE_BYTES,
            "largest request message in bytes; larger ones get RESOURCE_EXHAUSTED"),
    _Option("--workers", "NIXLOOKUP_WORKERS", _positive_int, DEFAULT_WORKERS,
            "threads answering RPCs (each running stream holds one)"),
    _Option("--max-concurrent-rpcs", "NIXLOOKUP_MAX_CONCURRENT_RPCS", _positive_int,
            DEFAULT_MAX_CONCURRENT_RPCS, "calls in progress beyond which new calls get RESOURCE_EXHAUSTED"),
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
    _Option("--follow", "NIXLOOKUP_FOLLOW", str, None,
            "run as a read-only follower of the writer at this address (HOST:PORT): serve Lookup from the "
            "writer's replicated lists, refuse Admin writes; no data directory is used"),
    _Option("--max-lag", "NIXLOOKUP_MAX_LAG", _non_negative_float, DEFAULT_MAX_LAG_SECONDS,
            "with --follow: report NOT_SERVING while further behind the writer than this (seconds)",
            dest="max_lag_seconds"),
    _Option("--min-version-wait", "NIXLOOKUP_MIN_VERSION_WAIT", _non_negative_float,
            DEFAULT_MIN_VERSION_WAIT_SECONDS,
            "seconds a call naming a min_version not yet served waits for it (within its deadline) "
            "before FAILED_PRECONDITION", dest="min_version_wait_seconds"),
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


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The ``nixlookup-server`` argument parser, with defaults taken from `env` (``os.environ``)."""
    environ = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="nixlookup-server",
        description="gRPC lookup server for the Swedish NIX-Telefon do-not-call register.",
    )
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
    if config.tls_client_ca is not None and config.tls_cert is None:
        parser.error("--tls-client-ca (mTLS) needs TLS: set --tls-cert and --tls-key as well")
    return config
