"""One writer and followers as real processes on loopback: replication, read-your-writes, crashes, resume.

Oracles: the writer's own GetRegisterInfo (followers must hold exactly its lists, version, count and
checksum, list by list), and a Python set of what every acknowledged delta added or removed.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import RegisterFile, ServerFactory, make_mobile_keys
from google.protobuf.timestamp_pb2 import Timestamp

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.server.policy._dates import add_calendar_months
from nixlookup.server.store import REGISTER_KEY, ListKind, Store, StoreSettings
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc
from nixlookup.v1.vocabulary import BEHIND_DETAIL_PREFIX

_CONVERGE_SECONDS = 20.0
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})

ListState = dict[tuple[int, str], tuple[str, int, str]]


def _lists(target: str) -> ListState:
    """Every list a server serves: (kind, caller) -> (version, count, checksum)."""
    with grpc.insecure_channel(target) as channel:
        info = lookup_pb2_grpc.LookupStub(channel).GetRegisterInfo(
            lookup_pb2.GetRegisterInfoRequest(), timeout=10
        )
    return {
        (int(each.list.kind), each.list.caller): (each.version, each.count, each.checksum)
        for each in (info.register, *info.lists)
    }


def _converged(writer: ServerProcess, *followers: ServerProcess) -> None:
    """Wait until every follower serves exactly the writer's lists (fail with the difference)."""
    expected = _lists(writer.target)
    deadline = time.monotonic() + _CONVERGE_SECONDS
    pending = list(followers)
    while pending and time.monotonic() < deadline:
        pending = [follower for follower in pending if _lists(follower.target) != expected]
        if pending:
            time.sleep(0.05)
    for follower in pending:
        assert _lists(follower.target) == expected, f"follower {follower.target} did not converge"


def _position(version: str, kind: ListKind = ListKind.REGISTER, caller: str = "") -> lookup_pb2.ListPosition:
    return lookup_pb2.ListPosition(list=lookup_pb2.ListRef(kind=int(kind), caller=caller), version=version)  # type: ignore[arg-type]


def _packed(keys: np.ndarray) -> bytes:
    return np.asarray(keys, dtype="<u8").tobytes()


def _wait_for(condition: Callable[[], bool], seconds: float = _CONVERGE_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    assert condition()


@pytest.fixture(name="writer")
def fixture_writer(
    server_factory: ServerFactory, small_register: RegisterFile, tmp_path: Path
) -> ServerProcess:
    return server_factory(["--data-dir", str(tmp_path / "writer"), "--register", str(small_register.path)])


def _follower(server_factory: ServerFactory, writer: ServerProcess, *extra: str) -> ServerProcess:
    return server_factory(["--follow", writer.target, *extra])


@pytest.fixture(name="admin")
def fixture_admin(writer: ServerProcess) -> Iterator[lookup_pb2_grpc.AdminStub]:
    with grpc.insecure_channel(writer.target) as channel:
        yield lookup_pb2_grpc.AdminStub(channel)


def test_followers_answer_every_check_from_at_least_the_version_it_names_and_converge(
    server_factory: ServerFactory, writer: ServerProcess, admin: lookup_pb2_grpc.AdminStub, tmp_path: Path
) -> None:
    """200 deltas and list changes on the writer; checks with min_version through round_robin over two
    followers are right for the version they name; the followers end at exactly the writer's lists."""
    # A caller list from the start: the first one makes every process compile the bulk path's caller loops
    # (numba, seconds on a loaded machine), which followers then do before they report SERVING.
    opt_out = lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_OPT_OUT, caller="acme")
    admin.ApplyDelta(
        lookup_pb2.ApplyDeltaRequest(list=opt_out, add_e164_le=_packed([46701111111])), timeout=30
    )
    followers = [_follower(server_factory, writer), _follower(server_factory, writer)]
    targets = ",".join(f"127.0.0.1:{follower.port}" for follower in followers)
    options = [("grpc.service_config", ROUND_ROBIN)]
    keys = make_mobile_keys(400, seed=1414)
    added: list[int] = []
    answered_by: set[str] = set()
    with grpc.insecure_channel(f"ipv4:{targets}", options=options) as channel:
        lookup = lookup_pb2_grpc.LookupStub(channel)
        for step in range(200):
            if step % 20 == 7:  # a caller's list changes too: created, replaced, dropped
                path = tmp_path / f"opt-out-{step}.txt"
                path.write_text("".join(f"+{int(k)}\n" for k in keys[step : step + 30]), encoding="ascii")
                admin.Reload(lookup_pb2.ReloadRequest(list=opt_out, path=str(path), force=True), timeout=10)
                continue
            if step % 20 == 15:
                admin.DropList(
                    lookup_pb2.DropListRequest(
                        list=lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_OPT_OUT, caller="acme")
                    ),
                    timeout=10,
                )
                continue
            remove = [added.pop(0)] if step % 5 == 4 and added else []
            key = int(keys[step])
            reply = admin.ApplyDelta(
                lookup_pb2.ApplyDeltaRequest(add_e164_le=_packed([key]), remove_e164_le=_packed(remove)),
                timeout=10,
            )
            added.append(key)
            fresh = [_position(reply.version)]
            answer = lookup.Check(lookup_pb2.CheckRequest(e164=key, min_version=fresh), timeout=10)
            assert answer.register_version >= reply.version
            assert answer.verdict == lookup_pb2.BLOCKED, f"step {step}: the key it just added"
            for gone in remove:
                answer = lookup.Check(lookup_pb2.CheckRequest(e164=gone, min_version=fresh), timeout=10)
                assert answer.verdict == lookup_pb2.ALLOWED, f"step {step}: the key it just removed"
            answered_by.add(answer.register_version)
    _converged(writer, *followers)
    # the caller's list ended dropped on every follower: the phone register and the address register remain
    assert set(_lists(followers[0].target)) == {(0, ""), (4, "")}


