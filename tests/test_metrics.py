"""`--metrics-listen` on a real server: the go-grpc-prometheus names and the domain's, scraped over HTTP.

The oracles are the calls the test made (how many, which status) and a Python `set` of the register.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import RegisterFile, ServerFactory, data_dir_server, make_mobile_keys
from prometheus_client.parser import text_string_to_metric_families

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(name="server", scope="module")
def fixture_server(
    module_server_factory: ServerFactory,
    small_register: RegisterFile,
    tmp_path_factory: pytest.TempPathFactory,
) -> ServerProcess:
    """The small register in a data directory, metrics on a port of their own."""
    return data_dir_server(
        module_server_factory, small_register, tmp_path_factory, "--metrics-listen", "127.0.0.1:0"
    )


def _metrics_port(server: ServerProcess) -> int:
    for line in server.log_text().splitlines():
        if '"serving"' in line:
            return int(json.loads(line)["metrics_port"])
    raise AssertionError("no serving event in the log")


def _scrape(server: ServerProcess) -> Samples:
    url = f"http://127.0.0.1:{_metrics_port(server)}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode("utf-8")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every sample named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and wanted <= sample_labels
    )


@pytest.fixture(name="channel")
def fixture_channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as channel:
        yield channel


def test_rpcs_are_counted_by_method_type_and_code(server: ServerProcess, channel: grpc.Channel) -> None:
    """started/handled/handling/msg counters move by exactly the calls made, with Go's code names."""
    stub = lookup_pb2_grpc.LookupStub(channel)
    before = _scrape(server)
    for _ in range(5):
        stub.Check(lookup_pb2.CheckRequest(text="070-123 45 67"), timeout=5)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Check(lookup_pb2.CheckRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    batches = [
        lookup_pb2.CheckBatch(e164_le=make_mobile_keys(100, seed=s).astype("<u8").tobytes()) for s in range(3)
    ]
    assert len(list(stub.CheckStream(iter(batches), timeout=10))) == 3
    after = _scrape(server)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    check = {"grpc_service": "nixlookup.v1.Lookup", "grpc_method": "Check", "grpc_type": "unary"}
    stream = {"grpc_service": "nixlookup.v1.Lookup", "grpc_method": "CheckStream", "grpc_type": "bidi_stream"}
    assert moved("grpc_server_started_total", **check) == 6
    assert moved("grpc_server_handled_total", grpc_code="OK", **check) == 5
    assert moved("grpc_server_handled_total", grpc_code="InvalidArgument", **check) == 1
    assert moved("grpc_server_handling_seconds_count", **check) == 6
    assert moved("grpc_server_msg_received_total", **check) == 6
    assert moved("grpc_server_msg_sent_total", **check) == 5
    assert moved("grpc_server_started_total", **stream) == 1
    assert moved("grpc_server_msg_received_total", **stream) == 3
    assert moved("grpc_server_msg_sent_total", **stream) == 3
    assert moved("grpc_server_handled_total", grpc_code="OK", **stream) == 1
    assert _value(after, "nixlookup_streams_open", grpc_method="CheckStream") == 0


def test_numbers_checked_by_verdict_and_caller_agree_with_a_set(
    server: ServerProcess, channel: grpc.Channel, small_register: RegisterFile
) -> None:
    """nixlookup_numbers_checked_total counts each verdict exactly as a set of the register predicts."""
    stub = lookup_pb2_grpc.LookupStub(channel)
    hits = small_register.keys[:300]
    misses = make_mobile_keys(700, seed=5)
    misses = misses[~np.isin(misses, small_register.keys)]
    keys = np.concatenate([hits, misses])
    before = _scrape(server)
    batch = lookup_pb2.CheckBatch(e164_le=keys.astype("<u8").tobytes(), caller="metrics-test")
    list(stub.CheckStream(iter([batch]), timeout=10))
    stub.Check(lookup_pb2.CheckRequest(text="12345", caller="metrics-test"), timeout=5)
    after = _scrape(server)

    def moved(verdict: str) -> float:
        name = "nixlookup_numbers_checked_total"
        return _value(after, name, verdict=verdict, caller="metrics-test") - _value(
            before, name, verdict=verdict, caller="metrics-test"
        )

    assert moved("blocked") == hits.size
    assert moved("allowed") == misses.size
    assert moved("invalid") == 1


def test_domain_gauges_describe_the_serving_register(server: ServerProcess, channel: grpc.Channel) -> None:
    """Register version, date, expiry, list sizes, index bytes and durations of a delta are exposed."""
    admin = lookup_pb2_grpc.AdminStub(channel)
    lookup = lookup_pb2_grpc.LookupStub(channel)
    added = admin.ApplyDelta(
        lookup_pb2.ApplyDeltaRequest(add_e164_le=make_mobile_keys(10, seed=77).astype("<u8").tobytes()),
        timeout=10,
    )
    info = lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5).register
    assert info.version == added.version
    samples = _scrape(server)
    assert _value(samples, "nixlookup_register_info", version=info.version) == 1
    assert _value(samples, "nixlookup_list_keys", kind="register", caller="") == info.count
    assert _value(samples, "nixlookup_index_bytes", kind="register") > 0
    assert abs(_value(samples, "nixlookup_register_date_seconds") - info.register_date.seconds) < 1
    assert 0 < _value(samples, "nixlookup_register_expires_in_seconds") <= 62 * 86_400
    assert _value(samples, "nixlookup_register_age_seconds") >= 0
    assert _value(samples, "nixlookup_delta_seconds_count") >= 1
    assert _value(samples, "nixlookup_journal_fsync_seconds_count") >= 1
    assert _value(samples, "nixlookup_changes_total") >= 1
    assert _value(samples, "process_resident_memory_bytes") > 0


def test_a_server_without_metrics_opens_no_endpoint(server_factory: ServerFactory, tmp_path: Path) -> None:
    """Metrics are off by default: no serving event names a metrics port."""
    plain = server_factory(["--data-dir", str(tmp_path / "data"), "--synthetic-size", "1000"])
    deadline = time.monotonic() + 5
    while '"serving"' not in plain.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    serving = next(json.loads(line) for line in plain.log_text().splitlines() if '"serving"' in line)
    assert serving["metrics_port"] is None
