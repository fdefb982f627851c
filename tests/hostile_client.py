"""A client process that holds streams open the ways abusive or broken clients do (tests/test_overload.py).

``python tests/hostile_client.py TARGET --idle N --never-read N --watch N [--channels K]`` opens, spread
over K connections (grpc.aio channels):
- N ``CheckStream`` calls that never send a batch (idle),
- N ``CheckStream`` calls that keep sending 100k-number batches (with details) and never read a result,
- N ``grpc.health.v1.Health/Watch`` calls that read the first status and then nothing,
waits until every one of them is open on the server (its headers sent, or its first write or answer
through), prints ``ready`` on stdout, and then sits still until it is killed (or stopped with SIGSTOP,
which is how a test plays a client whose host vanished). It never exits on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import numpy as np
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_BATCH = lookup_pb2.CheckBatch(
    e164_le=(np.arange(100_000, dtype=np.uint64) + np.uint64(46_701_000_000)).astype("<u8").tobytes(),
    want_details=True,
)
_MESSAGE_LIMIT = 16 * 1024 * 1024


async def _idle(stub: lookup_pb2_grpc.LookupStub, calls: list[object]) -> None:
    call = stub.CheckStream()
    calls.append(call)
    await call.wait_for_connection()


async def _never_read(stub: lookup_pb2_grpc.LookupStub, calls: list[object], opened: asyncio.Event) -> None:
    call = stub.CheckStream()
    calls.append(call)
    await call.write(_BATCH)
    opened.set()
    try:
        while True:
            await call.write(_BATCH)  # blocks once flow control is exhausted: nothing is ever read
    except Exception:
        await asyncio.Event().wait()


async def _watch(stub: health_pb2_grpc.HealthStub, calls: list[object]) -> None:
    call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    calls.append(call)
    await call.read()  # the first status; later ones are never read


async def _main(target: str, idle: int, never_read: int, watch: int, channel_count: int) -> None:
    options = [
        ("grpc.max_send_message_length", _MESSAGE_LIMIT),
        ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
        ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per channel, not one shared
    ]
    channels = [aio.insecure_channel(target, options=options) for _ in range(channel_count)]
    calls: list[object] = []  # keep every call referenced: a collected call would be cancelled
    openings: list[asyncio.Future[None]] = []
    writers: list[asyncio.Task[None]] = []
    for number in range(idle + never_read + watch):
        channel = channels[number % channel_count]
        if number < idle:
            openings.append(asyncio.ensure_future(_idle(lookup_pb2_grpc.LookupStub(channel), calls)))
        elif number < idle + never_read:
            opened = asyncio.Event()
            writers.append(
                asyncio.create_task(_never_read(lookup_pb2_grpc.LookupStub(channel), calls, opened))
            )
            openings.append(asyncio.ensure_future(opened.wait()))  # type: ignore[arg-type]
        else:
            openings.append(asyncio.ensure_future(_watch(health_pb2_grpc.HealthStub(channel), calls)))
    await asyncio.wait_for(asyncio.gather(*openings), timeout=60)
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--idle", type=int, default=0)
    parser.add_argument("--never-read", type=int, default=0)
    parser.add_argument("--watch", type=int, default=0)
    parser.add_argument("--channels", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(_main(args.target, args.idle, args.never_read, args.watch, args.channels))


if __name__ == "__main__":
    sys.exit(main())
