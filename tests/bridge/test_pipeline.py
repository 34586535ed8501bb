"""The pipeline: Uplink | Rejected -> Publications, commands -> downlinks, ticks -> availability."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citynode.core import pipeline as pipeline_module
from citynode.core.pipeline import Pipeline, PipelineSettings
from citynode.core.topics import is_safe_topic
from citynode.records import Downlink, Rejected, RxInfo, Uplink
from citynode.registry import Registry
from citynode.sinks.sensorthings import SensorThingsSettings
from citynode_codec import encode

FIXTURES = Path(__file__).parent / "fixtures"
TREE = "ac1f09fffe000001"
GLASS = "ac1f09fffe000002"
STRANGER = "70b3d57ed0000abc"
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)
TWO_GATEWAYS = (RxInfo("gw-a", -97, 4.5), RxInfo("gw-b", -84, 9.25))


class Clock:
    def __init__(self, t: float = T0.timestamp()):
        self.t = t

    def __call__(self) -> float:
        return self.t


def registry() -> Registry:
    return Registry.load(FIXTURES / "registry.toml")


def make(settings: PipelineSettings | None = None, reg: Registry | None = None) -> tuple[Pipeline, Clock]:
    clock = Clock()
    return Pipeline(reg if reg is not None else registry(), settings or PipelineSettings(), clock=clock), clock


def up(dev=TREE, hexpayload="1007541b40", fport=1, fcnt=42, *, source="chirpstack", at=T0, name=None,
       source_id=None, rx=TWO_GATEWAYS) -> Uplink:
    return Uplink(source, dev, fport, bytes.fromhex(hexpayload), at, fcnt=fcnt, device_name=name, rx=rx,
                  spreading_factor=7, frequency_hz=867100000, source_id=source_id, raw=b'{"lns":"json"}')


def enc(message: str, **data) -> tuple[int, str]:
    fport, frame = encode(message, data)
    return fport, frame.hex()


def by_leaf(pubs, leaf: str) -> list[dict]:
    return [json.loads(p.payload) for p in pubs if p.topic.endswith("/" + leaf) or p.topic.split("/")[1] == leaf]


def topics(pubs) -> list[str]:
    return [p.topic for p in pubs]


# -- readings ------------------------------------------------------------------------------------------------------


def test_a_soil_reading_publishes_availability_one_reading_and_retained_state():
    p, _ = make()
    pubs = p.handle(up())
    assert topics(pubs) == ["citynode/soil/tree-0001/availability", "citynode/soil/tree-0001/reading",
                            "citynode/soil/tree-0001/state"]
    assert [x.retain for x in pubs] == [True, False, True] and all(x.qos == 1 for x in pubs)
    reading = json.loads(pubs[1].payload)
    assert reading["measurements"] == {"vwc_pct": 23.4, "soil_temperature_c": 12.5, "soil_tension_kpa": None,
                                       "soil_ec_us_cm": None}
    assert reading["battery_v"] == 3.6 and reading["flags"] == [] and reading["fcnt"] == 42
    assert reading["device_id"] == "tree-0001" and reading["asset_id"] == "T-0001" and reading["device_known"]
    assert reading["location"] == {"type": "Point", "coordinates": [13.405, 52.52]}
    assert reading["time"] == reading["received_at"] == "2026-05-04T09:00:00.000Z"
    assert reading["rf"] == {"rssi_dbm": -84, "snr_db": 9.25, "gateway_count": 2, "gateway_id": "gw-b",
                             "spreading_factor": 7, "frequency_hz": 867100000}
    assert reading["raw"] == "1007541b40" and reading["source"] == "chirpstack"
    assert pubs[1].key == reading["message_id"]
    assert pubs[0].key == pubs[0].topic and pubs[2].key == pubs[2].topic


def test_the_same_uplink_from_a_second_gateway_or_integration_publishes_nothing():
    p, _ = make()
    assert p.handle(up(rx=(RxInfo("gw-a", -97, 4.5),)))
    assert p.handle(up(rx=(RxInfo("gw-z", -120, -9.0),), source="tts")) == []


def test_a_redelivered_uplink_yields_the_same_message_ids():
    p, _ = make()
    first = p.handle(up(source_id="dedup-1"))
    again = p.handle(up(source_id="dedup-1"))
    keys = lambda pubs: [x.key for x in pubs if not x.retain]  # noqa: E731
    assert keys(again) == keys(first) and keys(first)


def test_message_ids_do_not_depend_on_the_pipeline_instance_or_rf():
    a, _ = make()
    b, _ = make()
    ra = by_leaf(a.handle(up()), "reading")[0]
    rb = by_leaf(b.handle(up(rx=(RxInfo("other", -50, 1.0),))), "reading")[0]
    assert ra["message_id"] == rb["message_id"]


def test_a_frame_counter_reset_with_a_new_payload_is_published():
    p, _ = make()
    p.handle(up(fcnt=0))
    fport, hexpayload = enc("soil_reading", flags=[], vwc_pct=30, soil_temperature_c=10, battery_v=3.6)
    assert by_leaf(p.handle(up(hexpayload=hexpayload, fcnt=0)), "reading")[0]["measurements"]["vwc_pct"] == 30


def test_a_batch_expands_to_one_reading_per_sample_with_its_own_time():
    p, _ = make()
    pubs = p.handle(up(hexpayload="31c3c0280f8275de0043104ace", fport=3))
    readings = by_leaf(pubs, "reading")
    assert len(readings) == 8
    assert [r["sample_index"] for r in readings] == list(range(8)) and {r["sample_count"] for r in readings} == {8}
    assert readings[0]["time"] == "2026-05-04T07:15:00.000Z"  # received_at - 6300 s
    assert readings[-1]["time"] == "2026-05-04T09:00:00.000Z"
    assert [r["measurements"]["vwc_pct"] for r in readings] == [24.8, 24.7, 24.5, 24.4, 24.3, 24.1, 24.0, 23.8]
    assert [r["battery_v"] for r in readings] == [None] * 7 + [3.6]  # the batch's battery is the newest sample's
    assert len({r["message_id"] for r in readings}) == 8
    state = by_leaf(pubs, "state")[0]
    assert state["measurements"]["vwc_pct"] == 23.8 and state["measured_at"] == "2026-05-04T09:00:00.000Z"


def test_a_fill_batch_with_a_gap_publishes_null_not_zero():
    p, _ = make()
    readings = by_leaf(p.handle(up(GLASS, "34cf20a3d5091da2924ffb62a0", fport=3)), "reading")
    assert readings[2]["measurements"]["distance_m"] is None and readings[2]["measurements"]["fill_pct"] is None
    assert all(r["flags"] == ["sensor_fault"] for r in readings)


def test_fill_pct_is_recomputed_from_distance_with_the_registry_geometry_and_says_so():
    p, _ = make()
    reading = by_leaf(p.handle(up(GLASS, "20520918cf", fport=2)), "reading")[0]
    # (1.30 - 0.36) / (1.30 - 0.25) = 0.8952...
    assert reading["measurements"]["fill_pct"] == 89.5
    assert reading["derived"] == {"fill_pct_source": "registry_geometry", "fill_pct_node": 82}


def test_fill_pct_is_clamped_between_0_and_125_percent():
    from citynode.core.enrich import fill_from_distance

    p, _ = make()
    fport, payload = enc("fill_reading", flags=[], fill_pct=0, distance_m=1.5, temperature_c=10, battery_v=3.6)
    assert by_leaf(p.handle(up(GLASS, payload, fport)), "reading")[0]["measurements"]["fill_pct"] == 0.0
    assert fill_from_distance(0.0, 2.0, 1.0) == 125.0
    assert fill_from_distance(None, 2.0, 1.0) is None and fill_from_distance(0.5, 1.0, 1.0) is None


def test_without_geometry_the_nodes_fill_pct_is_published():
    p, _ = make(reg=Registry())
    reading = by_leaf(p.handle(up(GLASS, "20520918cf", fport=2)), "reading")[0]
    assert reading["measurements"]["fill_pct"] == 82
    assert reading["derived"] == {"fill_pct_source": "node", "fill_pct_node": 82}


def test_unknown_devices_still_publish_flagged_under_their_sanitised_lns_name():
    p, _ = make()
    pubs = p.handle(up(STRANGER, "20520918cf", fport=2, name="Bin #7 / Main St+"))
    reading = by_leaf(pubs, "reading")[0]
    assert reading["device_known"] is False and reading["device_id"] == "bin_7_main_st"
    assert all(is_safe_topic(x.topic) for x in pubs)
    assert "citynode/fill/bin_7_main_st/reading" in topics(pubs)


def test_an_unknown_device_cannot_take_a_registered_devices_id():
    p, _ = make()
    reading = by_leaf(p.handle(up(STRANGER, "1007541b40", name="tree-0001")), "reading")[0]
    assert reading["device_id"] == STRANGER


def test_two_unknown_devices_with_the_same_lns_name_do_not_share_an_id():
    # ChirpStack names are unique per application only: the second one publishes under its DevEUI.
    p, _ = make()
    first = by_leaf(p.handle(up(STRANGER, "20520918cf", fport=2, name="bin-7")), "reading")[0]
    other = "70b3d57ed0000abd"
    second = by_leaf(p.handle(up(other, "20520918cf", fport=2, name="bin-7")), "reading")[0]
    assert first["device_id"] == "bin-7" and second["device_id"] == other
    assert by_leaf(p.handle(up(STRANGER, "20520918cf", fport=2, fcnt=43, name="bin-7")), "reading")[0][
        "device_id"] == "bin-7"  # the first keeps its name


def test_an_unknown_device_cannot_take_another_devices_deveui_as_its_name():
    p, _ = make()
    reading = by_leaf(p.handle(up(STRANGER, "20520918cf", fport=2, name="70b3d57ed0000abd")), "reading")[0]
    assert reading["device_id"] == STRANGER


def test_unknown_devices_become_dead_letters_when_configured():
    p, _ = make(PipelineSettings(unknown_devices="deadletter"))
    [pub] = p.handle(up(STRANGER))
    letter = json.loads(pub.payload)
    assert pub.topic == "citynode/deadletter" and letter["reason"] == "unknown_device"
    assert letter["dev_eui"] == STRANGER and letter["payload_hex"] == "1007541b40"


def test_a_payload_the_codec_refuses_is_a_dead_letter_with_the_codecs_error_text():
    p, _ = make()
    [pub] = p.handle(up(hexpayload="20520918cf", fport=1))  # a fill payload on the soil port
    letter = json.loads(pub.payload)
    assert letter["reason"] == "decode_error" and "unsupported format 2" in letter["detail"]
    assert letter["raw"] == "eyJsbnMiOiJqc29uIn0=" and letter["fport"] == 1 and letter["fcnt"] == 42
    assert not pub.retain and pub.key == letter["message_id"]


def test_a_message_of_the_wrong_kind_for_the_registry_is_a_dead_letter():
    p, _ = make()
    [pub] = p.handle(up(TREE, "20520918cf", fport=2))
    assert json.loads(pub.payload)["reason"] == "kind_mismatch"


def test_rejected_items_from_sources_become_dead_letters_with_their_reason():
    p, _ = make()
    [pub] = p.handle(Rejected("serial", "bad_mic", "frame from tree-0003-p2p: bad MIC", T0, "ac1f09fffe000003",
                              b"+EVT:RXP2P:-70:8:C1"))
    letter = json.loads(pub.payload)
    assert letter["reason"] == "bad_mic" and letter["device_id"] == "tree-0003-p2p"
    assert letter["raw"] == "K0VWVDpSWFAyUDotNzA6ODpDMQ=="


def test_an_internal_error_costs_one_dead_letter_not_the_bridge(monkeypatch):
    p, _ = make()

    def boom(fport, payload):
        raise RuntimeError("codec exploded")

    monkeypatch.setattr(pipeline_module, "decode_uplink", boom)
    [pub] = p.handle(up())
    letter = json.loads(pub.payload)
    assert letter["reason"] == "internal_error" and "codec exploded" in letter["detail"]


def test_a_late_older_uplink_does_not_roll_the_state_back():
    p, _ = make()
    p.handle(up(fcnt=50, at=T0))
    fport, payload = enc("soil_reading", flags=[], vwc_pct=30, soil_temperature_c=10, battery_v=3.6)
    pubs = p.handle(up(hexpayload=payload, fcnt=49, at=T0 - timedelta(hours=1)))
    assert by_leaf(pubs, "reading")[0]["measurements"]["vwc_pct"] == 30  # still published as a reading
    assert by_leaf(pubs, "state")[0]["measurements"]["vwc_pct"] == 23.4


def test_cbor_readings_go_through_the_same_path():
    p, _ = make()
    payload = ("a4676d6573736167656c736f696c5f72656164696e676776776" "35f706374fb403766666666666669626174746572795f76fb"
               "400ccccccccccccd72736f696c5f74656d70657261747572655f63f94a40")
    reading = by_leaf(p.handle(up(hexpayload=payload, fport=30)), "reading")[0]
    assert reading["measurements"]["vwc_pct"] == 23.4 and reading["message"] == "soil_reading"


# -- alerts --------------------------------------------------------------------------------------------------------


def test_a_full_container_raises_collection_needed_with_the_devices_own_threshold():
    p, _ = make()
    fport, payload = enc("fill_reading", flags=[], fill_pct=77, distance_m=0.49, temperature_c=10, battery_v=3.6)
    pubs = p.handle(up(GLASS, payload, fport))
    [alert] = by_leaf(pubs, "collection_needed")
    assert alert["state"] == "raised" and alert["threshold"] == 75 and alert["value"] == 77.1
    assert "citynode/alerts/fill/glass-0002/collection_needed" in topics(pubs)
    assert by_leaf(pubs, "state")[0]["alerts"] == ["collection_needed"]


def test_dry_soil_and_low_battery_raise_alerts_once():
    p, _ = make()
    pubs = p.handle(up(hexpayload="1163135cc4500118", fcnt=1))  # 9.8 % VWC, 2.98 V, low_battery
    assert {(a["alert"], a["state"]) for a in by_leaf(pubs, "irrigation_needed") + by_leaf(pubs, "battery_low")} == \
        {("irrigation_needed", "raised"), ("battery_low", "raised")}
    again = p.handle(up(hexpayload="1163135cc4500118", fcnt=2))
    assert not [x for x in again if "/alerts/" in x.topic]


def test_a_redelivered_batch_does_not_flip_an_alert_the_newest_sample_supports():
    p, _ = make()
    fport, payload = enc("batch", node_kind="soil", sample_interval_s=900, flags=[], battery_v=3.6,
                         samples=[{"vwc_pct": 30.0, "soil_temperature_c": 10}, {"vwc_pct": 9.0,
                                                                                 "soil_temperature_c": 10}])
    first = p.handle(up(hexpayload=payload, fport=fport, source_id="mqtt-1"))
    assert [a["state"] for a in by_leaf(first, "irrigation_needed")] == ["raised"]
    again = p.handle(up(hexpayload=payload, fport=fport, source_id="mqtt-1"))  # the LNS broker redelivers
    assert not by_leaf(again, "irrigation_needed")
    assert by_leaf(again, "state")[0]["alerts"] == ["irrigation_needed"]


def test_a_node_alarm_is_a_node_alert_plus_a_reading():
    p, _ = make()
    pubs = p.handle(up(GLASS, "4400b80ab396", fport=4))
    [node] = by_leaf(pubs, "node_fill_full")
    assert node["origin"] == "node" and node["state"] == "raised" and node["value"] == 92
    [reading] = by_leaf(pubs, "reading")
    assert reading["message"] == "alarm" and reading["measurements"]["distance_m"] == 0.21


# -- status and commands -------------------------------------------------------------------------------------------


def test_a_status_uplink_is_retained_and_fills_the_states_firmware():
    p, _ = make()
    fport, payload = enc("status", node_kind="soil", reset_cause="power_on", flags=[], firmware_version="1.2.3",
                         wake_count=1, sample_interval_s=900, batch_size=1, battery_v=3.6, sensor_errors=0,
                         radio_errors=0, config_crc=4660)
    pubs = p.handle(up(hexpayload=payload, fport=fport))
    [status] = [x for x in pubs if x.topic == "citynode/soil/tree-0001/status"]
    assert status.retain and status.key == status.topic
    body = json.loads(status.payload)
    assert body["firmware_version"] == "1.2.3" and body["reset_cause"] == "power_on" and body["config_crc"] == 4660
    assert by_leaf(pubs, "state")[0]["firmware_version"] == "1.2.3"


def command(p, kind, device, **body):
    return p.command(kind, device, json.dumps(body).encode())


def test_a_valid_command_returns_an_encoded_downlink_via_the_last_source_and_a_queued_response():
    p, _ = make()
    p.handle(up(source="tts"))
    downlink, [response] = command(p, "soil", "tree-0001", command="set_interval", sample_interval_s=900,
                                   request_id="abc")
    assert isinstance(downlink, Downlink) and downlink.via == "tts" and downlink.fport == 20
    assert downlink.dev_eui == TREE and downlink.request_id == "abc"
    assert downlink.payload == bytes([0x10 | downlink.seq, 0x0F])
    assert response.topic == "citynode/soil/tree-0001/set/response"
    body = json.loads(response.payload)
    assert (body["status"], body["request_id"], body["seq"], body["command"]) == ("queued", "abc", downlink.seq,
                                                                                  "set_interval")


def test_without_an_uplink_the_downlink_goes_via_the_registrys_source_hint():
    p, _ = make()
    downlink, _ = command(p, "soil", "tree-0003-p2p", command="request_status")
    assert downlink.via == "serial"


def test_the_node_ack_completes_the_request_with_its_config_crc():
    p, _ = make()
    downlink, _ = command(p, "soil", "tree-0001", command="set_interval", sample_interval_s=600, request_id="r-9")
    fport, payload = enc("downlink_ack", seq=downlink.seq, command="set_interval", result="applied", config_crc=4660)
    pubs = p.handle(up(hexpayload=payload, fport=fport, fcnt=43))
    [response] = by_leaf(pubs, "response")
    assert response == {**response, "status": "applied", "request_id": "r-9", "seq": downlink.seq,
                        "config_crc": 4660, "command": "set_interval"}


def test_an_ack_nobody_waits_for_is_still_published_without_a_request_id():
    p, _ = make()
    fport, payload = enc("downlink_ack", seq=3, command="reboot", result="invalid", config_crc=1)
    [response] = by_leaf(p.handle(up(hexpayload=payload, fport=fport)), "response")
    assert response["request_id"] is None and response["status"] == "invalid"


@pytest.mark.parametrize("kind, device, body, error", [
    ("soil", "tree-9999", {"command": "reboot"}, "unknown device"),
    ("fill", "tree-0001", {"command": "reboot"}, "is a soil node"),
    ("soil", "tree-0001", {"command": "set_geometry", "empty_distance_m": 1.2}, "for fill nodes"),
    ("soil", "tree-0001", {"command": "set_interval", "sample_interval_s": 1e9}, "out of range"),
])
def test_invalid_commands_are_rejected_before_anything_is_sent(kind, device, body, error):
    p, _ = make()
    downlink, [response] = p.command(kind, device, json.dumps(body).encode())
    assert downlink is None
    parsed = json.loads(response.payload)
    assert parsed["status"] == "rejected" and error in parsed["error"]
    assert is_safe_topic(response.topic)


def test_the_same_request_id_again_is_answered_but_not_sent_twice():
    p, _ = make()
    first, _ = command(p, "fill", "glass-0002", command="reboot", request_id="once")
    second, [response] = command(p, "fill", "glass-0002", command="reboot", request_id="once")
    assert first is not None and second is None
    assert json.loads(response.payload)["seq"] == first.seq


def test_pending_commands_expire_with_a_response():
    p, clock = make(PipelineSettings(command_ttl_s=600))
    command(p, "fill", "glass-0002", command="reboot", request_id="late")
    clock.t += 601
    [response] = [x for x in p.tick() if x.topic.endswith("set/response")]
    assert json.loads(response.payload)["status"] == "expired"


def test_commands_for_an_unknown_device_heard_under_its_lns_name_are_accepted():
    p, _ = make()
    p.handle(up(STRANGER, "20520918cf", fport=2, name="bin-7"))
    downlink, _ = command(p, "fill", "bin-7", command="request_status")
    assert downlink is not None and downlink.dev_eui == STRANGER


# -- availability --------------------------------------------------------------------------------------------------


def test_silence_makes_a_device_offline_once_with_a_device_silent_alert_and_an_uplink_clears_both():
    p, clock = make()
    p.handle(up(GLASS, "20520918cf", fport=2))  # expected every 3600 s
    clock.t += 3 * 3600 - 1
    assert [x for x in p.tick() if GLASS in x.payload.decode() and "glass" in x.topic] == []
    clock.t += 1
    pubs = [x for x in p.tick() if "glass-0002" in x.topic]
    assert topics(pubs) == ["citynode/fill/glass-0002/availability", "citynode/alerts/fill/glass-0002/device_silent"]
    assert json.loads(pubs[0].payload)["state"] == "offline" and pubs[0].retain
    assert json.loads(pubs[1].payload)["state"] == "raised"
    clock.t += 3600
    assert [x for x in p.tick() if "glass-0002" in x.topic] == []
    back = p.handle(up(GLASS, "20520918cf", fport=2, fcnt=43))
    assert json.loads(back[0].payload)["state"] == "online"
    assert [json.loads(x.payload)["state"] for x in back if x.topic.endswith("device_silent")] == ["cleared"]


def test_registry_devices_never_heard_are_reported_offline_after_the_timeout():
    p, clock = make()
    p.tick()
    clock.t += 3 * 900
    offline = [x.topic for x in p.tick() if x.topic.endswith("availability")]
    assert "citynode/soil/tree-0001/availability" in offline
    assert "citynode/fill/glass-0002/availability" not in offline


# -- optional mappings ---------------------------------------------------------------------------------------------


def test_sensorthings_and_fiware_mappings_add_their_publications_when_switched_on():
    settings = PipelineSettings(sensorthings=SensorThingsSettings(), fiware=True)
    p, _ = make(settings)
    pubs = p.handle(up())
    assert "v1.1/Datastreams(101)/Observations" in topics(pubs)
    assert "v1.1/Datastreams(102)/Observations" in topics(pubs)
    assert "citynode/fiware/GreenspaceRecord/tree-0001" in topics(pubs)
    plain, _ = make()
    assert not any(t.startswith("v1.1/") or "/fiware/" in t for t in topics(plain.handle(up())))


def test_settings_are_validated():
    with pytest.raises(ValueError):
        PipelineSettings(unknown_devices="drop")
    with pytest.raises(ValueError):
        PipelineSettings(base_topic="city/#")
    with pytest.raises(ValueError):
        PipelineSettings(offline_after_intervals=0)


# -- fuzz ----------------------------------------------------------------------------------------------------------

_times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                      timezones=st.just(timezone.utc))
_uplinks = st.builds(
    Uplink,
    source=st.sampled_from(["chirpstack", "tts", "serial"]),
    dev_eui=st.sampled_from([TREE, GLASS, STRANGER, "ac1f09fffe000003"]),
    fport=st.integers(1, 255),
    payload=st.one_of(st.binary(max_size=64), st.sampled_from([bytes.fromhex(h) for h in (
        "1007541b40", "20520918cf", "31c3c0280f8275de0043104ace", "34cf20a3d5091da2924ffb62a0", "4400b80ab396",
        "408005792a60", "558020000015003ce78000db5d00", "6510b2ac", "287fffd8cf")])),
    received_at=_times,
    fcnt=st.one_of(st.none(), st.integers(-2**40, 2**40)),
    device_name=st.one_of(st.none(), st.text(max_size=80)),
    rx=st.lists(st.builds(RxInfo, st.text(max_size=20), st.one_of(st.none(), st.floats(allow_nan=True)),
                          st.one_of(st.none(), st.floats(allow_nan=True))), max_size=3).map(tuple),
    spreading_factor=st.one_of(st.none(), st.integers(-5, 20)),
    frequency_hz=st.one_of(st.none(), st.integers(0, 10**10)),
    raw=st.one_of(st.none(), st.binary(max_size=100)),
)
_rejected = st.builds(Rejected, source=st.sampled_from(["chirpstack", "tts", "serial"]),
                      reason=st.sampled_from(["invalid_json", "bad_mic", "replayed_fcnt"]), detail=st.text(max_size=80),
                      received_at=_times, dev_eui=st.one_of(st.none(), st.just(TREE)),
                      raw=st.one_of(st.none(), st.binary(max_size=40000)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_uplinks, _rejected), min_size=1, max_size=6), st.integers(0, 10**6))
def test_any_sequence_of_items_publishes_safe_topics_and_valid_json_and_rejections_become_dead_letters(items, step):
    p, clock = make()
    for item in items:
        pubs = p.handle(item)
        for pub in pubs:
            assert is_safe_topic(pub.topic) and pub.qos == 1 and pub.key
            json.loads(pub.payload)
        if isinstance(item, Rejected):
            [pub] = pubs
            assert pub.topic == "citynode/deadletter" and json.loads(pub.payload)["reason"] == item.reason
        clock.t += step
        for pub in p.tick():
            assert is_safe_topic(pub.topic)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=30), st.one_of(st.sampled_from(["tree-0001", "glass-0002", "tree-0003-p2p"]),
                                       st.text(max_size=80)),
       st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.dictionaries(st.sampled_from(["command", "request_id", "sample_interval_s", "batch_size",
                                                  "fill_alarm_pct", "empty_distance_m", "confirmed", "seq", "x"]),
                                 st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                                           st.floats(allow_nan=False), st.text(max_size=10),
                                           st.sampled_from(["reboot", "set_interval", "set_geometry",
                                                            "set_batch_size", "set_thresholds"]))).map(
                     lambda d: json.dumps(d).encode())))
def test_any_command_gets_exactly_one_response_and_a_downlink_only_when_queued(kind, device, payload):
    p, _ = make()
    downlink, responses = p.command(kind, device, payload)
    [response] = responses
    assert is_safe_topic(response.topic) and response.topic.endswith("/set/response")
    status = json.loads(response.payload)["status"]
    assert status in ("queued", "rejected")
    assert (downlink is not None) == (status == "queued")