def test_a_follower_turns_not_serving_and_refuses_answers_once_the_writers_register_expires(
    server_factory: ServerFactory,
    writer: ServerProcess,
    admin: lookup_pb2_grpc.AdminStub,
    small_register: RegisterFile,
) -> None:
    """The register a follower replayed expires on the follower too: health for Lookup NOT_SERVING and
    Check FAILED_PRECONDITION naming the expiry, then SERVING again once the writer loads a current one."""
    follower = _follower(server_factory, writer)
    expired = Timestamp()
    expired.FromDatetime(add_calendar_months(datetime.now(UTC), -2) - timedelta(days=1))
    reload = lookup_pb2.ReloadRequest(path=str(small_register.path), force=True)
    admin.Reload(lookup_pb2.ReloadRequest(path=reload.path, force=True, register_date=expired), timeout=30)
    _wait_for(lambda: follower.health_status("nixlookup.v1.Lookup") == "NOT_SERVING")
    with grpc.insecure_channel(follower.target) as channel:
        lookup = lookup_pb2_grpc.LookupStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            lookup.Check(lookup_pb2.CheckRequest(e164=46701234567), timeout=5)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "expired" in refused.value.details()
        admin.Reload(reload, timeout=30)
        _wait_for(lambda: follower.health_status("nixlookup.v1.Lookup") == "SERVING")
        assert lookup.Check(lookup_pb2.CheckRequest(e164=46701234567), timeout=5).register_version
    assert follower.health_status("nixlookup.liveness") == "SERVING"


