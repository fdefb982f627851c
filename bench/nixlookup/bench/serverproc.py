"""Start the real `nixlookup-server` as a separate process on a free loopback port: the one harness the
tests (`tests/conftest.py`) and the benchmarks (`servers`) use.

How it works:
- The server is started as ``python -m nixlookup.server.app serve --listen 127.0.0.1:0 --port-file F
  <args>``. Port 0 lets the kernel pick a free port, so two test runs can never race for one; the server
  writes the port it bound into F once it is serving, and `start()` reads it from there.
- `start()` then polls the standard health service until it answers SERVING (bounded in time), so a test
  only ever talks to a server that has its register loaded. When the process dies first, the error carries
  the tail of its log.
- The process's stderr (its structlog output) goes to a file, never a pipe, so a chatty server cannot block
  on a full pipe; `log_text()` reads it.
- Inherited ``NIXLOOKUP_*`` variables are dropped, so a developer's shell cannot change what a test runs;
  pass `env` to set them on purpose.
- `stop(sig)` signals the process by its pid and waits (bounded); `__exit__` always stops it, escalating to
  SIGKILL after the timeout, so no test leaves a server behind.

Usage::

    with ServerProcess(["--register", str(path)]) as server:
        channel = grpc.insecure_channel(server.target)
        ...
        assert server.stop(signal.SIGTERM) == 0
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nixlookup.bench.procs import ProcessStartError, wait_for_port_file

__all__ = ["ServerProcess", "ServerStartError"]

ServerStartError = ProcessStartError
"""The server process exited or did not become SERVING in time; the message carries its log tail."""

_STARTUP_TIMEOUT_SECONDS = 30.0
"""Loading a small register takes well under a second; 30 s covers a loaded CI machine."""
_STOP_TIMEOUT_SECONDS = 20.0
"""Longer than any grace period a test passes, so a clean shutdown is never mistaken for a hang."""
_POLL_SECONDS = 0.05


class ServerProcess:
    """One `nixlookup-server` process on 127.0.0.1, started on a kernel-chosen free port.

    `args` are extra arguments for the subcommand (``serve`` by default), e.g. ``["--register", path,
    "--grace", "5"]``; the helper adds ``--listen`` and ``--port-file`` itself. `env` entries are added to a
    copy of the environment with inherited ``NIXLOOKUP_*`` variables removed. A server with TLS is polled
    for health over `channel_credentials` (health needs no token).
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        *,
        command: str = "serve",
        startup_timeout: float = _STARTUP_TIMEOUT_SECONDS,
        wait_for_serving: bool = True,
        channel_credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.args = list(args)
        self.env = dict(env or {})
        self.command = command
        self.startup_timeout = startup_timeout
        self.wait_for_serving = wait_for_serving
        self._workdir = Path(tempfile.mkdtemp(prefix="nixlookup-server-"))
        self.log_path = self._workdir / "server.log"
        self._port_file = self._workdir / "port"
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._admin_port: int | None = None
        self._health_port: int | None = None
        self.channel_credentials = channel_credentials
        self.returncode: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> ServerProcess:
        """Start the process and wait until it serves (or raise `ServerStartError` with its log tail)."""
        if self._process is not None:
            raise RuntimeError("ServerProcess already started")
        argv = [
            sys.executable,
            "-m",
            "nixlookup.server.app",
            self.command,
            "--listen",
            "127.0.0.1:0",
            "--port-file",
            str(self._port_file),
            *self.args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("NIXLOOKUP_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        try:
            self._await_port()
            if self.wait_for_serving:
                self._await_serving()
        except BaseException:
            self.stop(signal.SIGKILL)
            raise
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = _STOP_TIMEOUT_SECONDS) -> int:
        """Send `sig` to the server's pid, wait for it to exit (SIGKILL after `timeout`); its exit code."""
        process = self._process
        if process is None:
            raise RuntimeError("ServerProcess not started")
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        self.returncode = process.returncode
        return process.returncode

    def signal(self, sig: int) -> None:
        """Send `sig` without waiting (e.g. SIGTERM while a stream is running); then call `wait()`."""
        self._require_process().send_signal(sig)

    def wait(self, timeout: float = _STOP_TIMEOUT_SECONDS) -> int:
        """Wait for the process to exit on its own (after `signal`), returning its exit code."""
        code = self._require_process().wait(timeout=timeout)
        self.returncode = code
        return code

    def __enter__(self) -> ServerProcess:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self.stop(signal.SIGTERM)

    # -- what a test needs -------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self._require_process().pid

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ServerProcess has no port yet (not started)")
        return self._port

    @property
    def admin_port(self) -> int:
        """The port of the separate Admin listener (``--admin-listen 127.0.0.1:0``)."""
        if self._admin_port is None:
            raise RuntimeError("ServerProcess has no admin port (no --admin-listen)")
        return self._admin_port

    @property
    def health_port(self) -> int:
        """The port of the plaintext health listener (``--health-listen 127.0.0.1:0``)."""
        if self._health_port is None:
            raise RuntimeError("ServerProcess has no health port (no --health-listen)")
        return self._health_port

    @property
    def admin_target(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT``, ready for `grpc.insecure_channel` or ``nixlookup --target``."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        """Everything the server wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def health_status(self, service: str = "", timeout: float = 2.0) -> str:
        """The health service's answer for `service` ("" = the whole server), e.g. ``"SERVING"``."""
        channel = (
            grpc.secure_channel(self.target, self.channel_credentials)
            if self.channel_credentials is not None
            else grpc.insecure_channel(self.target)
        )
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return name

    # -- internals ---------------------------------------------------------------------------------
    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("ServerProcess not started")
        return self._process

    def _fail(self, what: str) -> ServerStartError:
        tail = "\n".join(self.log_text().splitlines()[-30:])
        return ServerStartError(f"nixlookup-server {what}; last log lines:\n{tail}")

    def _await_port(self) -> None:
        self._port = wait_for_port_file(
            self._require_process(), self._port_file, timeout_s=self.startup_timeout, describe=self._fail
        )
        for line in self._port_file.read_text(encoding="ascii").splitlines()[1:]:
            name, _, value = line.partition(" ")
            if name == "admin":  # ``admin PORT``: the separate Admin listener (--admin-listen)
                self._admin_port = int(value)
            elif name == "health":  # ``health PORT``: the plaintext health listener (--health-listen)
                self._health_port = int(value)

    def _await_serving(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        process = self._require_process()
        last_status = "no answer"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise self._fail(f"exited with code {process.returncode} before SERVING")
            try:
                last_status = self.health_status(timeout=1.0)
            except grpc.RpcError as error:
                last_status = f"{error.code().name}"
            if last_status == "SERVING":
                return
            time.sleep(_POLL_SECONDS)
        raise self._fail(f"was not SERVING within {self.startup_timeout:.0f} s (last: {last_status})")
