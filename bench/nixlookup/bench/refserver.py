"""The reference server: a bare grpcio server answering the nixlookup proto from a Python `set`.

It is what a team would write in an afternoon: a grpc server (sync with a thread pool by default, the same
model nixlookup-server uses, so the ratio shows what nixlookup's own code costs; `--mode aio` for grpc.aio),
`key in set` per number, no index, no
normaliser beyond stripping a written number to digits, no policy. `rpc` and `compare` run it beside the
real server in the same run and report nixlookup's figures as ratios against it, so the per-call overhead
nixlookup adds on top of bare grpcio is visible on any machine.

Run: ``python -m nixlookup.bench.refserver --listen 127.0.0.1:PORT --keys REGISTER.npy`` (a numpy file of
uint64 E.164 keys). It serves `nixlookup.v1.Lookup` (Check, CheckStream, GetRegisterInfo) and the standard
health service (SERVING once the set is built), and exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from numpy.typing import NDArray

from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = ["ReferenceLookup", "SyncReferenceLookup", "main", "naive_key", "serve", "serve_sync"]

_VERSION = "reference"
_Context = grpc.aio.ServicerContext[Any, Any]


def naive_key(text: str) -> int:
    """The digits of a written number as an E.164 key (national '0' -> '46'); 0 when there are none."""
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        return 0
    stripped = text.lstrip()
    if stripped.startswith("+"):
        pass
    elif digits.startswith("00"):
        digits = digits[2:]
    elif digits.startswith("0"):
        digits = "46" + digits[1:]
    if not digits or len(digits) > 15:
        return 0
    return int(digits)


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class _ReferenceAnswers:
    """The answers themselves, shared by the sync and the asyncio servicer."""

    def __init__(self, keys: NDArray[np.uint64]) -> None:
        self._keys: frozenset[int] = frozenset(keys.tolist())
        now = datetime.now(UTC).replace(microsecond=0)
        self._register_date = _timestamp(now)
        self._valid_until = _timestamp(now + timedelta(days=61))

    def check(self, request: lookup_pb2.CheckRequest) -> lookup_pb2.CheckResponse:
        which = request.WhichOneof("number")
        key = request.e164 if which == "e164" else naive_key(request.text) if which == "text" else 0
        if key == 0:
            return lookup_pb2.CheckResponse(
                verdict=lookup_pb2.INVALID, reason=lookup_pb2.INVALID_NUMBER, register_version=_VERSION
            )
        blocked = key in self._keys
        return lookup_pb2.CheckResponse(
            verdict=lookup_pb2.BLOCKED if blocked else lookup_pb2.ALLOWED,
            reason=lookup_pb2.NIX_REGISTERED if blocked else lookup_pb2.NOT_REGISTERED,
            e164=key,
            register_version=_VERSION,
            register_date=self._register_date,
            valid_until=self._valid_until,
        )

    def answer_batch(self, batch: lookup_pb2.CheckBatch) -> lookup_pb2.CheckBatchResult:
        if batch.e164_le:
            keys = np.frombuffer(batch.e164_le, dtype="<u8")
        else:
            keys = np.fromiter((naive_key(t) for t in batch.texts), dtype=np.uint64, count=len(batch.texts))
        members = self._keys
        blocked = np.fromiter((k in members for k in keys.tolist()), dtype=np.bool_, count=keys.size)
        invalid = keys == 0
        return lookup_pb2.CheckBatchResult(
            count=keys.size,
            blocked=np.packbits(blocked, bitorder="little").tobytes(),
            invalid=np.packbits(invalid, bitorder="little").tobytes(),
            register_version=_VERSION,
            register_date=self._register_date,
            valid_until=self._valid_until,
            batch_id=batch.batch_id,
        )

    def register_info(self) -> lookup_pb2.RegisterInfo:
        return lookup_pb2.RegisterInfo(
            register=lookup_pb2.ListInfo(version=_VERSION, source="reference", count=len(self._keys)),
            server_version=_VERSION,
        )


class ReferenceLookup(lookup_pb2_grpc.LookupServicer):
    """`nixlookup.v1.Lookup` from a Python set on `grpc.aio`."""

    def __init__(self, keys: NDArray[np.uint64]) -> None:
        self._answers = _ReferenceAnswers(keys)

    async def Check(  # noqa: N802 - method names are the proto's
        self, request: lookup_pb2.CheckRequest, context: _Context
    ) -> lookup_pb2.CheckResponse:
        return self._answers.check(request)

    async def CheckStream(  # noqa: N802 - method names are the proto's
        self,
        request_iterator: AsyncIterator[lookup_pb2.CheckBatch],
        context: _Context,
    ) -> AsyncIterator[lookup_pb2.CheckBatchResult]:
        async for batch in request_iterator:
            yield self._answers.answer_batch(batch)

    async def GetRegisterInfo(  # noqa: N802 - method names are the proto's
        self, request: lookup_pb2.GetRegisterInfoRequest, context: _Context
    ) -> lookup_pb2.RegisterInfo:
        return self._answers.register_info()


class SyncReferenceLookup(lookup_pb2_grpc.LookupServicer):
    """`nixlookup.v1.Lookup` from a Python set on the sync grpc server: nixlookup's own server model."""

    def __init__(self, keys: NDArray[np.uint64]) -> None:
        self._answers = _ReferenceAnswers(keys)

    def Check(  # noqa: N802 - method names are the proto's
        self, request: lookup_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> lookup_pb2.CheckResponse:
        return self._answers.check(request)

    def CheckStream(  # noqa: N802 - method names are the proto's
        self, request_iterator: Iterator[lookup_pb2.CheckBatch], context: grpc.ServicerContext
    ) -> Iterator[lookup_pb2.CheckBatchResult]:
        for batch in request_iterator:
            yield self._answers.answer_batch(batch)

    def GetRegisterInfo(  # noqa: N802 - method names are the proto's
        self, request: lookup_pb2.GetRegisterInfoRequest, context: grpc.ServicerContext
    ) -> lookup_pb2.RegisterInfo:
        return self._answers.register_info()


def _bound(port: int, listen: str, port_file: Path | None) -> None:
    """Refuse a failed bind; write the bound port to `port_file` (``--listen 127.0.0.1:0``)."""
    if port == 0:
        raise SystemExit(f"refserver: cannot listen on {listen}")
    if port_file is not None:
        port_file.write_text(f"{port}\n", encoding="ascii")


_MESSAGE_OPTIONS = [
    # Same message limit the bulk path needs: 100k keys of 8 bytes plus framing.
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]


async def serve(listen: str, keys_path: Path, port_file: Path | None = None) -> None:
    """Serve on grpc.aio until SIGTERM/SIGINT; health turns SERVING once the set is built."""
    server = grpc.aio.server(options=_MESSAGE_OPTIONS)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    started = time.perf_counter()
    keys = np.load(keys_path).astype(np.uint64, copy=False)
    lookup_pb2_grpc.add_LookupServicer_to_server(ReferenceLookup(keys), server)
    _bound(server.add_insecure_port(listen), listen, port_file)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("nixlookup.v1.Lookup", health_pb2.HealthCheckResponse.SERVING)
    print(
        f"refserver listening on {listen}, {keys.size} keys loaded in {time.perf_counter() - started:.2f} s",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace=2.0)


# deliberate twin of `serve`: the same reference on the other server model (sync grpc, a thread pool)
def serve_sync(listen: str, keys_path: Path, workers: int, port_file: Path | None = None) -> None:
    """Serve on the sync grpc server (nixlookup's own model: a thread pool of `workers`) until a signal."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=_MESSAGE_OPTIONS)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    started = time.perf_counter()
    keys = np.load(keys_path).astype(np.uint64, copy=False)
    lookup_pb2_grpc.add_LookupServicer_to_server(SyncReferenceLookup(keys), server)
    _bound(server.add_insecure_port(listen), listen, port_file)
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("nixlookup.v1.Lookup", health_pb2.HealthCheckResponse.SERVING)
    print(
        f"refserver (sync) listening on {listen}, {keys.size} keys loaded in "
        f"{time.perf_counter() - started:.2f} s",
        flush=True,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(grace=2.0).wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nixlookup.bench.refserver", description=__doc__)
    parser.add_argument("--listen", required=True, help="HOST:PORT on loopback, e.g. 127.0.0.1:50099")
    parser.add_argument("--keys", required=True, type=Path, help=".npy file of uint64 E.164 keys")
    parser.add_argument("--port-file", type=Path, help="write the bound port here (for --listen HOST:0)")
    parser.add_argument(
        "--mode",
        choices=("sync", "aio"),
        default="sync",
        help="sync: grpc.server with a thread pool, like nixlookup-server; aio: grpc.aio [default sync]",
    )
    parser.add_argument("--workers", type=int, default=8, help="sync mode: threads [default 8, as ours]")
    args = parser.parse_args(argv)
    if args.mode == "sync":
        serve_sync(args.listen, args.keys, args.workers, args.port_file)
    else:
        asyncio.run(serve(args.listen, args.keys, args.port_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
