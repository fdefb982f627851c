"""`--processes N`: every core busy on one machine, one writer process and N serving processes on one port.

Theory of operation:
- The supervisor (the process started as ``nixlookup-server serve --processes N``) never creates a grpc
  object: it reserves the --listen port, makes a private directory (mode 0700) for the writer's
  replication socket, and forks its children, so each one builds its own grpc core from nothing (grpc does
  not survive a fork of a process that has started it). It forks a restart the same way.
- The writer child opens the data directory, serves Admin on --admin-listen and Replication (and health)
  on ``unix:<private dir>/replication.sock``, anonymous (only this user can reach the directory), and no
  Lookup. Each serving child ``0 .. N-1`` is a follower of that socket (`--follow`) serving Lookup on the
  shared --listen port (and --health-listen) with ``grpc.so_reuseport`` 1: the kernel spreads new
  connections over them. With --metrics-listen PORT the writer serves metrics on PORT, child i on
  PORT+1+i (port 0: each its own free port). Every log event carries ``process`` (``supervisor``,
  ``writer``, ``0`` ...).
- The port is reserved by a socket the supervisor binds with SO_REUSEPORT and never listens on (the
  kernel hands connections only to listening sockets), held until the end: with ``--listen HOST:0`` the
  children share the port it got, and a restarted child binds it again.
- Health is per process: each serving child answers health on the shared port (so a probe hears one
  process: NOT_SERVING until its first snapshot and while behind --max-lag), the writer on its own.
- Supervision: SIGTERM/SIGINT are forwarded to every child (each stops gracefully within --grace) and
  the supervisor exits once all have exited (0 when they all exited 0); SIGHUP is forwarded too. A child
  that exits while not asked to is restarted after a backoff (0.5 s doubling to 10 s; reset once it has
  run 30 s), except one that failed to start at all (exit 1 or 2 before it listened: a configuration or
  data problem a restart will not fix), which stops everything with its exit code.
- The serving children are started once the writer listens (it may take a while to load a large
  register), so their first stream to it finds it.
- The port file (``--port-file``) is written once the writer and every serving child listen: the shared
  port, and ``admin PORT`` when the writer has an Admin listener.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from nixlookup.server.app._assembly import ProcessRole
from nixlookup.server.app._config import EXIT_CONFIG_ERROR, EXIT_START_FAILED, ServerConfig, config_error
from nixlookup.server.app._exposure import host_of
from nixlookup.server.app._main import serve
from nixlookup.server.logs import get_logger, set_process_label

__all__ = ["RESTART_BACKOFF_MAX_SECONDS", "supervise"]

_log = get_logger("nixlookup.processes")

RESTART_BACKOFF_INITIAL_SECONDS = 0.5
"""First pause before restarting a child that died; doubled for each death in a row..."""
RESTART_BACKOFF_MAX_SECONDS = 10.0
"""...up to this, so a child that dies at once is not restarted in a tight loop."""
HEALTHY_RUN_SECONDS = 30.0
"""A child that ran this long before dying starts the backoff afresh."""
_POLL_SECONDS = 0.05
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class _Child:
    """One slot of the supervisor: the writer or serving process `label`, and its current pid."""

    label: str
    config: ServerConfig
    role: ProcessRole
    pid: int = 0
    started: float = 0.0
    deaths: int = 0
    restart_at: float | None = None

    @property
    def port_file(self) -> Path:
        assert self.config.port_file is not None
        return self.config.port_file

    @property
    def listened(self) -> bool:
        return self.port_file.exists()


def _reserve_port(listen: str) -> tuple[socket.socket, int]:
    """Bind (not listen) a SO_REUSEPORT socket on --listen: the children share its port."""
    host, _, port = listen.rpartition(":")
    try:
        family, kind, protocol, _name, address = socket.getaddrinfo(
            host.strip("[]"), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        reserved = socket.socket(family, kind, protocol)
    except OSError as error:
        config_error(f"cannot listen on {listen}: {error.strerror or error}; choose another with --listen")
    try:
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserved.bind(address)
    except OSError as error:
        reserved.close()
        reason = (error.strerror or str(error)).lower()
        config_error(f"cannot listen on {listen}: {reason}; choose another with --listen")
    return reserved, int(reserved.getsockname()[1])


def _metrics_for(config: ServerConfig, offset: int) -> str | None:
    if config.metrics_listen is None:
        return None
    host, _, port = config.metrics_listen.rpartition(":")
    return f"{host}:{int(port) + offset}" if int(port) else config.metrics_listen


def _children(config: ServerConfig, port: int, private: Path) -> list[_Child]:
    replication = f"unix:{private / 'replication.sock'}"
    host = host_of(config.listen)
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    writer_config = replace(config, processes=1, port_file=private / "writer.port", health_listen=None)
    slots = [_Child("writer", writer_config, ProcessRole("writer", replication_listen=replication))]
    for index in range(config.processes):
        child_config = replace(
            config,
            processes=1,
            listen=listen,
            follow=replication,
            data_dir=None,
            register=None,
            watch_seconds=0.0,
            admin_listen=None,
            port_file=private / f"process-{index}.port",
            metrics_listen=_metrics_for(config, 1 + index),
        )
        slots.append(_Child(str(index), child_config, ProcessRole(str(index), reuse_port=True)))
    return slots


def _run_child(child: _Child, reserved: socket.socket) -> None:
    """In the forked child: serve as `child`, then leave without running the supervisor's cleanup."""
    code = EXIT_START_FAILED
    try:
        reserved.close()
        for signum in _FORWARDED:
            signal.signal(signum, signal.SIG_DFL)  # until serve() installs its own
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        set_process_label(child.label)
        code = serve(child.config, child.role)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else EXIT_START_FAILED
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class _Supervisor:
    def __init__(self, config: ServerConfig, reserved: socket.socket, port: int, private: Path) -> None:
        self.config = config
        self.reserved = reserved
        self.port = port
        self.slots = _children(config, port, private)
        self.stopping = False
        self.exit_code = 0
        self.port_file_written = False

    # -- signals ------------------------------------------------------------------------------------------
    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGHUP:
            self.stopping = True
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signum)

    # -- children -----------------------------------------------------------------------------------------
    def start(self, slot: _Child) -> None:
        slot.port_file.unlink(missing_ok=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)  # no supervisor handler runs in the child
        try:
            pid = os.fork()
            if pid == 0:
                _run_child(slot, self.reserved)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        slot.pid, slot.started, slot.restart_at = pid, time.monotonic(), None
        _log.info("process_started", child=slot.label, pid=pid)

    def reaped(self, slot: _Child, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        listened = slot.listened
        slot.pid = 0
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if self.stopping:
            _log.info("process_stopped", child=slot.label, how=how)
            if code != 0:
                self.exit_code = EXIT_START_FAILED
            return
        if not listened and code in (EXIT_START_FAILED, EXIT_CONFIG_ERROR):
            _log.error("process_failed_to_start", child=slot.label, how=how, action="stopping every process")
            self.exit_code = code
            self.on_signal(signal.SIGTERM, None)
            return
        ran = time.monotonic() - slot.started
        slot.deaths = 1 if ran >= HEALTHY_RUN_SECONDS else slot.deaths + 1
        delay = min(RESTART_BACKOFF_MAX_SECONDS, RESTART_BACKOFF_INITIAL_SECONDS * 2 ** (slot.deaths - 1))
        slot.restart_at = time.monotonic() + delay
        _log.warning("process_died", child=slot.label, how=how, ran_seconds=round(ran, 1), restart_in=delay)

    def write_port_file(self) -> None:
        if self.port_file_written or self.config.port_file is None:
            return
        if not all(slot.pid and slot.listened for slot in self.slots):
            return
        text = f"{self.port}\n"
        for line in self.slots[0].port_file.read_text(encoding="ascii").splitlines()[1:]:
            if line.startswith("admin "):
                text += line + "\n"
        temporary = self.config.port_file.with_name(self.config.port_file.name + ".tmp")
        temporary.write_text(text, encoding="ascii")
        os.replace(temporary, self.config.port_file)
        self.port_file_written = True
        _log.info(
            "processes_serving",
            listen=f"{host_of(self.config.listen)}:{self.port}",
            serving=len(self.slots) - 1,
        )

    def run(self) -> int:
        writer, serving = self.slots[0], self.slots[1:]
        self.start(writer)
        waiting_for_writer = True  # the serving processes start once the writer listens
        while any(slot.pid for slot in self.slots) or (
            not self.stopping and any(slot.restart_at is not None for slot in self.slots)
        ):
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid, status = 0, 0
            if pid:
                dead = next((each for each in self.slots if each.pid == pid), None)
                if dead is not None:
                    self.reaped(dead, status)
                continue
            if waiting_for_writer and writer.pid and writer.listened and not self.stopping:
                waiting_for_writer = False
                for slot in serving:
                    self.start(slot)
            now = time.monotonic()
            for slot in self.slots:
                if not self.stopping and slot.restart_at is not None and now >= slot.restart_at:
                    self.start(slot)
            self.write_port_file()
            time.sleep(_POLL_SECONDS)
        return self.exit_code


def supervise(config: ServerConfig) -> int:
    """Run `config.processes` serving processes and their writer until SIGTERM/SIGINT (module doc)."""
    set_process_label("supervisor")
    reserved, port = _reserve_port(config.listen)
    private = Path(tempfile.mkdtemp(prefix="nixlookup-processes-"))  # mode 0700: this user's alone
    supervisor = _Supervisor(config, reserved, port, private)
    for signum in _FORWARDED:
        signal.signal(signum, supervisor.on_signal)
    _log.info("supervising", processes=config.processes, listen=f"{host_of(config.listen)}:{port}")
    try:
        return supervisor.run()
    finally:
        reserved.close()
        shutil.rmtree(private, ignore_errors=True)
