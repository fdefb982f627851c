"""``--otel``: a span per RPC, named by its method, carrying no phone number (docs/deploy.md, "Traces").

- In process: the server built as `app._assembly` builds it (`load_initial_state`, `start_server`) with
  `start_tracing` exporting to OpenTelemetry's in-memory exporter, called over a real loopback port.
- As a process: ``nixlookup-server serve --otel`` exporting over OTLP/gRPC (the default exporter) to a
  collector this test runs on loopback, flushed at SIGTERM.
- Without the ``otel`` extra, ``--otel`` stops the server naming the install command.
The oracle for "no phone number" is every digit string of the numbers the test sent.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from conftest import RegisterFile, ServerFactory, national
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

OTEL_MISSING = "OpenTelemetry is not installed: pip install 'nixlookup[server,otel]' (make venv does)"
INVALID_TEXT = "070-12 34"
"""Too short to be a Swedish number: answered INVALID, and its digits must not reach a span either."""
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
TRACEPARENT = f"00-{TRACE_ID:032x}-b7ad6b7169203331-01"
"""A W3C trace context from a caller: the server's span must join that trace."""


def _otel_sdk() -> Any:
    return pytest.importorskip("opentelemetry.sdk.trace", reason=OTEL_MISSING)


def _forbidden(keys: Iterable[int]) -> list[str]:
    """Every way the test's numbers could leak: E.164 digits, national digits, the subscriber part."""
    texts = ["".join(ch for ch in INVALID_TEXT if ch.isdigit())]
    for key in keys:
        digits = str(key)
        texts += [digits, "0" + digits[2:], digits[2:]]
    return texts


def _assert_no_number(values: Iterable[Any], keys: Iterable[int]) -> None:
    text = json.dumps([str(value) for value in values])
    for forbidden in _forbidden(keys):
        assert forbidden not in text, f"a span carries the number digits {forbidden[-2:]!r} (last 2)"


def _check(lookup: lookup_pb2_grpc.LookupStub, key: int) -> None:
    metadata = (("traceparent", TRACEPARENT),)
    reply = lookup.Check(lookup_pb2.CheckRequest(text=national(key)), metadata=metadata, timeout=10)
    assert reply.verdict == lookup_pb2.BLOCKED
    invalid = lookup.Check(lookup_pb2.CheckRequest(text=INVALID_TEXT), timeout=10)
    assert invalid.verdict == lookup_pb2.INVALID


async def _serve_in_process(register: RegisterFile, exporter: Any) -> None:
    """One server as `app._assembly` builds it, traced into `exporter`; a Check (and health) through it."""
    from nixlookup.server.app._assembly import load_initial_state, start_server
    from nixlookup.server.app._config import ServerConfig, parse_args
    from nixlookup.server.app._security import Security
    from nixlookup.server.app._tracing import start_tracing

    config = parse_args(["serve", "--listen", "127.0.0.1:0", "--otel", "--register", str(register.path)], {})
    assert isinstance(config, ServerConfig)
    assert config.otel
    initial = load_initial_state(config)
    tracing = start_tracing(exporter)
    running = await start_server(config, initial, Security.from_config(config), tracing=tracing)
    try:
        with futures.ThreadPoolExecutor(1) as pool:  # the sync client off the loop the server runs on
            await asyncio.get_running_loop().run_in_executor(pool, _client_calls, running.port, register)
    finally:
        await running.server.stop(None)
        running.shutdown_executors()
        initial.close()
        tracing.close()


