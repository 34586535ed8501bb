"""docs/asyncapi.yaml describes what the bridge really publishes: every message the pipeline produces (all kinds)
validates against the schema of the one channel its topic matches, and the document's own parts are consistent."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from citynode.core.pipeline import Pipeline, PipelineSettings
from citynode.records import Downlink, RxInfo, Uplink
from citynode.registry import Registry
from citynode.sinks.sensorthings import SensorThingsSettings
from citynode.sources import chirpstack, tts
from citynode_codec import encode

ROOT = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text(encoding="utf-8"))
FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)
TREE, GLASS, STRANGER = "ac1f09fffe000001", "ac1f09fffe000002", "70b3d57ed0000abc"


def node_path(ref: str) -> list[str]:
    assert ref.startswith("#/"), ref
    return [p.replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/")]


def deref(node: dict) -> dict:
    while isinstance(node, dict) and set(node) == {"$ref"}:
        target = DOC
        for part in node_path(node["$ref"]):
            target = target[part]
        node = target
    return node


def validator(payload_schema: dict) -> Draft202012Validator:
    return Draft202012Validator({**payload_schema, "components": DOC["components"]})


# AsyncAPI 3 parameters have no schema; the device id's pattern is stated in its description
PARAM_PATTERNS = {"device": "[a-z0-9_-]{1,64}"}


def channel_pattern(name: str, channel: dict) -> re.Pattern:
    params = channel.get("parameters", {})
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}", channel["address"]):
        out += re.escape(channel["address"][pos:m.start()])
        param = deref(params[m.group(1)])
        enum = param.get("enum")
        if enum:
            out += "(" + "|".join(re.escape(e) for e in enum) + ")"
        else:
            out += PARAM_PATTERNS.get(m.group(1), "[^/+#]+")
        pos = m.end()
    return re.compile("^" + out + re.escape(channel["address"][pos:]) + "$")


PATTERNS = {name: channel_pattern(name, ch) for name, ch in DOC["channels"].items()}


def channel_for(topic: str) -> str:
    matches = [name for name, pattern in PATTERNS.items() if pattern.match(topic)]
    assert len(matches) == 1, f"{topic} matches {matches}"
    return matches[0]


def check(topic: str, payload: dict) -> str:
    """Validate one real message; returns the channel name."""
    name = channel_for(topic)
    messages = [deref(m) for m in DOC["channels"][name]["messages"].values()]
    errors = []
    for message in messages:
        problems = sorted(validator(deref(message["payload"])).iter_errors(payload), key=str)
        if not problems:
            return name
        errors.append(f"{message.get('name')}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}"
                                                            for e in problems[:3]))
    pytest.fail(f"{topic}: {payload} does not match {name}: {errors}")


def up(dev, hexpayload, fport, fcnt, at=T0, source="chirpstack", name=None):
    return Uplink(source, dev, fport, bytes.fromhex(hexpayload), at, fcnt=fcnt, device_name=name,
                  rx=(RxInfo("gw", -90, 3.5),), spreading_factor=9, frequency_hz=868100000, raw=b"{}")


def enc(message, **data):
    fport, frame = encode(message, data)
    return frame.hex(), fport


def all_publications() -> list:
    """Drive the pipeline through every kind of message it can publish."""
    reg = Registry.load(FIXTURES / "registry.toml")
    clock = [T0.timestamp()]
    p = Pipeline(reg, PipelineSettings(sensorthings=SensorThingsSettings(id_template="{device_id}-{measurement}"),
                                       fiware=True), clock=lambda: clock[0])
    pubs = []
    pubs += p.handle(up(TREE, "1007541b40", 1, 1))  # soil reading
    pubs += p.handle(up(TREE, "1163135cc4500118", 1, 2))  # dry, low battery, tension and EC
    pubs += p.handle(up(TREE, "181ffc1b40", 1, 3))  # sensor fault, vwc null
    pubs += p.handle(up(TREE, "31c3c0280f8275de0043104ace", 3, 4))  # soil batch
    pubs += p.handle(up(TREE, "408005792a60", 4, 5))  # soil_dry alarm
    pubs += p.handle(up(GLASS, "20520918cf", 2, 1, source="tts"))  # fill reading, collection needed
    pubs += p.handle(up(GLASS, "34cf20a3d5091da2924ffb62a0", 3, 2))  # fill batch with a gap
    pubs += p.handle(up(GLASS, "4400b80ab396", 4, 3))  # node alarm
    pubs += p.handle(up(GLASS, "444002 3fb596".replace(" ", ""), 4, 4))  # emptied
    pubs += p.handle(up(GLASS, "558020000015003ce78000db5d00", 5, 5))  # status
    pubs += p.handle(up(STRANGER, "20520918cf", 2, 9, name="Bin #7"))  # unknown device
    status_hex, status_port = enc("status", node_kind="fill", reset_cause="power_on", flags=["state_lost"],
                                  firmware_version="1.2.3", wake_count=1, sample_interval_s=900, batch_size=1,
                                  battery_v=3.6, sensor_errors=0, radio_errors=0, config_crc=4660)
    pubs += p.handle(up(STRANGER, status_hex, status_port, 10))  # status of an unknown device
    pubs += p.handle(up(TREE, "20520918cf", 1, 6))  # decode error -> dead letter
    pubs += p.handle(up(TREE, "20520918cf", 2, 7))  # kind mismatch -> dead letter
    for payload in (b"garbage", b'{"deviceInfo": {"devEui": "zz"}, "data": "AA=="}'):
        pubs += p.handle(chirpstack.parse_event(f"application/a/device/{TREE}/event/up", payload, T0))
    pubs += p.handle(tts.parse_event("v3/a@b/devices/d/up", b'{"end_device_ids": {}}', T0))
    downlink, responses = p.command("soil", "tree-0001",
                                    b'{"command": "set_interval", "sample_interval_s": 600, "request_id": "r1"}')
    pubs += responses
    pubs += p.command("soil", "tree-0001", b'{"command": "reboot", "bogus": 1}')[1]
    pubs += p.command("fill", "Nobody Here", b"{}")[1]
    hexpayload, fport = enc("downlink_ack", seq=downlink.seq, command="set_interval", result="applied",
                            config_crc=22870)
    pubs += p.handle(up(TREE, hexpayload, fport, 8))
    p.command("fill", "glass-0002", b'{"command": "request_status"}')
    clock[0] += 4 * 86400
    pubs += p.tick()  # offline, device_silent, expired command
    pubs += p.handle(up(GLASS, "20520918cf", 2, 20, at=datetime.fromtimestamp(clock[0], timezone.utc)))  # online
    pubs += p.command_failed(Downlink(GLASS, 26, b"\x77", request_id="x", seq=3), "LNS unreachable")
    return pubs


PUBLICATIONS = all_publications()


def test_every_published_message_validates_against_its_channel_schema():
    for pub in PUBLICATIONS:
        check(pub.topic, json.loads(pub.payload))


def test_every_kind_of_message_was_produced_and_checked():
    channels = {channel_for(p.topic) for p in PUBLICATIONS}
    assert channels >= {"reading", "state", "availability", "status", "alert", "deadletter", "setResponse",
                        "sensorthingsObservation", "fiwareEntity"}
    payloads = [json.loads(p.payload) for p in PUBLICATIONS]
    readings = [x for x in payloads if x.get("schema") == "citynode/reading/1"]
    assert {r["kind"] for r in readings} == {"soil", "fill"}
    assert {r["message"] for r in readings} == {"soil_reading", "fill_reading", "batch", "alarm"}
    assert any(r["sample_count"] > 1 for r in readings)
    alerts = {(x["alert"], x["state"]) for x in payloads if x.get("schema") == "citynode/alert/1"}
    assert {("collection_needed", "raised"), ("irrigation_needed", "raised"), ("battery_low", "raised"),
            ("sensor_fault", "raised"), ("sensor_fault", "cleared"), ("node_fill_full", "raised"),
            ("node_emptied", "raised"), ("device_silent", "raised"), ("device_silent", "cleared")} <= alerts
    statuses = {x["status"] for x in payloads if x.get("schema") == "citynode/set_response/1"}
    assert statuses == {"queued", "rejected", "applied", "expired", "failed"}
    availability = {x["state"] for x in payloads if x.get("schema") == "citynode/availability/1"}
    assert availability == {"online", "offline"}
    reasons = {x["reason"] for x in payloads if x.get("schema") == "citynode/deadletter/1"}
    assert {"decode_error", "kind_mismatch", "invalid_json", "bad_dev_eui", "no_dev_eui"} <= reasons
    assert any(x.get("type") == "WasteContainer" for x in payloads)
    assert any(x.get("type") == "GreenspaceRecord" for x in payloads)


def test_the_schemas_reject_what_the_bridge_must_never_send():
    reading = next(json.loads(p.payload) for p in PUBLICATIONS if p.topic.endswith("/reading"))
    bad = [dict(reading, battery_v="3.6 V"), dict(reading, battery_v=-999), dict(reading, extra=1),
           dict(reading, time="2026-05-04 09:00:00"), dict(reading, device_id="Tree 1")]
    soil = {k: v for k, v in reading.items()}
    soil["measurements"] = {"fill_pct": 1, "distance_m": 1, "temperature_c": 1}  # fill values on a soil reading
    bad.append(soil)
    schema = validator(deref(deref(DOC["channels"]["reading"]["messages"]["reading"])["payload"]))
    for message in bad:
        assert not schema.is_valid(message), message


def test_topics_the_pipeline_never_produces_match_no_channel():
    for topic in ("citynode/soil/tree-1/readings", "citynode/water/x/reading", "citynode/soil/a/b/reading",
                  "citynode/alerts/soil/x/made_up", "citynode/soil/+/state"):
        assert not any(p.match(topic) for name, p in PATTERNS.items() if name not in ("chirpstackEvent",))


def test_downlink_bodies_sent_to_the_network_servers_match_their_schemas():
    d = Downlink(TREE, 20, b"\x15\x0f", confirmed=True, request_id="r", seq=5)
    check(f"application/17c82e96/device/{TREE}/command/down", chirpstack.downlink_message(d))
    check("v3/app@tenant/devices/tree-0001/down/push", tts.downlink_message(d))


@pytest.mark.parametrize("name, topic", [
    ("chirpstack_up_soil.json", f"application/17c82e96/device/{TREE}/event/up"),
    ("chirpstack_up_fill_defaults_omitted.json", f"application/17c82e96/device/{GLASS}/event/up"),
    ("tts_up_fill.json", "v3/city-containers@city/devices/glass-0002/up"),
])
def test_sample_lns_messages_match_the_input_channel_schemas(name, topic):
    check(topic, json.loads((FIXTURES / name).read_text()))


def test_the_document_is_asyncapi_3_and_all_its_references_resolve():
    assert DOC["asyncapi"].startswith("3.0")
    assert PARAM_PATTERNS["device"] in DOC["components"]["parameters"]["device"]["description"]
    for op in DOC["operations"].values():
        assert op["action"] in ("send", "receive")
        assert deref(op["channel"]) in DOC["channels"].values()
    for channel in DOC["channels"].values():
        for message in channel["messages"].values():
            assert "payload" in deref(message)
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for name, message in DOC["components"]["messages"].items():
        for example in message.get("examples", []):
            assert validator(deref(message["payload"])).is_valid(example["payload"]), (name, example["name"])
