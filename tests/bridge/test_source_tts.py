"""The Things Stack v3: the pure uplink parser (empty fields omitted, hostile input) and the MQTT client against a
real Mosquitto with TTS-style credentials (app@tenant + API key)."""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from citynode.records import Downlink, Rejected, Uplink
from citynode.sources import DownlinkError
from citynode.sources.tts import TTSSettings, TTSSource, downlink_message, parse_event

from brokers import Mosquitto

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=timezone.utc)
GLASS = "ac1f09fffe000002"
TOPIC = "v3/city-containers@city/devices/glass-0002/up"
API_KEY = "NNSXS.SECRETSECRETSECRET.KEYKEYKEY"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def doc(name: str) -> dict:
    return json.loads(fixture(name))


def parse(body: dict | bytes, topic: str = TOPIC):
    return parse_event(topic, body if isinstance(body, bytes) else json.dumps(body).encode(), NOW)


def test_the_documented_uplink_becomes_an_uplink_with_ns_time_and_best_rf():
    item = parse(fixture("tts_up_fill.json"))
    assert isinstance(item, Uplink)
    assert (item.source, item.dev_eui, item.fport, item.fcnt, item.payload.hex()) == ("tts", GLASS, 2, 17, "20520918cf")
    assert item.received_at == datetime(2026, 5, 4, 10, 15, 45, 789585, tzinfo=timezone.utc)  # the NS's time
    assert [(r.gateway_id, r.rssi_dbm, r.snr_db) for r in item.rx] == [("gtw-rathaus", -35, 5),
                                                                        ("gtw-bahnhof", -110, -7.25)]
    assert item.frequency_hz == 868300000 and item.spreading_factor == 7  # frequency arrives as a string
    assert item.device_name == "glass-0002" and item.source_id == "as:up:01E0WZGT6Y7657CPFPE5WEYDSQ"


def test_an_omitted_f_cnt_is_zero():
    item = parse(fixture("tts_up_soil_fcnt0_omitted.json"), "v3/city-trees@city/devices/tree-0001/up")
    assert isinstance(item, Uplink) and item.fcnt == 0 and item.fport == 1


def test_open_source_edition_topics_without_a_tenant_work():
    assert isinstance(parse(fixture("tts_up_fill.json"), "v3/city-containers/devices/glass-0002/up"), Uplink)


@pytest.mark.parametrize("change, reason", [
    (lambda d: d["uplink_message"].pop("f_port"), "mac_only"),
    (lambda d: d["uplink_message"].pop("frm_payload"), "no_payload"),
    (lambda d: d["uplink_message"].update(frm_payload="***"), "invalid_field"),
    (lambda d: d["uplink_message"].update(f_cnt="seventeen"), "invalid_field"),
    (lambda d: d["end_device_ids"].pop("dev_eui"), "no_dev_eui"),
    (lambda d: d["end_device_ids"].update(dev_eui="XYZ"), "bad_dev_eui"),
    (lambda d: d["end_device_ids"].update(device_id="someone-else"), "device_id_mismatch"),
    (lambda d: d.pop("uplink_message"), "invalid_message"),
])
def test_unusable_uplinks_are_rejected_with_a_reason(change, reason):
    body = doc("tts_up_fill.json")
    change(body)
    item = parse(body)
    assert isinstance(item, Rejected) and item.reason == reason and item.raw


def test_a_frequency_that_is_not_a_number_is_left_out():
    body = doc("tts_up_fill.json")
    body["uplink_message"]["settings"]["frequency"] = "eight hundred"
    assert parse(body).frequency_hz is None


def test_rssi_falls_back_to_channel_rssi():
    body = doc("tts_up_fill.json")
    del body["uplink_message"]["rx_metadata"][0]["rssi"]
    assert parse(body).rx[0].rssi_dbm == -35


@pytest.mark.parametrize("name, topic", [("tts_join.json", "v3/city-trees@city/devices/tree-0001/join"),
                                         ("tts_up_fill.json", TOPIC.replace("/up", "/down/ack"))])
def test_messages_without_an_uplink_give_none(name, topic):
    assert parse_event(topic, fixture(name), NOW) is None


def test_downlink_push_json_is_what_tts_queues():
    body = downlink_message(Downlink(GLASS, 23, bytes.fromhex("432081 90".replace(" ", "")), request_id="r1", seq=3))
    assert body == {"downlinks": [{"f_port": 23, "frm_payload": "QyCBkA==", "priority": "NORMAL", "confirmed": False,
                                   "correlation_ids": ["citynode:bridge", "citynode:request:r1", "citynode:seq:3"]}]}


