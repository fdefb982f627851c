"""``--metrics-listen HOST:PORT``: Prometheus text over HTTP, the RPC metrics and the domain's.

Theory of operation:
- One `CollectorRegistry` per server process holds everything it exposes: the RPC metrics
  (`rpc.metrics_interceptor`, the go-grpc-prometheus names), the store's operation durations (histograms
  fed by `Store.timings`), and `DomainCollector`, which reads the serving state at scrape time, so the
  register's version, date, age and expiry, list sizes and index bytes cost nothing between scrapes.
- prometheus-client is an optional dependency (the ``server`` extra): it is imported only when
  ``--metrics-listen`` is given, and a server asked for metrics without it refuses to start, saying which
  package to install.
- The HTTP server is prometheus-client's own (a daemon thread); it serves ``/metrics`` (any path works).

Every metric is listed, with its labels, in docs/deploy.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nixlookup.server.errors import NixlookupError
from nixlookup.server.policy import valid_until_for
from nixlookup.server.store import ListDescription, ListKey, StateHolder, Store

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["DURATION_BUCKETS", "FollowerGauges", "MetricsEndpoint", "start_metrics"]

ListDescriber = Callable[[], Sequence[ListDescription]]

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0, 300.0)  # fmt: skip
"""Store operations: a journal fsync is ~0.1-10 ms, a small delta ~10 ms, a 1.5M-line text reload ~1 s."""


@dataclass(frozen=True, slots=True)
class FollowerGauges:
    """What a follower reports (read at scrape time): lag, whether it has synced, reconnects."""

    lag_seconds: Callable[[], float]
    synced: Callable[[], bool]
    reconnects: Callable[[], int]
    writer: str


@dataclass
class MetricsEndpoint:
    """A running metrics endpoint: its registry (for the RPC interceptor) and the bound port."""

    registry: CollectorRegistry
    port: int
    _server: Any

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _slug(key: ListKey) -> tuple[str, str]:
    kind, caller = key
    return kind.slug, caller


class DomainCollector:
    """The register and lists as gauges, read from the serving state at each scrape."""

    def __init__(
        self,
        holder: StateHolder,
        describe: ListDescriber,
        store: Store | None,
        follower: FollowerGauges | None,
    ) -> None:
        self._holder = holder
        self._describe = describe
        self._store = store
        self._follower = follower

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        now = datetime.now(UTC)
        state = self._holder.current() if self._holder.loaded else None
        if state is not None:
            meta = state.register.meta
            info = GaugeMetricFamily(
                "nixlookup_register_info", "The serving register version (value 1).", labels=["version"]
            )
            info.add_metric([meta.version], 1.0)
            yield info
            yield GaugeMetricFamily(
                "nixlookup_register_date_seconds",
                "The serving register version's date, as Unix time.",
                value=meta.register_date.timestamp(),
            )
            yield GaugeMetricFamily(
                "nixlookup_register_age_seconds",
                "Seconds since the serving register version's date.",
                value=(now - meta.register_date).total_seconds(),
            )
            yield GaugeMetricFamily(
                "nixlookup_register_expires_in_seconds",
                "Seconds until answers from the serving register stop being valid (date + 2 months); "
                "negative once past.",
                value=(valid_until_for(meta.register_date) - now).total_seconds(),
            )
        sizes = GaugeMetricFamily(
            "nixlookup_list_keys", "Keys in each served list.", labels=["kind", "caller"]
        )
        memory = GaugeMetricFamily(
            "nixlookup_index_bytes", "Bytes of index memory of each served list.", labels=["kind", "caller"]
        )
        for described in self._describe():
            labels = list(_slug(described.key))
            sizes.add_metric(labels, float(described.count))
            memory.add_metric(labels, float(described.index_bytes))
        yield sizes
        yield memory
        if self._store is not None:
            feed = self._store.feed
            yield CounterMetricFamily(
                "nixlookup_changes",
                "Acknowledged changes (deltas, reloads, compactions, drops) since start.",
                value=float(feed.position),
            )
            yield GaugeMetricFamily(
                "nixlookup_replication_followers",
                "Followers streaming from this writer.",
                value=feed.subscribers,
            )
        if self._follower is not None:
            follower = self._follower
            lag = follower.lag_seconds()
            yield GaugeMetricFamily(
                "nixlookup_follower_lag_seconds",
                "How far this follower may be behind its writer (+Inf before the first sync).",
                value=lag,
            )
            synced = GaugeMetricFamily(
                "nixlookup_follower_synced",
                "1 once this follower holds a whole writer state.",
                labels=["writer"],
            )
            synced.add_metric([follower.writer], 1.0 if follower.synced() else 0.0)
            yield synced
            yield CounterMetricFamily(
                "nixlookup_follower_reconnects", "Replication streams reopened after a failure.",
                value=float(follower.reconnects()),
            )  # fmt: skip


def _store_histograms(store: Store, registry: CollectorRegistry) -> None:
    from prometheus_client import Histogram

    histograms = {
        operation: Histogram(
            f"nixlookup_{operation}_seconds",
            f"Duration of each {operation.replace('_', ' ')} (durable when it ends).",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        for operation in ("reload", "delta", "compact", "journal_fsync")
    }
    store.timings.add_listener(lambda operation, seconds: histograms[operation].observe(seconds))


def start_metrics(
    listen: str,
    holder: StateHolder,
    describe: ListDescriber,
    *,
    store: Store | None = None,
    follower: FollowerGauges | None = None,
) -> MetricsEndpoint:
    """Serve Prometheus text on `listen` (HOST:PORT, port 0 = any); raises `NixlookupError` when it cannot.

    A writer passes its `store` (operation durations, changes, followers), a follower its `follower`."""
    try:
        import prometheus_client
        from prometheus_client import CollectorRegistry, ProcessCollector
    except ImportError:
        raise NixlookupError(
            "--metrics-listen needs prometheus-client: pip install 'nixlookup[server]'"
        ) from None
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes ...
    registry.register(DomainCollector(holder, describe, store, follower))
    if store is not None:
        _store_histograms(store, registry)
    host, _, port = listen.rpartition(":")
    try:
        server, _thread = prometheus_client.start_http_server(
            int(port), addr=host.strip("[]"), registry=registry
        )
    except OSError as error:
        raise NixlookupError(f"cannot serve metrics on {listen}: {error}") from error
    return MetricsEndpoint(registry=registry, port=int(server.server_port), _server=server)
