"""The demo's live view, fed with what the bridge really publishes (the pipeline's own messages)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

from rich.console import Console

from citynode.core.pipeline import Pipeline, PipelineSettings
from citynode.dashboard import DashboardState, render
from citynode.records import Uplink
from citynode.registry import Registry
from citynode_codec import encode

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)


def _publications(message: str, data: dict, fcnt: int, dev_eui: str = "70b3d57ed0000001"):
    fport, payload = encode(message, data)
    pipe = Pipeline(Registry(), PipelineSettings())
    up = Uplink(source="chirpstack", dev_eui=dev_eui, fport=fport, payload=payload, received_at=NOW, fcnt=fcnt,
                device_name="glass-7")
    return pipe.handle(up)


def test_a_fill_reading_shows_its_level_battery_and_radio():
    state = DashboardState()
    for pub in _publications("fill_reading", {"flags": [], "fill_pct": 82, "distance_m": 0.36, "temperature_c": 9,
                                              "battery_v": 3.58}, 17):
        state.apply(pub.topic, pub.payload)
    node = state.nodes["glass-7"]
    assert node.kind == "fill" and node.measurements["fill_pct"] == 82 and node.battery_v == 3.58
    assert state.counts["readings"] == 1 and node.fcnt == 17


def test_alerts_mark_the_node_until_they_are_cleared():
    state = DashboardState()
    raised = {"schema": "citynode/alert/1", "alert": "collection_needed", "state": "raised", "device_id": "glass-7",
              "kind": "fill", "value": 91.0, "unit": "%", "time": "2026-05-04T09:00:00.000Z"}
    state.apply("citynode/alerts/fill/glass-7/collection_needed", json.dumps(raised).encode())
    assert state.nodes["glass-7"].alerts == {"collection_needed"}
    state.apply("citynode/alerts/fill/glass-7/collection_needed", json.dumps({**raised, "state": "cleared"}).encode())
    assert state.nodes["glass-7"].alerts == set() and state.counts["alerts"] == 2


def test_garbage_on_the_broker_is_counted_not_fatal():
    state = DashboardState()
    for topic, payload in (("citynode/x", b"\xff\xfe"), ("other/topic", b"{}"), ("citynode/soil/a/reading", b"[1]")):
        state.apply(topic, payload)
    assert state.counts["other"] == 3 and not state.nodes


def test_the_view_renders_every_node_and_the_last_dead_letter():
    state = DashboardState()
    for pub in _publications("soil_reading", {"flags": ["low_battery"], "vwc_pct": 9.5, "soil_temperature_c": 14.2,
                                              "battery_v": 3.1}, 3):
        state.apply(pub.topic, pub.payload)
    state.apply("citynode/deadletter", json.dumps({"reason": "not_citynode", "detail": "fPort 99",
                                                   "received_at": "2026-05-04T09:00:01Z",
                                                   "raw": base64.b64encode(b"x").decode()}).encode())
    console = Console(record=True, width=160)
    console.print(render(state))
    text = console.export_text()
    assert "glass-7" in text and "9.5 % VWC" in text and "not_citynode" in text and "low_battery" in text
