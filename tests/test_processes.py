"""`--processes 2` for real: two serving processes on one port, a writer behind them, one supervisor.

The servers' debug log (every event carries ``process``) says which process answered each call, and the
supervisor's ``process_started`` events give each child's pid.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from conftest import RegisterFile, ServerFactory, make_mobile_keys

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_SECONDS = 30.0


def _events(server: ServerProcess, name: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in server.log_text().splitlines()
        if line.startswith("{") and f'"{name}"' in line and json.loads(line)["event"] == name
    ]


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _SECONDS
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


def _checked_by(server: ServerProcess) -> Counter[str]:
    """Which process answered how many Check calls."""
    return Counter(
        event["process"] for event in _events(server, "rpc") if event["method"].endswith("Lookup/Check")
    )


def _check_on_new_connections(server: ServerProcess, key: int, count: int, **fields: Any) -> set[int]:
    """`count` Checks, each on a connection of its own (the kernel picks a process per connection)."""
    verdicts = set()
    for _ in range(count):
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(server.target, options=options) as channel:
            reply = lookup_pb2_grpc.LookupStub(channel).Check(
                lookup_pb2.CheckRequest(e164=key, **fields), timeout=10
            )
        verdicts.add(reply.verdict)
    return verdicts


def _child_pids(server: ServerProcess) -> dict[str, int]:
    """The current pid of each child, from the supervisor's log."""
    return {event["child"]: event["pid"] for event in _events(server, "process_started")}


def _ready(server: ServerProcess, label: str) -> int:
    return sum(event["process"] == label for event in _events(server, "follower_ready"))


def test_two_processes_share_the_port_follow_the_writer_are_restarted_and_stop_together(
    server_factory: ServerFactory, small_register: RegisterFile, tmp_path: Path
) -> None:
    """Both serving processes answer Check on the one port; a delta on the writer (Admin on
    --admin-listen) reaches both; a child killed with SIGKILL is restarted and serves again; SIGTERM to
    the supervisor stops every process and it exits 0."""
    server = server_factory(
        [
            "--processes", "2",
            "--data-dir", str(tmp_path / "data"),
            "--register", str(small_register.path),
            "--admin-listen", "127.0.0.1:0",
            "--log-level", "debug",
            "--log-format", "json",
        ]
    )  # fmt: skip
    _wait_for(lambda: _ready(server, "0") >= 1 and _ready(server, "1") >= 1)
    pids = _child_pids(server)
    assert set(pids) == {"writer", "0", "1"}
    assert len(set(pids.values())) == 3
    assert server.pid not in pids.values()

    member = int(small_register.keys[0])
    _wait_for(lambda: bool(_check_on_new_connections(server, member, 4)) and len(_checked_by(server)) == 2)
    assert set(_checked_by(server)) == {"0", "1"}  # never the writer: it serves no Lookup

    key = int(make_mobile_keys(1, seed=1404)[0])
    with grpc.insecure_channel(server.admin_target) as channel:
        reply = lookup_pb2_grpc.AdminStub(channel).ApplyDelta(
            lookup_pb2.ApplyDeltaRequest(add_e164_le=np.array([key], "<u8").tobytes()), timeout=30
        )
    position = lookup_pb2.ListPosition(list=lookup_pb2.ListRef(), version=reply.version)
    before = _checked_by(server)
    fresh = {"min_version": [position]}
    _wait_for(
        lambda: (
            _check_on_new_connections(server, key, 4, **fresh) == {lookup_pb2.BLOCKED}
            and all(_checked_by(server)[label] > before[label] for label in ("0", "1"))
        )
    )

    os.kill(pids["0"], signal.SIGKILL)
    _wait_for(lambda: _child_pids(server)["0"] != pids["0"] and _ready(server, "0") >= 2)
    (died,) = _events(server, "process_died")
    assert died["child"] == "0"
    assert died["how"] == "signal SIGKILL"
    assert _check_on_new_connections(server, key, 6, **fresh) == {lookup_pb2.BLOCKED}

    children = _child_pids(server).values()
    assert server.stop(signal.SIGTERM) == 0
    for pid in children:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"child {pid} outlived the supervisor")
    stopped = {event["child"] for event in _events(server, "process_stopped")}
    assert stopped == {"writer", "0", "1"}