def test_a_follower_refuses_writes_naming_the_writer_and_reports_behind(
    server_factory: ServerFactory, writer: ServerProcess
) -> None:
    """Admin on a follower is FAILED_PRECONDITION naming the writer; a version it lacks is 'behind'."""
    follower = _follower(server_factory, writer, "--min-version-wait", "0.2")
    with grpc.insecure_channel(follower.target) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            lookup_pb2_grpc.AdminStub(channel).ApplyDelta(lookup_pb2.ApplyDeltaRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert writer.target in refused.value.details()
        lookup = lookup_pb2_grpc.LookupStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as behind:
            lookup.Check(
                lookup_pb2.CheckRequest(e164=46701234567, min_version=[_position("999999-00000000")]),
                timeout=5,
            )
        assert behind.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert behind.value.details().startswith(BEHIND_DETAIL_PREFIX)
        assert time.monotonic() - started >= 0.2  # it waited for the version before giving up
        batch = lookup_pb2.CheckBatch(
            e164_le=_packed([46701234567]), min_version=[_position("999999-00000000")]
        )
        with pytest.raises(grpc.RpcError) as stream_behind:
            list(lookup.CheckStream(iter([batch]), timeout=5))
        assert stream_behind.value.details().startswith(BEHIND_DETAIL_PREFIX)
        with pytest.raises(grpc.RpcError) as malformed:
            lookup.Check(
                lookup_pb2.CheckRequest(e164=46701234567, min_version=[_position("yesterday")]), timeout=5
            )
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _apply_until_stopped(
    target: str, keys: np.ndarray, acknowledged: list[int], stop: threading.Event
) -> None:
    with grpc.insecure_channel(target) as channel:
        admin = lookup_pb2_grpc.AdminStub(channel)
        for key in keys.tolist():
            if stop.is_set():
                return
            try:
                admin.ApplyDelta(lookup_pb2.ApplyDeltaRequest(add_e164_le=_packed([key])), timeout=5)
            except grpc.RpcError:
                return
            acknowledged.append(key)


def _blocked(target: str, keys: list[int]) -> np.ndarray:
    batch = lookup_pb2.CheckBatch(e164_le=_packed(keys))
    with grpc.insecure_channel(target) as channel:
        (result,) = lookup_pb2_grpc.LookupStub(channel).CheckStream(iter([batch]), timeout=10)
    return np.unpackbits(np.frombuffer(result.blocked, np.uint8), count=len(keys), bitorder="little").astype(
        bool
    )


def test_kill_9_of_a_follower_and_of_the_writer_mid_delta_loses_nothing_acknowledged(
    server_factory: ServerFactory, writer: ServerProcess, small_register: RegisterFile, tmp_path: Path
) -> None:
    """A follower killed mid-stream restarts and converges; the writer killed while deltas stream in
    restarts on its directory, and writer and followers hold every acknowledged delta."""
    first, second = _follower(server_factory, writer), _follower(server_factory, writer)
    acknowledged: list[int] = []
    stop = threading.Event()
    keys = make_mobile_keys(3000, seed=99)
    applier = threading.Thread(target=_apply_until_stopped, args=(writer.target, keys, acknowledged, stop))
    applier.start()
    _wait_for(lambda: len(acknowledged) >= 20)
    first.stop(signal.SIGKILL)
    first = _follower(server_factory, writer)
    _wait_for(lambda: len(acknowledged) >= 60)
    writer.stop(signal.SIGKILL)  # mid-delta: the applier has one in flight
    applier.join(10)
    stop.set()
    restarted = server_factory(
        [
            "--data-dir",
            str(tmp_path / "writer"),
            "--register",
            str(small_register.path),
            "--listen",
            writer.target,
        ]
    )
    assert restarted.port == writer.port
    _converged(restarted, first, second)
    for server in (restarted, first, second):
        assert _blocked(server.target, acknowledged).all(), "an acknowledged delta was lost"


def test_a_follower_resumes_from_the_journal_or_gets_a_fresh_snapshot_when_it_no_longer_reaches_back(
    server_factory: ServerFactory, writer: ServerProcess, small_register: RegisterFile, tmp_path: Path
) -> None:
    """While the writer is away the follower keeps serving, then says NOT_SERVING once past --max-lag;
    back, it resumes with only the deltas it lacks, or the register whole after a compaction."""
    follower = _follower(server_factory, writer, "--max-lag", "2")
    data_dir = tmp_path / "writer"
    argv = ["--data-dir", str(data_dir), "--register", str(small_register.path), "--listen", writer.target]

    def offline_deltas(count: int, *, compact: bool, seed: int) -> None:
        store = Store.open(data_dir, settings=StoreSettings())
        try:
            for each in range(count):
                store.apply_delta(REGISTER_KEY, add=make_mobile_keys(5, seed=seed + each))
            if compact:
                store.compact()
        finally:
            store.close()

    for round_, (compact, expect) in enumerate([(False, "lists_resumed"), (True, "lists_sent_whole")]):
        writer.stop(signal.SIGTERM)
        assert _blocked(follower.target, [int(small_register.keys[0])]).all()  # still answering
        if round_ == 0:
            _wait_for(lambda: follower.health_status() == "NOT_SERVING")
        offline_deltas(5, compact=compact, seed=1000 * (round_ + 1))
        writer = server_factory(argv)
        _converged(writer, follower)
        _wait_for(lambda: follower.health_status() == "SERVING")
        started = [
            json.loads(line) for line in writer.log_text().splitlines() if '"replication_started"' in line
        ]
        assert started[-1][expect] >= 1, started[-1]  # the phone register (the address register resumes)
        assert started[-1]["lists_held"] == 2  # the phone register and the (synthetic) address register
