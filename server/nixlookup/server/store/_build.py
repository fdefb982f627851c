"""Build a reloaded list in a child process, so parsing millions of lines never stalls the serving threads.

Why: parsing a 1.5M-line text register and building its index takes ~0.4 s of CPU, and parts of it hold
the GIL for tens of milliseconds at a time (splitting lines, converting lists to arrays). Done in the
server process, that showed as a 10x p99 for `Check` during reloads. In a child process it costs the
server only reading the finished snapshot back (~15 ms, mostly outside the GIL), and the server's own
peak memory during a reload stays at the old index plus the new one: the parse buffers live and die in
the child.

How: children come from a multiprocessing *forkserver* that imported this module (numpy, the numbering
tables, pyroaring) once, when the first reload needed it. A fresh interpreter per reload spent ~0.2 s of CPU
on imports alone, which on a 2-core machine came straight out of the serving threads' share (text reload
of 1.5M lines: 0.95 s -> 0.7 s wall). The forkserver is a clean process (no grpc threads are ever forked)
and exits with the server.

Protocol: the child gets the request as JSON, validates and builds exactly as `build_off_to_the_side` does
in-process, writes the index as a snapshot to the requested scratch path, and sends back one dict:
``{"ok": true, "lines": N, "bad_lines": M}`` or ``{"ok": false, "error": "<class name>", "message": "..."}``.
The parent turns a refusal back into the same error class, so a caller sees the same status and message
either way. A child that overruns the timeout is killed; the scratch file is removed in every case.
``python -m nixlookup.server.store._build REQUEST_JSON`` runs the same build from a shell.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from nixlookup.server.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NixlookupError,
    RegisterFileError,
    StoreError,
    ValidationError,
)
from nixlookup.server.store._reload import BuiltVersion, ReloadRequest, build_off_to_the_side
from nixlookup.server.store._snapshot import read_snapshot, write_snapshot
from nixlookup.server.store._state import ListKey, ListKind

__all__ = ["build_in_child"]

_CONTEXT = multiprocessing.get_context("forkserver")
# The forkserver imports this module once; every build forks from it with everything already loaded.
_CONTEXT.set_forkserver_preload([__name__])

_CHILD_NICENESS = 10
"""Added to the child's nice value: a reload may take longer, callers' latency must not suffer."""

_ERRORS: dict[str, type[NixlookupError]] = {
    cls.__name__: cls
    for cls in (ValidationError, RegisterFileError, InvalidArgumentError, FailedPreconditionError, StoreError)
}
_ERRORS["SnapshotError"] = FailedPreconditionError  # its own constructor takes parts; the message is whole


def build_in_child(
    key: ListKey, request: ReloadRequest, *, max_bad_share: float, scratch_dir: Path, timeout: float
) -> BuiltVersion:
    """`build_off_to_the_side` in a child process; raises the same errors it would."""
    scratch_dir.mkdir(parents=True, exist_ok=True)
    scratch = scratch_dir / f".build-{os.getpid()}-{time.time_ns()}.snap"
    payload = {
        "kind": int(key[0]),
        "caller": key[1],
        "path": str(request.path),
        "fmt": request.fmt,
        "column": request.column,
        "until_column": request.until_column,
        "register_date": request.register_date.isoformat() if request.register_date else None,
        "max_bad_share": max_bad_share,
        "out": str(scratch),
    }
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(
        target=_child_entry, args=(json.dumps(payload), sender), name="nixlookup-build", daemon=True
    )
    try:
        process.start()
        sender.close()
        if not receiver.poll(timeout):
            raise StoreError(f"building {request.path.name} took longer than {timeout:.0f} s")
        try:
            answer: dict[str, Any] = receiver.recv()
        except EOFError:
            process.join(5)
            raise StoreError(
                f"the build process for {request.path.name} exited with {process.exitcode} without an answer"
            ) from None
        if not answer.get("ok"):
            error_class = _ERRORS.get(str(answer.get("error")), StoreError)
            raise error_class(str(answer.get("message")))
        index, _extra = read_snapshot(scratch)
        return BuiltVersion(index, int(answer["lines"]), int(answer["bad_lines"]))
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        if process.pid is not None:
            process.join(5)
        scratch.unlink(missing_ok=True)


def _child_entry(raw: str, sender: Connection) -> None:
    """Runs in the forked child: build, send the answer, exit."""
    try:
        sender.send(_child(raw))
    finally:
        sender.close()


def _child(raw: str) -> dict[str, Any]:
    # Yield the CPU to the serving process: on a small machine its RPC threads come first.
    os.nice(_CHILD_NICENESS)
    fields = json.loads(raw)
    key: ListKey = (ListKind(int(fields["kind"])), str(fields["caller"]))
    date = fields.get("register_date")
    request = ReloadRequest(
        path=Path(fields["path"]),
        fmt=fields.get("fmt"),
        column=fields.get("column"),
        until_column=fields.get("until_column"),
        register_date=datetime.fromisoformat(date) if date else None,
    )
    try:
        built = build_off_to_the_side(key, request, max_bad_share=float(fields["max_bad_share"]))
        write_snapshot(Path(fields["out"]), built.index)
    except NixlookupError as error:
        return {"ok": False, "error": type(error).__name__, "message": str(error)}
    except OSError as error:
        return {"ok": False, "error": "RegisterFileError", "message": f"cannot read {request.path}: {error}"}
    return {"ok": True, "lines": built.lines, "bad_lines": built.bad_lines}


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1])))
