"""The Python client over several replicas: round_robin, health, and retries that move to another replica.

Two writers with the same register and one follower of each: follower `fresh` follows the writer the
test writes to, follower `stale` the other one, so it is behind every version the test makes, for sure
and for as long as the test wants. The servers' debug log (one ``rpc`` event per call) says which
replica answered what.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import RegisterFile, ServerFactory, make_mobile_keys

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.client import AdminClient, Client
from nixlookup.client._retry import RetryPolicy
from nixlookup.client.aio import AsyncClient
from nixlookup.client.errors import ReplicaBehindError
from nixlookup.v1.vocabulary import Verdict

_QUICK = RetryPolicy(attempts=4, initial_backoff=0.02, max_backoff=0.1)


@dataclass
class Replicas:
    writer: ServerProcess
    other_writer: ServerProcess
    fresh: ServerProcess
    stale: ServerProcess

    @property
    def target(self) -> str:
        return f"ipv4:127.0.0.1:{self.fresh.port},127.0.0.1:{self.stale.port}"


def _checks(server: ServerProcess, code: str = "OK") -> int:
    """Check calls `server` answered with `code`, from its debug log."""
    count = 0
    for line in server.log_text().splitlines():
        if '"rpc"' in line and "Lookup/Check" in line:
            event = json.loads(line)
            count += event["method"].endswith("/Check") and event["code"] == code
    return count


def _wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


@pytest.fixture(name="replicas", scope="module")
def fixture_replicas(
    module_server_factory: ServerFactory,
    small_register: RegisterFile,
    tmp_path_factory: pytest.TempPathFactory,
) -> Replicas:
    """Shared by the module's tests; the last one stops some of them."""
    server_factory = module_server_factory
    directory = tmp_path_factory.mktemp("replicas")

    def writer(name: str) -> ServerProcess:
        return server_factory(["--data-dir", str(directory / name), "--register", str(small_register.path)])

    first, second = writer("writer"), writer("other-writer")
    debug = ["--log-level", "debug", "--log-format", "json"]
    fresh = server_factory(["--follow", first.target, *debug])
    stale = server_factory(
        ["--follow", second.target, "--min-version-wait", "0.05", "--max-lag", "1", *debug]
    )
    return Replicas(first, second, fresh, stale)


def test_round_robin_spreads_calls_and_min_version_moves_past_a_replica_that_is_behind(
    replicas: Replicas,
) -> None:
    """Checks reach both followers; a check with min_version is answered right (the key it just added)
    after the stale follower's "behind" sends it on; a version no replica has ends in ReplicaBehindError
    after the policy's tries; check_many and the asyncio client do the same."""
    key = int(make_mobile_keys(1, seed=1402)[0])
    with Client(replicas.target, retry=_QUICK) as client:
        for _ in range(12):
            assert client.check(key).verdict is Verdict.ALLOWED
        _wait_for(lambda: _checks(replicas.fresh) >= 3 and _checks(replicas.stale) >= 3)

        with AdminClient(replicas.writer.target) as admin:
            (reply,) = admin.apply_delta(add_keys=np.array([key], dtype=np.uint64))
        for _ in range(6):
            answer = client.check(key, min_version=reply.version)
            assert answer.verdict is Verdict.BLOCKED
            assert answer.register_version == reply.version
        _wait_for(lambda: _checks(replicas.stale, "FAILED_PRECONDITION") >= 2)
        for _ in range(3):
            (batch,) = client.check_batches(np.array([key], dtype=np.uint64), min_version=reply.version)
            assert batch.blocked.tolist() == [True]
        assert [r.verdict for r in client.check_many([key], min_version={"register": reply.version})] == [
            Verdict.BLOCKED
        ]

        started = time.monotonic()
        with pytest.raises(ReplicaBehindError) as behind:
            client.check(key, min_version="999999-00000000")
        assert behind.value.tries == _QUICK.attempts
        assert "no replica tried served the min_version" in str(behind.value)
        assert time.monotonic() - started < 10
        with pytest.raises(ReplicaBehindError):
            list(client.check_many([key], min_version="999999-00000000"))

    async def asynchronous() -> None:
        async with AsyncClient(replicas.target, retry=_QUICK) as aclient:
            for _ in range(4):
                answer = await aclient.check(key, min_version=reply.version)
                assert answer.verdict is Verdict.BLOCKED
            results = [r.verdict async for r in aclient.check_many([key], min_version=reply.version)]
            assert results == [Verdict.BLOCKED]
            with pytest.raises(ReplicaBehindError):
                await aclient.check(key, min_version="999999-00000000")

    asyncio.run(asynchronous())


def test_a_not_serving_replica_gets_no_calls_and_a_stopped_one_is_left_without_errors(
    replicas: Replicas,
) -> None:
    """(Last in the module: it stops servers.) Client-side health: once the stale follower's writer is
    gone past --max-lag it says NOT_SERVING and round_robin sends it nothing; once it is stopped too,
    every check still succeeds on the other."""
    key = int(make_mobile_keys(1, seed=1403)[0])
    with Client(replicas.target, retry=_QUICK) as client:
        for _ in range(6):
            client.check(key)
        _wait_for(lambda: _checks(replicas.stale) >= 2)
        replicas.other_writer.stop(signal.SIGTERM)
        _wait_for(lambda: replicas.stale.health_status() == "NOT_SERVING")
        time.sleep(0.3)  # the client's health watch hears it
        before = _checks(replicas.stale)
        for _ in range(10):
            assert client.check(key).verdict is Verdict.ALLOWED
        time.sleep(0.2)
        assert _checks(replicas.stale) == before
        replicas.stale.stop(signal.SIGTERM)
        for _ in range(10):
            assert client.check(key).verdict is Verdict.ALLOWED
