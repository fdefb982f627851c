"""The harness stops every process it starts, by pid: normally, on failure, on SIGTERM of the harness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixlookup.bench.procs import (
    ProcessStartError,
    cpu_seconds,
    free_port,
    live_pids,
    managed_process,
    rss_bytes,
    start_process,
    stop_all,
    wait_for_port,
)

_SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
_TERM_IGNORER = [
    sys.executable,
    "-c",
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
    "time.sleep(60)",
]


def _gone(pid: int) -> bool:
    """True when no process with this pid exists (it was reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stop_kills_by_pid_and_unregisters() -> None:
    """stop() ends the process with SIGTERM, reaps it and removes it from the registry."""
    process = start_process(_SLEEPER, name="sleeper")
    assert process.pid in live_pids()
    assert process.stop(grace_s=5) == -signal.SIGTERM
    assert _gone(process.pid)
    assert process.pid not in live_pids()


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    """A child that ignores SIGTERM is killed with SIGKILL after the grace period."""
    log = tmp_path / "ignorer.log"
    process = start_process(_TERM_IGNORER, name="ignorer", log_path=log)
    deadline = time.monotonic() + 10
    while "ready" not in process.log_tail() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.stop(grace_s=0.3) == -signal.SIGKILL
    assert _gone(process.pid)


def test_managed_process_stops_on_failure() -> None:
    """An exception inside the block still stops the child."""
    pids: list[int] = []

    def failing_benchmark() -> None:
        with managed_process(_SLEEPER, name="sleeper") as process:
            pids.append(process.pid)
            raise RuntimeError("benchmark failed")

    with pytest.raises(RuntimeError):
        failing_benchmark()
    (pid,) = pids
    assert _gone(pid)
    assert pid not in live_pids()


def test_stop_all_stops_every_registered_process() -> None:
    """stop_all (what atexit and the CLI run) stops everything still registered."""
    pids = [start_process(_SLEEPER, name=f"sleeper-{i}").pid for i in range(3)]
    stopped = stop_all(grace_s=5)
    assert sorted(pids) == sorted(p for p in stopped if p in pids)
    assert all(_gone(pid) for pid in pids)


def test_sigterm_to_the_harness_stops_its_children(tmp_path: Path) -> None:
    """A harness killed with SIGTERM (or Ctrl-C) stops the servers it started before exiting."""
    pid_file = tmp_path / "child.pid"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from nixlookup.bench.procs import install_signal_handlers, start_process\n"
        "install_signal_handlers()\n"
        f"child = start_process({_SLEEPER!r}, name='sleeper')\n"
        f"Path({str(pid_file)!r}).write_text(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    harness = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())
        assert not _gone(child_pid)
        harness.send_signal(signal.SIGTERM)
        assert harness.wait(timeout=20) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while not _gone(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child_pid)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()


def test_wait_for_port_reports_a_dead_process(tmp_path: Path) -> None:
    """A child that exits before listening is reported with its log, not waited on until the timeout."""
    argv = [sys.executable, "-c", "import sys; print('cannot bind'); sys.exit(3)"]
    with (
        managed_process(argv, name="doomed", log_path=tmp_path / "doomed.log") as process,
        pytest.raises(ProcessStartError, match="cannot bind"),
    ):
        wait_for_port(process, free_port(), timeout_s=20)


def test_proc_readers_see_a_live_process() -> None:
    """CPU seconds and RSS come from /proc for any pid (psutil is not needed)."""
    assert cpu_seconds(os.getpid()) > 0
    assert rss_bytes(os.getpid()) > 1_000_000
