"""The gRPC servers a benchmark runs: the real `nixlookup-server` and the bare grpcio reference.

Both are separate processes on a free 127.0.0.1 port, started through `procs` (so they are stopped by pid
whatever happens), and a server counts as up only once the standard health service answers SERVING. The
time from start to SERVING is kept: it is the server's load time as an operator sees it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nixlookup.bench.grpcload import wait_until_serving
from nixlookup.bench.procs import ManagedProcess, free_port, managed_process, wait_for_port

__all__ = ["RunningServer", "nixlookup_server", "reference_server"]

_START_TIMEOUT_S = 120.0  # a 30M-number register takes a while to parse on a loaded 2-core machine


@dataclass(frozen=True)
class RunningServer:
    name: str
    target: str
    process: ManagedProcess
    ready_s: float  # seconds from process start to health SERVING

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def _serving(argv: Sequence[str], *, name: str, port: int, log_path: Path) -> Iterator[RunningServer]:
    started = time.perf_counter()
    with managed_process(argv, name=name, log_path=log_path, grace_s=10.0) as process:
        wait_for_port(process, port, timeout_s=_START_TIMEOUT_S)
        target = f"127.0.0.1:{port}"
        wait_until_serving(target, timeout_s=_START_TIMEOUT_S)
        yield RunningServer(name=name, target=target, process=process, ready_s=time.perf_counter() - started)


@contextlib.contextmanager
def nixlookup_server(
    register_path: Path, workdir: Path, *, extra_args: Sequence[str] = ()
) -> Iterator[RunningServer]:
    """`nixlookup-server serve` on a free loopback port, serving `register_path`, data dir under `workdir`."""
    port = free_port()
    data_dir = workdir / "nixlookup-data"
    argv = [
        sys.executable, "-m", "nixlookup.server.app", "serve",
        "--listen", f"127.0.0.1:{port}",
        "--register", str(register_path),
        "--data-dir", str(data_dir),
        "--log-level", "warning",   # one line per batch at info would cost time on the measured path
        "--log-format", "json",
        "--grace", "2",
        *extra_args,
    ]  # fmt: skip
    with _serving(
        argv, name="nixlookup-server", port=port, log_path=workdir / "nixlookup-server.log"
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
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "nixlookup.bench.refserver",
        "--listen",
        f"127.0.0.1:{port}",
        "--keys",
        str(keys_path),
        "--mode",
        mode,
    ]
    with _serving(
        argv, name="reference-server", port=port, log_path=workdir / "reference-server.log"
    ) as server:
        yield server
