"""Prometheus metrics for the bridge, and the small HTTP endpoint that serves them with a health check.

    GET /metrics  Prometheus text format (a private CollectorRegistry: no process-global state)
    GET /health   JSON {"healthy", "state", "sources": {name: {"connected", ...}}, "output": {...},
                  "outbox": {"depth", ...}, "last_error"}; HTTP 200 when healthy, 503 otherwise

Counters owned by other parts (the outbox's overflow drops, each source's connection flag) are read at
scrape time through collectors bound with bind_outbox() / bind_sources(), so those parts need not know
about Prometheus.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# From a loopback PUBACK (well under a millisecond) to a backlog drained after an outage (minutes).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   300.0, 900.0, 3600.0)


def topic_kind(base: str, topic: str) -> str:
    """The kind of a platform topic for the publications metric: reading, state, availability, status,
    set_response, alert, deadletter, bridge or other (see citynode.core.topics)."""
    if not topic.startswith(base + "/"):
        return "other"
    levels = topic[len(base) + 1:].split("/")
    if levels[0] in ("alerts", "deadletter", "bridge"):
        return {"alerts": "alert"}.get(levels[0], levels[0])
    if len(levels) == 3 and levels[2] in ("reading", "state", "availability", "status"):
        return levels[2]
    if len(levels) == 4 and levels[2:] == ["set", "response"]:
        return "set_response"
    return "other"


class _OutboxLike(Protocol):
    @property
    def depth(self) -> int: ...

    stats: Any


class _Scrape(Collector):
    """Yields metric families computed by a function at scrape time."""

    def __init__(self, produce: Callable[[], Iterator[Metric]]):
        self._produce = produce

    def collect(self) -> Iterator[Metric]:
        return self._produce()


class BridgeMetrics:
    """Every metric the bridge exports, in one private registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.uplinks = Counter("citynode_uplinks", "Uplinks received from a source", ["source"], registry=r)
        self.rejected = Counter("citynode_rejected", "Input items a source could not use, by reason",
                                ["source", "reason"], registry=r)
        self.decode_failures = Counter("citynode_decode_failures", "Uplinks whose payload did not decode, by reason",
                                       ["reason"], registry=r)
        self.dedup_hits = Counter("citynode_dedup_hits", "Uplinks dropped as duplicates", registry=r)
        self.readings_out = Counter("citynode_readings_out", "Readings stored for the platform", registry=r)
        self.publications = Counter("citynode_publications", "Publications stored for the platform, by topic kind",
                                    ["kind"], registry=r)
        self.publish_latency = Histogram("citynode_publish_latency_seconds",
                                         "From storing a publication in the outbox to the output broker's PUBACK",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.inflight = Gauge("citynode_output_inflight", "Publications sent and not yet acknowledged", registry=r)
        self.reconnects = Counter("citynode_reconnects", "Connections re-established after a loss", ["client"],
                                  registry=r)
        self.output_connected = Gauge("citynode_output_connected", "1 while connected to the output broker",
                                      registry=r)
        self.dropped = Counter("citynode_publications_dropped",
                               "Publications the sink refused to send (unsafe topic, too large, refused by broker)",
                               ["reason"], registry=r)
        self.pipeline_errors = Counter("citynode_pipeline_errors", "Input items the pipeline raised on", registry=r)
        self.downlinks = Counter("citynode_downlinks", "Platform commands turned into downlinks, by outcome",
                                 ["outcome"], registry=r)
        self.queue_depth = Gauge("citynode_input_queue_depth", "Input items waiting for the pipeline", registry=r)

    def bind_outbox(self, outbox: _OutboxLike) -> None:
        """Exports the outbox's depth and counters, read at scrape time."""

        def produce() -> Iterator[Metric]:
            depth = GaugeMetricFamily("citynode_outbox_depth", "Publications stored and not yet acknowledged")
            depth.add_metric([], outbox.depth)
            yield depth
            stats = outbox.stats
            drops = CounterMetricFamily("citynode_outbox_overflow_drops",
                                        "Publications deleted unsent because the outbox was full (drop_oldest)")
            drops.add_metric([], stats.overflow_dropped)
            yield drops
            refused = CounterMetricFamily("citynode_outbox_overflow_rejected",
                                          "Publications refused because the outbox was full (reject_new)")
            refused.add_metric([], stats.overflow_rejected)
            yield refused
            coalesced = CounterMetricFamily("citynode_outbox_coalesced",
                                            "Retained publications replaced by a newer one before they were sent")
            coalesced.add_metric([], stats.coalesced)
            yield coalesced
            errors = CounterMetricFamily("citynode_outbox_errors", "Outbox operations that failed (disk full, ...)",
                                         labels=["operation"])
            for operation, count in sorted(stats.errors.items()):
                errors.add_metric([operation], count)
            yield errors

        self.registry.register(_Scrape(produce))

    def bind_sources(self, sources: Mapping[str, Any]) -> None:
        """Exports each source's `stats.connected` as citynode_source_connected{source=...}."""

        def produce() -> Iterator[Metric]:
            family = GaugeMetricFamily("citynode_source_connected", "1 while a source is connected to its input",
                                       labels=["source"])
            for name, source in sorted(sources.items()):
                family.add_metric([name], 1.0 if getattr(source.stats, "connected", False) else 0.0)
            yield family

        self.registry.register(_Scrape(produce))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """Serves /metrics and /health on (host, port) in a daemon thread; port 0 picks a free port.

    `health()` returns (healthy, details); details is sent as JSON with status 200 or 503."""

    def __init__(self, metrics: BridgeMetrics, health: Callable[[], tuple[bool, dict[str, Any]]],
                 host: str = "127.0.0.1", port: int = 9464) -> None:
        self._metrics, self._health = metrics, health
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="citynode-metrics", daemon=True)
        self._thread.start()
        log.info("metrics and health on http://%s:%d/metrics and /health", *self.address)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, server._metrics.exposition())
                elif path == "/health":
                    try:
                        healthy, details = server._health()
                    except Exception as exc:  # noqa: BLE001 - a health check must answer, not crash
                        healthy, details = False, {"last_error": f"health check failed: {exc}"}
                    body = json.dumps({"healthy": healthy, **details}, default=str).encode()
                    self._send(200 if healthy else 503, "application/json", body)
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /health\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
                log.debug("metrics http: " + format, *args)

        return Handler
