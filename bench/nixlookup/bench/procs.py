"""Start and stop the server processes a benchmark uses, always by pid, whatever happens.

Theory of operation:
- Every process the harness starts goes through `start_process`, which records it in one registry keyed
  by pid. It runs in its own session (`start_new_session=True`), so a Ctrl-C in the terminal reaches only
  the harness, and the harness decides how each child stops.
- `ManagedProcess.stop` sends SIGTERM to that pid, waits a grace period, then SIGKILL; it reaps the child
  and removes it from the registry. Nothing is ever stopped by name.
- `stop_all` stops whatever is still registered. It runs from `atexit`, and `install_signal_handlers`
  turns SIGTERM/SIGHUP into `SystemExit` (SIGINT already raises `KeyboardInterrupt`), so `finally`
  blocks and `atexit` run on Ctrl-C, on a kill of the harness, and on any failure.
- Readers of a live process (`cpu_seconds`, `rss_bytes`) use /proc directly: psutil is not a dependency.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

__all__ = [
    "ManagedProcess",
    "ProcessStartError",
    "cpu_seconds",
    "free_port",
    "install_signal_handlers",
    "live_pids",
    "managed_process",
    "rss_bytes",
    "start_process",
    "stop_all",
    "wait_for_port",
    "wait_for_port_file",
]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ProcessStartError(RuntimeError):
    """A child process died or never became ready; the message carries the tail of its log."""


@dataclass(eq=False)
class ManagedProcess:
    """One child process the harness owns."""

    name: str
    argv: tuple[str, ...]
    popen: subprocess.Popen[bytes]
    log_path: Path | None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of the child's combined stdout/stderr, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()[-max_bytes:]
        return data.decode("utf-8", errors="replace")

    def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM this pid, SIGKILL it after `grace_s`, reap it; returns its exit code."""
        try:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                    self.popen.wait(timeout=10.0)
            return self.popen.returncode
        finally:
            _unregister(self)
            if self._log_file is not None:
                self._log_file.close()


_registry: dict[int, ManagedProcess] = {}
_registry_lock = threading.Lock()


def _register(process: ManagedProcess) -> None:
    with _registry_lock:
        _registry[process.pid] = process


def _unregister(process: ManagedProcess) -> None:
    with _registry_lock:
        _registry.pop(process.pid, None)


def live_pids() -> list[int]:
    """Pids of the processes the harness started and has not stopped yet."""
    with _registry_lock:
        return sorted(_registry)


def start_process(
    argv: Sequence[str],
    *,
    name: str,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start `argv` in its own session, output to `log_path` (or discarded), and register it."""
    log_file: IO[bytes] | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("wb")
    popen = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log_file if log_file is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    process = ManagedProcess(name=name, argv=tuple(argv), popen=popen, log_path=log_path, _log_file=log_file)
    _register(process)
    return process


@contextlib.contextmanager
def managed_process(
    argv: Sequence[str],
    *,
    name: str,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    grace_s: float = 5.0,
) -> Iterator[ManagedProcess]:
    """`start_process` that stops the process by pid when the block ends, however it ends."""
    process = start_process(argv, name=name, log_path=log_path, env=env)
    try:
        yield process
    finally:
        process.stop(grace_s)


def stop_all(grace_s: float = 3.0) -> list[int]:
    """Stop every registered process by pid; returns the pids stopped."""
    with _registry_lock:
        processes = list(_registry.values())
    for process in processes:
        process.stop(grace_s)
    return [process.pid for process in processes]


atexit.register(stop_all)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """Make SIGTERM and SIGHUP unwind the harness like Ctrl-C does, so children get stopped.

    Only the main thread may install handlers; the CLI calls this once at start.
    """
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (it may be taken before it is used: only
    for servers that cannot bind port 0 and report it, i.e. redis-server, whose pid is then checked)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port_file(
    popen: subprocess.Popen[bytes], path: Path, *, timeout_s: float, describe: Callable[[str], Exception]
) -> int:
    """The port a server started with ``--listen 127.0.0.1:0 --port-file PATH`` bound, once it wrote it.

    Port 0 lets the kernel pick a free port, so no two runs can race for one (a port picked by a probe
    socket and passed on can be taken by someone else before the server binds it). `describe` turns a
    failure ("exited with code 1 before listening") into the exception to raise, with the log tail.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise describe(f"exited with code {popen.returncode} before listening")
        with contextlib.suppress(FileNotFoundError, ValueError):
            lines = path.read_text(encoding="ascii").splitlines()
            if lines:  # the port first; more lines may follow (``admin PORT``)
                return int(lines[0])
        time.sleep(0.05)
    raise describe(f"did not report its port within {timeout_s:.0f} s")


def wait_for_port(process: ManagedProcess, port: int, *, timeout_s: float, host: str = "127.0.0.1") -> None:
    """Wait until `host:port` accepts connections; raise if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.alive():
            raise ProcessStartError(
                f"{process.name} (pid {process.pid}) exited with {process.popen.returncode} before "
                f"listening on {host}:{port}:\n{process.log_tail()}"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise ProcessStartError(
        f"{process.name} (pid {process.pid}) not listening on {host}:{port} after {timeout_s:.0f} s:\n"
        f"{process.log_tail()}"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (all threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / _CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of the process now, from /proc/<pid>/statm."""
    resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return resident_pages * _PAGE_SIZE
