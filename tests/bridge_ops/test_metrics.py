"""Prometheus metrics and the /metrics + /health endpoint."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from citynode.metrics import BridgeMetrics, MetricsServer, topic_kind
from citynode.records import Publication, SourceStats
from citynode.sinks.outbox import Outbox


def samples(metrics: BridgeMetrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counters_are_exported_with_their_labels():
    m = BridgeMetrics()
    m.uplinks.labels(source="chirpstack").inc(3)
    m.rejected.labels(source="tts", reason="invalid_json").inc()
    m.publications.labels(kind="reading").inc(2)
    m.reconnects.labels(client="output").inc()
    m.publish_latency.observe(0.004)
    got = samples(m)
    assert got[("citynode_uplinks_total", (("source", "chirpstack"),))] == 3
    assert got[("citynode_rejected_total", (("reason", "invalid_json"), ("source", "tts")))] == 1
    assert got[("citynode_publications_total", (("kind", "reading"),))] == 2
    assert got[("citynode_reconnects_total", (("client", "output"),))] == 1
    assert got[("citynode_publish_latency_seconds_bucket", (("le", "0.005"),))] == 1
    assert got[("citynode_publish_latency_seconds_bucket", (("le", "0.0025"),))] == 0


def test_two_instances_do_not_share_a_registry():
    a, b = BridgeMetrics(), BridgeMetrics()
    a.dedup_hits.inc()
    assert samples(b)[("citynode_dedup_hits_total", ())] == 0


def test_outbox_depth_and_overflow_drops_are_read_at_scrape_time(tmp_path):
    m = BridgeMetrics()
    box = Outbox(tmp_path / "o.sqlite", max_rows=2)
    m.bind_outbox(box)
    for n in range(3):
        box.add([Publication("citynode/soil/a/reading", b"x", key=str(n))])
    got = samples(m)
    assert got[("citynode_outbox_depth", ())] == 2
    assert got[("citynode_outbox_overflow_drops_total", ())] == 1
    box.close()


def test_source_connection_flags_are_exported():
    m = BridgeMetrics()
    m.bind_sources({"chirpstack": SimpleNamespace(stats=SourceStats(connected=True)),
                    "tts": SimpleNamespace(stats=SourceStats(connected=False))})
    got = samples(m)
    assert got[("citynode_source_connected", (("source", "chirpstack"),))] == 1
    assert got[("citynode_source_connected", (("source", "tts"),))] == 0


@pytest.mark.parametrize("topic, kind", [
    ("citynode/soil/tree-1/reading", "reading"),
    ("citynode/fill/bin-2/state", "state"),
    ("citynode/fill/bin-2/availability", "availability"),
    ("citynode/fill/bin-2/status", "status"),
    ("citynode/fill/bin-2/set/response", "set_response"),
    ("citynode/alerts/fill/bin-2/full", "alert"),
    ("citynode/deadletter", "deadletter"),
    ("citynode/bridge/state", "bridge"),
    ("other/soil/tree-1/reading", "other"),
])
def test_topic_kind_names_the_platform_topic_families(topic, kind):
    assert topic_kind("citynode", topic) == kind


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read(), r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers["Content-Type"]


def test_the_endpoint_serves_metrics_and_health_200_when_healthy_and_503_when_not():
    m = BridgeMetrics()
    m.readings_out.inc(5)
    state = {"healthy": True}
    server = MetricsServer(m, lambda: (state["healthy"], {"state": "running", "outbox": {"depth": 0}}),
                           "127.0.0.1", 0)
    server.start()
    try:
        base = "http://{}:{}".format(*server.address)
        status, body, ctype = get(base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain") and b"citynode_readings_out_total 5.0" in body
        status, body, ctype = get(base + "/health")
        assert status == 200 and ctype == "application/json"
        assert json.loads(body) == {"healthy": True, "state": "running", "outbox": {"depth": 0}}
        state["healthy"] = False
        status, body, _ = get(base + "/health")
        assert status == 503 and json.loads(body)["healthy"] is False
        assert get(base + "/nope")[0] == 404
    finally:
        server.stop()


def test_a_failing_health_callback_answers_503_with_the_error():
    def broken():
        raise RuntimeError("boom")

    server = MetricsServer(BridgeMetrics(), broken, "127.0.0.1", 0)
    server.start()
    try:
        status, body, _ = get("http://{}:{}/health".format(*server.address))
        assert status == 503 and "boom" in json.loads(body)["last_error"]
    finally:
        server.stop()