def _client_calls(port: int, register: RegisterFile) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        lookup = lookup_pb2_grpc.LookupStub(channel)
        _check(lookup, int(register.keys[3]))
        batch = lookup_pb2.CheckBatch(
            texts=[national(int(key)) for key in register.keys[:5]], want_details=True
        )
        (result,) = lookup.CheckStream(iter([batch]), timeout=10)
        assert result.count == 5
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_check_makes_one_server_span_named_by_the_method_without_the_number(
    small_register: RegisterFile,
) -> None:
    """Each Check is one SERVER span `/nixlookup.v1.Lookup/Check` (rpc.* attributes, status OK) in the
    caller's trace, a whole stream one span too; health is not traced; no attribute or event carries a
    number checked."""
    sdk = _otel_sdk()
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    exporter = InMemorySpanExporter()
    asyncio.run(_serve_in_process(small_register, exporter))
    spans = exporter.get_finished_spans()
    names = [span.name for span in spans]
    assert names == [*["/nixlookup.v1.Lookup/Check"] * 2, "/nixlookup.v1.Lookup/CheckStream"], "no health"
    first = spans[0]
    assert isinstance(first, sdk.ReadableSpan)
    assert first.kind == SpanKind.SERVER
    assert first.status.status_code != StatusCode.ERROR
    attributes = dict(first.attributes or {})
    assert attributes["rpc.system"] == "grpc"
    assert attributes["rpc.service"] == "nixlookup.v1.Lookup"
    assert attributes["rpc.method"] == "Check"
    assert attributes["rpc.grpc.status_code"] == 0
    assert first.context is not None
    assert first.context.trace_id == TRACE_ID, "the span joins the caller's trace"
    assert first.resource.attributes["service.name"] == "nixlookup-server"
    values: list[Any] = []
    for span in spans:
        values += [*(span.attributes or {}).items(), span.status.description]
        values += [(event.name, dict(event.attributes or {})) for event in span.events]
    _assert_no_number(values, [int(key) for key in small_register.keys[:5]])


@pytest.fixture(name="collector")
def fixture_collector() -> Iterator[tuple[int, list[Any]]]:
    """An OTLP/gRPC trace collector on loopback: its port and the export requests it received."""
    _otel_sdk()
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[Any] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, received
    finally:
        server.stop(None)


def test_the_otel_flag_exports_each_rpc_over_otlp_and_flushes_at_sigterm(
    server_factory: ServerFactory, small_register: RegisterFile, collector: tuple[int, list[Any]]
) -> None:
    """``serve --otel`` with only the standard OTEL_* variables: the spans reach an OTLP collector (the
    last batch at shutdown), under OTEL_SERVICE_NAME, named by the method, without the number."""
    port, received = collector
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_SERVICE_NAME": "nixlookup-traced",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",  # nothing leaves before SIGTERM: the flush at stop is tested
    }
    server = server_factory(["--otel", "--register", str(small_register.path)], env)
    key = int(small_register.keys[11])
    with grpc.insecure_channel(server.target) as channel:
        _check(lookup_pb2_grpc.LookupStub(channel), key)
    assert server.stop(signal.SIGTERM) == 0
    spans, resources = [], []
    for request in received:
        for resource_spans in request.resource_spans:
            resources.append({kv.key: kv.value.string_value for kv in resource_spans.resource.attributes})
            spans += [span for scope in resource_spans.scope_spans for span in scope.spans]
    assert [span.name for span in spans] == ["/nixlookup.v1.Lookup/Check"] * 2, server.log_text()[-2000:]
    assert resources
    assert all(each["service.name"] == "nixlookup-traced" for each in resources)
    assert spans[0].trace_id == TRACE_ID.to_bytes(16, "big")
    values = [str(span) for span in spans]
    _assert_no_number(values, [key])


def test_otel_without_the_extra_stops_the_server_naming_the_install(tmp_path: Any) -> None:
    """With OpenTelemetry not importable, ``serve --otel`` exits 2 before loading the register and its
    error names ``pip install 'nixlookup[server,otel]'``."""
    script = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as on an install without the otel extra\n"
        "from nixlookup.server._entry import main\n"
        "sys.exit(main(['serve', '--otel', '--listen', '127.0.0.1:0', '--log-format', 'json']))\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'nixlookup[server,otel]'" in done.stderr
    assert "SYNTHETIC register" not in done.stderr, "refused before the register loads"
    assert time.monotonic() - started < 30
