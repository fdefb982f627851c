"""The gRPC servers a benchmark runs: the real `nixlookup-server` and the bare grpcio reference.

Both are separate processes on 127.0.0.1, started through `procs` (so they are stopped by pid whatever
happens) with ``--listen 127.0.0.1:0 --port-file F`` (the kernel picks the port, nothing can race for
it), and a server counts as up only once the standard health service answers SERVING. The
time from start to SERVING is kept: it is the server's load time as an operator sees it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nixlookup.bench.grpcload import wait_until_serving
from nixlookup.bench.procs import ManagedProcess, ProcessStartError, managed_process, wait_for_port_file
from nixlookup.client.security import ChannelSecurity

__all__ = ["RunningServer", "nixlookup_server", "reference_server", "secured_nixlookup_server"]

_START_TIMEOUT_S = 120.0  # a 30M-number register takes a while to parse on a loaded 2-core machine


@dataclass(frozen=True)
class RunningServer:
    name: str
    target: str
    process: ManagedProcess
    ready_s: float  # seconds from process start to health SERVING
    security: ChannelSecurity | None = None  # TLS and token the clients use (None: plaintext, no auth)

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def _serving(
    argv: Sequence[str],
    *,
    name: str,
    workdir: Path,
    security: ChannelSecurity | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    started = time.perf_counter()
    port_file = workdir / f"{name}.port"
    port_file.unlink(missing_ok=True)
    argv = [*argv, "--listen", "127.0.0.1:0", "--port-file", str(port_file)]
    with managed_process(argv, name=name, log_path=workdir / f"{name}.log", env=env, grace_s=10.0) as process:

        def failed(what: str) -> ProcessStartError:
            return ProcessStartError(f"{name} (pid {process.pid}) {what}:\n{process.log_tail()}")

        port = wait_for_port_file(process.popen, port_file, timeout_s=_START_TIMEOUT_S, describe=failed)
        target = f"127.0.0.1:{port}"
        wait_until_serving(target, timeout_s=_START_TIMEOUT_S, security=security)
        yield RunningServer(
            name=name,
            target=target,
            process=process,
            ready_s=time.perf_counter() - started,
            security=security,
        )


@contextlib.contextmanager
def nixlookup_server(
    register_path: Path,
    workdir: Path,
    *,
    extra_args: Sequence[str] = (),
    name: str = "nixlookup-server",
    security: ChannelSecurity | None = None,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """`nixlookup-server serve` on a free loopback port, serving `register_path`, data dir under `workdir`;
    `security` is what clients need when `extra_args` turn on TLS and an auth file; `python` is the
    interpreter whose installed nixlookup runs (another checkout's venv, for an A/B run); `env` is added to
    the server's environment (`NIXLOOKUP_BULK_PATH=numpy`: the previous bulk path, for an A/B)."""
    data_dir = workdir / f"{name}-data"
    argv = [
        python, "-m", "nixlookup.server.app", "serve",
        "--register", str(register_path),
        "--data-dir", str(data_dir),
        "--log-level", "warning",   # one line per batch at info would cost time on the measured path
        "--log-format", "json",
        "--grace", "2",
        *extra_args,
    ]  # fmt: skip
    with _serving(argv, name=name, workdir=workdir, security=security, env=env) as server:
        yield server


@contextlib.contextmanager
def secured_nixlookup_server(register_path: Path, workdir: Path) -> Iterator[RunningServer]:
    """The same server with TLS (a CA made here) and an auth file of one check principal, whose token
    the clients send: the cost of security, measured against the plaintext server in the same run."""
    import hashlib
    import secrets

    from nixlookup.bench.certs import write_pki

    pki = write_pki(workdir / "pki")
    token = secrets.token_urlsafe(32)
    auth_file = workdir / "auth.toml"
    auth_file.write_text(
        f'[[principal]]\nname = "bench"\ntoken_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
        'callers = ["*"]\nroles = ["check", "lists", "admin"]\n',
        encoding="utf-8",
    )
    security = ChannelSecurity(token=token, ca=pki.ca_cert.read_bytes())
    arguments = [
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
        "--auth-file",
        str(auth_file),
    ]
    with nixlookup_server(
        register_path, workdir, extra_args=arguments, name="nixlookup-tls", security=security
    ) as server:
        yield server


@contextlib.contextmanager
def reference_server(
    keys: NDArray[np.uint64], workdir: Path, *, mode: str = "sync"
) -> Iterator[RunningServer]:
    """The bare grpcio reference server (`nixlookup.bench.refserver`) answering from a set of `keys`;
    `mode` sync (default: nixlookup's own server model) or aio."""
    workdir.mkdir(parents=True, exist_ok=True)
    keys_path = workdir / "reference-keys.npy"
    np.save(keys_path, keys)
    argv = [
        sys.executable,
        "-m",
        "nixlookup.bench.refserver",
        "--keys",
        str(keys_path),
        "--mode",
        mode,
    ]
    with _serving(argv, name="reference-server", workdir=workdir) as server:
        yield server
