"""Reloads under load, on a real server: no call fails and every answer is right for the version it names."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import numpy as np
from conftest import ServerFactory, make_mobile_keys, write_register
from numpy.typing import NDArray

from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_RELOADS = 20
_STREAM_BATCHES_PER_CALL = 10
_CLIENT_DEADLINE_SECONDS = 10.0
_LOAD_LIMIT_SECONDS = 30.0
"""Hard bound on the load phase, whatever happens to the reloads."""


def _unpack(bits: bytes, count: int) -> NDArray[np.bool_]:
    return np.unpackbits(np.frombuffer(bits, np.uint8), count=count, bitorder="little").astype(np.bool_)


def test_twenty_reloads_under_check_and_stream_load(server_factory: ServerFactory, tmp_path: Path) -> None:
    """20 reloads between two registers while Check and CheckStream run: zero failures, all answers right."""
    keys_a = make_mobile_keys(3_000, seed=41)
    keys_b = make_mobile_keys(3_000, seed=42)
    register_a = write_register(tmp_path / "a.txt", keys_a)
    register_b = write_register(tmp_path / "b.txt", keys_b)
    server = server_factory(["--data-dir", str(tmp_path / "data"), "--register", str(register_a.path)])
    queries = np.concatenate([keys_a[:300], keys_b[:300], make_mobile_keys(200, seed=43)])
    packed = queries.astype("<u8").tobytes()

    channel = grpc.insecure_channel(server.target)
    lookup = lookup_pb2_grpc.LookupStub(channel)
    admin = lookup_pb2_grpc.AdminStub(channel)
    first = lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5).register.version
    version_sets: dict[str, frozenset[int]] = {first: register_a.key_set}
    stop = threading.Event()
    failures: list[str] = []
    unary_answers: list[tuple[str, int, bool]] = []
    batch_answers: list[tuple[str, NDArray[np.bool_]]] = []

    def check_loop(start: int) -> None:
        position = start
        while not stop.is_set():
            key = int(queries[position % queries.size])
            position += 7
            try:
                reply = lookup.Check(lookup_pb2.CheckRequest(e164=key), timeout=_CLIENT_DEADLINE_SECONDS)
            except grpc.RpcError as error:
                failures.append(f"Check: {error}")
                continue
            unary_answers.append((reply.register_version, key, reply.verdict == lookup_pb2.BLOCKED))

    def stream_loop() -> None:
        while not stop.is_set():
            batches = (
                lookup_pb2.CheckBatch(e164_le=packed, batch_id=n) for n in range(_STREAM_BATCHES_PER_CALL)
            )
            try:
                for result in lookup.CheckStream(batches, timeout=_CLIENT_DEADLINE_SECONDS):
                    batch_answers.append((result.register_version, _unpack(result.blocked, queries.size)))
            except grpc.RpcError as error:
                failures.append(f"CheckStream: {error}")

    clients = [threading.Thread(target=check_loop, args=(n,)) for n in range(2)]
    clients.append(threading.Thread(target=stream_loop))
    for client in clients:
        client.start()
    deadline = time.monotonic() + _LOAD_LIMIT_SECONDS
    try:
        for number in range(_RELOADS):
            if time.monotonic() > deadline:
                break
            register = register_b if number % 2 == 0 else register_a
            reply = admin.Reload(lookup_pb2.ReloadRequest(path=str(register.path)), timeout=30)
            version_sets[reply.info.version] = register.key_set
            time.sleep(0.05)  # let the clients see this version before the next one
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=_CLIENT_DEADLINE_SECONDS * 2)
        channel.close()

    assert failures == []
    assert len(version_sets) == _RELOADS + 1
    seen_versions = {version for version, _key, _blocked in unary_answers} | {v for v, _ in batch_answers}
    assert seen_versions <= set(version_sets)
    assert len(seen_versions) >= 5, "the clients did not overlap with the reloads"
    assert unary_answers
    assert batch_answers
    for version, key, blocked in unary_answers:
        assert blocked == (key in version_sets[version]), f"Check answered wrongly under {version}"
    for version, blocked_mask in batch_answers:
        expected = np.isin(queries, np.fromiter(version_sets[version], np.uint64))
        assert np.array_equal(blocked_mask, expected), (
            f"a batch mixed versions or answered wrongly ({version})"
        )