def test_the_api_key_is_the_password_and_never_in_repr():
    s = TTSSettings(application_id="city-containers", tenant_id="city", api_key=API_KEY)
    assert s.username == "city-containers@city" and s.password == API_KEY
    assert API_KEY not in repr(s)
    assert TTSSettings(application_id="app", tenant_id=None).username == "app"
    with pytest.raises(ValueError):
        TTSSettings(application_id="app/#")


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                  st.text(max_size=30))
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                         max_size=5), max_leaves=25)
_uplink_message = st.fixed_dictionaries({}, optional={
    "f_port": st.one_of(st.integers(-5, 300), _leaf),
    "f_cnt": st.one_of(st.integers(-2**64, 2**64), _leaf),
    "frm_payload": st.one_of(st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()), _leaf),
    "received_at": st.one_of(_leaf, st.datetimes(timezones=st.just(timezone.utc)).map(lambda t: t.isoformat())),
    "rx_metadata": st.one_of(_json, st.lists(st.fixed_dictionaries({}, optional={
        "gateway_ids": _json, "rssi": _leaf, "channel_rssi": _leaf, "snr": _leaf}), max_size=3)),
    "settings": st.one_of(_json, st.fixed_dictionaries({}, optional={"frequency": _leaf, "data_rate": _json})),
    "confirmed": _leaf,
})
_message = st.fixed_dictionaries({}, optional={
    "end_device_ids": st.one_of(_json, st.fixed_dictionaries({}, optional={
        "device_id": st.one_of(st.just("glass-0002"), _leaf),
        "dev_eui": st.one_of(st.just("AC1F09FFFE000002"), _leaf)})),
    "correlation_ids": _json,
    "received_at": _leaf,
    "uplink_message": st.one_of(_json, _uplink_message),
})


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=500), _json.map(lambda v: json.dumps(v).encode()),
                 _message.map(lambda v: json.dumps(v).encode())),
       st.sampled_from([TOPIC, "v3/x/devices/glass-0002/up", "v3//devices//up", "v3/x/devices/d/down/sent"]))
def test_any_bytes_give_an_uplink_a_rejection_or_none_and_never_raise(payload, topic):
    item = parse_event(topic, payload, NOW)
    assert item is None or isinstance(item, (Uplink, Rejected))
    if isinstance(item, Uplink):
        assert len(item.dev_eui) == 16 and 1 <= item.fport <= 255 and 0 <= item.fcnt <= 0xFFFFFFFF
        assert NOW - timedelta(days=366) <= item.received_at <= NOW + timedelta(days=2)


def test_hostile_bytes_are_rejected():
    assert parse(b"[" * 100000).reason == "invalid_json"
    assert parse(b'{"uplink_message": {"f_cnt": NaN}}').reason == "invalid_json"
    assert parse(b"\xc3\x28").reason == "invalid_json"


# -- the client ----------------------------------------------------------------------------------------------------


@pytest.fixture
def tts_broker(tmp_path):
    """A broker that, like TTS, only lets in app@tenant with the API key."""
    with Mosquitto(tmp_path / "tts", users={"city-containers@city": API_KEY}) as broker:
        yield broker


def test_uplinks_from_tts_are_emitted_and_downlinks_pushed_with_the_learnt_device_id(tts_broker, caplog):
    caplog.set_level(logging.DEBUG)
    items: queue.Queue = queue.Queue()
    settings_ = TTSSettings(application_id="city-containers", tenant_id="city", api_key=API_KEY, host="127.0.0.1",
                            port=tts_broker.port, tls=False, client_id="bridge-tts-test", reconnect_max_s=2)
    src = TTSSource(settings_, lambda item, ack: (ack(), items.put(item)))
    got: queue.Queue = queue.Queue()
    lns = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tts-itself")
    lns.username_pw_set("city-containers@city", API_KEY)
    subscribed = threading.Event()
    lns.on_subscribe = lambda *a: subscribed.set()
    lns.on_message = lambda c, u, m: got.put((m.topic, json.loads(m.payload)))
    lns.connect("127.0.0.1", tts_broker.port)
    lns.loop_start()
    lns.subscribe("v3/+/devices/+/down/#")
    src.start()
    try:
        assert subscribed.wait(5) and src.wait_connected(10)
        with pytest.raises(DownlinkError):
            src.send_downlink(Downlink(GLASS, 26, b"\x77"))
        lns.publish(TOPIC, fixture("tts_up_fill.json"), qos=0).wait_for_publish(5)
        item = items.get(timeout=10)
        assert isinstance(item, Uplink) and item.fcnt == 17
        src.send_downlink(Downlink(GLASS, 26, b"\x77", request_id="boot-1", seq=7))
        topic, body = got.get(timeout=5)
        assert topic == "v3/city-containers@city/devices/glass-0002/down/push"
        assert body["downlinks"][0]["frm_payload"] == "dw==" and body["downlinks"][0]["priority"] == "NORMAL"
    finally:
        src.stop()
        lns.loop_stop()
        lns.disconnect()
    assert API_KEY not in caplog.text


def test_a_wrong_api_key_never_connects_and_does_not_raise(tts_broker):
    settings_ = TTSSettings(application_id="city-containers", tenant_id="city", api_key="wrong", host="127.0.0.1",
                            port=tts_broker.port, tls=False, client_id="bridge-tts-bad", reconnect_max_s=1)
    src = TTSSource(settings_, lambda item, ack: None)
    src.start()
    try:
        assert not src.wait_connected(1.5) and not src.stats.connected
    finally:
        src.stop()


def test_downlinks_to_devices_listed_in_settings_need_no_uplink_first(mosquitto):
    settings_ = TTSSettings(application_id="app", tenant_id=None, host="127.0.0.1", port=mosquitto.port, tls=False,
                            client_id="bridge-tts-ids", device_ids={"AC1F09FFFE000002": "glass-0002"})
    src = TTSSource(settings_, lambda item, ack: None)
    got: queue.Queue = queue.Queue()
    lns = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tts-os")
    subscribed = threading.Event()
    lns.on_subscribe = lambda *a: subscribed.set()
    lns.on_message = lambda c, u, m: got.put(m.topic)
    lns.connect("127.0.0.1", mosquitto.port)
    lns.loop_start()
    lns.subscribe("v3/#")
    src.start()
    try:
        assert subscribed.wait(5) and src.wait_connected(10)
        src.send_downlink(Downlink(GLASS, 25, b"\x66"))
        assert got.get(timeout=5) == "v3/app/devices/glass-0002/down/push"
    finally:
        src.stop()
        lns.loop_stop()
        lns.disconnect()
