"""``--otel``: OpenTelemetry traces of the RPCs, off by default.

Theory of operation:
- With ``--otel`` (env ``NIXLOOKUP_OTEL``) each server process (after the forks of ``--processes``)
  builds one SDK `TracerProvider`: its resource from the standard variables (``OTEL_SERVICE_NAME``,
  ``OTEL_RESOURCE_ATTRIBUTES``; ``service.name`` is ``nixlookup-server`` unless they say otherwise),
  a `BatchSpanProcessor` (``OTEL_BSP_*``: spans are exported off the event loop, in batches) and the
  exporter ``OTEL_TRACES_EXPORTER`` names: ``otlp`` by default (OTLP over gRPC, or over HTTP when
  ``OTEL_EXPORTER_OTLP_PROTOCOL`` is ``http/protobuf``; the endpoint, headers and TLS from the
  ``OTEL_EXPORTER_OTLP_*`` variables), ``console`` (JSON spans on stdout), or any exporter installed
  under the SDK's entry points. Sampling follows ``OTEL_TRACES_SAMPLER`` (SDK default: parent-based,
  always on).
- opentelemetry-instrumentation-grpc's `aio_server_interceptor` is the outermost interceptor of the
  Lookup and Admin listeners, so a span covers admission, authentication and the handler: one SERVER
  span per call, named by the full method (``/nixlookup.v1.Lookup/Check``), with rpc.system, rpc.service,
  rpc.method, the gRPC status code and the peer address. It records nothing of a request or response,
  so no phone number or personnummer ever reaches a span (tests/test_tracing.py checks it); a W3C
  ``traceparent`` in the caller's metadata makes the span a child of the caller's.
- Streaming calls written with ``context.write`` (CheckStream, CheckAddresseeStream) are coroutines,
  not async generators; the library's interceptor assumes the latter for every response stream and fails
  them ("'async for' requires an object with __aiter__ method", opentelemetry-python-contrib issue
  #3066, open in 0.66b2), so `_stream_safe_interceptor` gives those the span of a unary call, which
  awaits the coroutine: one span for the whole stream either way.
- Health and reflection calls are not traced (probes every few seconds are noise), nor the private
  replication socket of ``--processes`` (one endless stream per serving process), nor the plaintext
  ``--health-listen`` listener.
- The packages are the ``otel`` extra, imported only with ``--otel``: without them the server refuses to
  start, naming ``pip install 'nixlookup[server,otel]'``.
- `Tracing.close` (after the listeners stopped) shuts the provider down, exporting what is still batched.
"""

from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from nixlookup.server.errors import NixlookupError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["OTEL_INSTALL_HINT", "Tracing", "start_tracing"]

OTEL_INSTALL_HINT = "pip install 'nixlookup[server,otel]'"
SERVICE_NAME = "nixlookup-server"
"""``service.name`` of the spans unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names another."""
_UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")
_ENTRY_POINTS = "opentelemetry_traces_exporter"
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


@dataclass
class Tracing:
    """A process's tracer provider: `interceptor()` for each traced listener, `close()` at shutdown."""

    provider: TracerProvider

    def interceptor(self) -> Any:
        """A grpc.aio server interceptor making one span per call (health and reflection excepted)."""
        from opentelemetry.instrumentation.grpc import filters
        from opentelemetry.instrumentation.grpc.version import __version__

        untraced = filters.any_of(*(filters.service_name(name) for name in _UNTRACED_SERVICES))
        # The tracer aio_server_interceptor() would make: the instrumentation's own scope name and version.
        tracer = self.provider.get_tracer(
            "opentelemetry.instrumentation.grpc", __version__, "https://opentelemetry.io/schemas/1.11.0"
        )
        return _stream_safe_interceptor()(tracer, filter_=filters.negate(untraced))

    def close(self) -> None:
        self.provider.shutdown()


@functools.cache
def _stream_safe_interceptor() -> type[Any]:
    """The library's aio server interceptor, with read/write (coroutine) response streams traced like
    unary calls (module doc; issue #3066)."""
    from opentelemetry.instrumentation.grpc._aio_server import OpenTelemetryAioServerInterceptor

    class StreamSafeInterceptor(OpenTelemetryAioServerInterceptor):
        def _intercept_aio_server_stream(self, behavior: Any, handler_call_details: Any) -> Any:
            if inspect.isasyncgenfunction(behavior):
                return super()._intercept_aio_server_stream(behavior, handler_call_details)  # type: ignore[no-untyped-call]
            return self._intercept_aio_server_unary(behavior, handler_call_details)  # type: ignore[no-untyped-call]

    return StreamSafeInterceptor


def _exporter_names() -> list[str]:
    names = [name.strip() for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    otlp = _OTLP_BY_PROTOCOL.get(protocol.strip(), f"otlp ({protocol})")
    return [otlp if name == "otlp" else name for name in names if name and name != "none"]


def _configured_exporters() -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names, from the entry points the SDK and exporters register."""
    installed = {each.name: each for each in metadata.entry_points(group=_ENTRY_POINTS)}
    exporters = []
    for name in _exporter_names():
        if name not in installed:
            known = ", ".join(sorted({"otlp", "none", *installed}))
            raise NixlookupError(
                f"--otel: OTEL_TRACES_EXPORTER names {name!r}, which is not installed (installed: {known}); "
                f"{OTEL_INSTALL_HINT} brings otlp (gRPC) and console"
            )
        exporters.append(installed[name].load()())
    return exporters


def start_tracing(exporter: SpanExporter | None = None) -> Tracing:
    """The process's `Tracing`, exporting to `exporter` or else to what the OTEL_* variables configure;
    raises `NixlookupError` when the ``otel`` extra is missing or an exporter cannot be had."""
    try:
        import opentelemetry.instrumentation.grpc  # noqa: F401  # fail now, not at the first listener
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise NixlookupError(
            f"--otel needs OpenTelemetry ({error.name or error} is missing): {OTEL_INSTALL_HINT}"
        ) from None
    resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME and the SDK's own
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):  # nobody named it
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    for each in [exporter] if exporter is not None else _configured_exporters():
        provider.add_span_processor(BatchSpanProcessor(each))
    return Tracing(provider)
