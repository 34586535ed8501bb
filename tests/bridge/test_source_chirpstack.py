"""ChirpStack v4: the pure event parser (with omitted defaults and hostile input) and the MQTT client against a real
Mosquitto (manual acknowledgement, persistent session, downlinks, shared subscriptions)."""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from citynode.core.pipeline import Pipeline
from citynode.records import Downlink, Rejected, Uplink
from citynode.registry import Registry
from citynode.sources import DownlinkError
from citynode.sources.chirpstack import ChirpStackSettings, ChirpStackSource, downlink_message, parse_event

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=timezone.utc)
TREE = "ac1f09fffe000001"
TOPIC = f"application/17c82e96-be03-4f38-aef3-f83d48582d97/device/{TREE}/event/up"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def doc(name: str) -> dict:
    return json.loads(fixture(name))


def parse(body: dict | bytes, topic: str = TOPIC):
    return parse_event(topic, body if isinstance(body, bytes) else json.dumps(body).encode(), NOW)


# -- the parser ----------------------------------------------------------------------------------------------------


def test_the_documented_up_event_becomes_an_uplink_with_best_rf_and_ns_time():
    item = parse(fixture("chirpstack_up_soil.json"))
    assert isinstance(item, Uplink)
    assert (item.source, item.dev_eui, item.fport, item.fcnt, item.payload.hex()) == \
        ("chirpstack", TREE, 1, 42, "1007541b40")
    assert item.received_at == datetime(2026, 5, 4, 9, 34, 15, 775023, tzinfo=timezone.utc)
    assert [(r.gateway_id, r.rssi_dbm, r.snr_db) for r in item.rx] == [("0016c001f153a14c", -97, 4.5),
                                                                        ("0016c001f153a14d", -84, 9.25)]
    assert item.spreading_factor == 7 and item.frequency_hz == 867100000 and item.confirmed is False
    assert item.device_name == "tree-0001" and item.source_id == "3ac7e3c4-4401-4b8d-9386-a5c902f9202d"
    assert item.raw == fixture("chirpstack_up_soil.json")


def test_omitted_defaults_mean_fcnt_zero_and_unconfirmed():
    item = parse(fixture("chirpstack_up_fill_defaults_omitted.json"),
                 "application/x/device/ac1f09fffe000002/event/up")
    assert isinstance(item, Uplink) and item.fcnt == 0 and item.confirmed is False and item.fport == 2


def test_null_counter_is_the_default_too():
    body = doc("chirpstack_up_soil.json")
    body["fCnt"] = None
    assert parse(body).fcnt == 0


def test_dev_eui_comes_from_device_info_or_else_the_topic():
    body = doc("chirpstack_up_soil.json")
    del body["deviceInfo"]
    assert parse(body).dev_eui == TREE
    assert parse(doc("chirpstack_up_soil.json"), "application/a/device/not-an-eui/event/up").dev_eui == TREE


@pytest.mark.parametrize("change, reason", [
    (lambda d: d.update(data=None), "no_payload"),
    (lambda d: d.pop("data"), "no_payload"),
    (lambda d: d.update(fPort=0), "mac_only"),
    (lambda d: d.pop("fPort"), "mac_only"),
    (lambda d: d.update(data="%%%not base64"), "invalid_field"),
    (lambda d: d.update(fPort="one"), "invalid_field"),
    (lambda d: d.update(fPort=256), "invalid_field"),
    (lambda d: d.update(fCnt=-1), "invalid_field"),
    (lambda d: d.update(fCnt=2**32), "invalid_field"),
    (lambda d: d.update(fCnt=1.5), "invalid_field"),
    (lambda d: d["deviceInfo"].update(devEui="ac1f09fffe000009"), "dev_eui_mismatch"),
    (lambda d: d["deviceInfo"].update(devEui="zz"), "bad_dev_eui"),
    (lambda d: d["deviceInfo"].update(devEui=TREE + "\n"), "bad_dev_eui"),  # '$' would let this one through
    (lambda d: d.update(joinServerContext={"sessionKeyId": "abc"}), "encrypted"),
])
def test_unusable_up_events_are_rejected_with_a_reason(change, reason):
    body = doc("chirpstack_up_soil.json")
    change(body)
    item = parse(body)
    assert isinstance(item, Rejected) and item.reason == reason and item.source == "chirpstack"
    assert item.raw is not None and item.detail


@pytest.mark.parametrize("payload, reason", [
    (b"", "invalid_json"),
    (b"{not json", "invalid_json"),
    (b"\xff\xfe\xfd", "invalid_json"),
    (b"[1,2,3]", "invalid_message"),
    (b'{"fPort": NaN}', "invalid_json"),
    (b'{"fPort": Infinity}', "invalid_json"),
    (b"[" * 100000, "invalid_json"),
    (b'{"fCnt": 1' + b"0" * 5000 + b"}", "invalid_json"),
    (b" " * (300 * 1024), "too_large"),
])
def test_hostile_bytes_are_rejected_not_raised(payload, reason):
    item = parse(payload)
    assert isinstance(item, Rejected) and item.reason == reason


def test_a_lone_surrogate_in_the_json_becomes_a_replacement_character_and_the_reading_survives():
    # "\ud800" is valid JSON but not text: kept as it is, the reading could never be published as UTF-8.
    body = fixture("chirpstack_up_soil.json").replace(b'"0016c001f153a14d"', b'"\\ud800"')
    item = parse(body)
    assert isinstance(item, Uplink) and item.rx[1].gateway_id == "\ufffd"
    pubs = Pipeline(Registry()).handle(item)
    assert [p.topic.rsplit("/", 1)[1] for p in pubs] == ["availability", "reading", "state"]
    assert json.loads(pubs[1].payload)["rf"]["gateway_id"] == "\ufffd"


def test_huge_floats_that_parse_as_infinity_are_not_numbers():
    body = doc("chirpstack_up_soil.json")
    body["rxInfo"][0]["rssi"] = 1e999
    item = parse(json.dumps(body).replace("Infinity", "1e999").encode())
    assert isinstance(item, Uplink) and item.rx[0].rssi_dbm is None


@pytest.mark.parametrize("time_text", ["1970-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "2026-05-04T13:00:00Z",
                                       "yesterday", 12345,
                                       "2026-13-45T99:99:99Z", "0001-01-01T00:00:00+23:59"])
def test_times_far_off_or_unreadable_fall_back_to_the_bridges_time(time_text):
    body = doc("chirpstack_up_soil.json")
    body["time"] = time_text
    assert parse(body).received_at == NOW


def test_a_network_server_clock_a_few_minutes_ahead_is_still_believed():
    body = doc("chirpstack_up_soil.json")
    body["time"] = "2026-05-04T12:05:00Z"
    assert parse(body).received_at == datetime(2026, 5, 4, 12, 5, tzinfo=timezone.utc)


def test_time_with_an_offset_is_converted_to_utc():
    body = doc("chirpstack_up_soil.json")
    body["time"] = "2026-05-04T11:34:15.5+02:00"
    assert parse(body).received_at == datetime(2026, 5, 4, 9, 34, 15, 500000, tzinfo=timezone.utc)


@pytest.mark.parametrize("name", ["chirpstack_join.json", "chirpstack_status.json", "chirpstack_log.json"])
def test_events_without_an_uplink_give_none(name):
    event = name.split("_")[1].split(".")[0]
    assert parse_event(TOPIC.replace("/up", "/" + event), fixture(name), NOW) is None


def test_a_topic_that_is_not_a_chirpstack_event_is_rejected():
    assert parse_event("application/x/up", b"{}", NOW).reason == "bad_topic"


def test_downlink_json_is_what_chirpstack_enqueues():
    d = Downlink(TREE, 20, b"\x15\x0f", confirmed=True)
    assert downlink_message(d) == {"devEui": TREE, "confirmed": True, "fPort": 20, "data": "FQ8="}


def test_settings_keep_the_password_out_of_repr():
    s = ChirpStackSettings(password="hunter2", username="bridge")
    assert "hunter2" not in repr(s) and s.client_id.startswith("citynode-")


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                  st.text(max_size=30))
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                         max_size=5), max_leaves=25)
_fields = st.fixed_dictionaries({}, optional={
    "time": st.one_of(_leaf, st.datetimes(timezones=st.just(timezone.utc)).map(lambda t: t.isoformat())),
    "deviceInfo": st.one_of(_json, st.fixed_dictionaries({}, optional={
        "devEui": st.one_of(st.just(TREE), st.just("AC1F09FFFE000001"), st.text(max_size=20), _leaf),
        "deviceName": st.one_of(_leaf, st.text(max_size=300))})),
    "fCnt": st.one_of(st.integers(-2**64, 2**64), _leaf),
    "fPort": st.one_of(st.integers(-5, 300), _leaf),
    "data": st.one_of(st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()), _leaf),
    "confirmed": _leaf,
    "rxInfo": st.one_of(_json, st.lists(st.fixed_dictionaries({}, optional={
        "gatewayId": _leaf, "rssi": _leaf, "snr": _leaf}), max_size=4)),
    "txInfo": _json,
    "joinServerContext": _json,
    "deduplicationId": _leaf,
})


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=500), _json.map(lambda v: json.dumps(v).encode()),
                 _fields.map(lambda v: json.dumps(v).encode())),
       st.sampled_from([TOPIC, "application/a/device/zz/event/up", "application/a/device/" + TREE + "/event/join"]))
def test_any_bytes_give_an_uplink_a_rejection_or_none_and_never_raise(payload, topic):
    item = parse_event(topic, payload, NOW)
    assert item is None or isinstance(item, (Uplink, Rejected))
    if isinstance(item, Uplink):
        assert len(item.dev_eui) == 16 and 1 <= item.fport <= 255 and 0 <= item.fcnt <= 0xFFFFFFFF
        assert item.received_at.tzinfo is not None
        assert NOW - timedelta(days=366) <= item.received_at <= NOW + timedelta(days=2)
    if isinstance(item, Rejected):
        assert item.reason and item.detail


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), _fields.map(lambda v: json.dumps(v).encode())))
def test_every_rejected_event_becomes_exactly_one_dead_letter_with_its_reason(payload):
    from citynode.core.pipeline import Pipeline
    from citynode.registry import Registry

    item = parse_event(TOPIC, payload, NOW)
    pubs = Pipeline(Registry(), clock=lambda: NOW.timestamp()).handle(item)
    if isinstance(item, Rejected):
        [pub] = pubs
        letter = json.loads(pub.payload)
        assert pub.topic == "citynode/deadletter" and letter["reason"] == item.reason and letter["detail"]
    else:
        assert all(json.loads(p.payload) for p in pubs)


# -- the client against Mosquitto ----------------------------------------------------------------------------------


class Collector:
    """emit() for tests: keeps (item, ack); acknowledges at once unless told not to."""

    def __init__(self, auto_ack: bool = True):
        self.items: queue.Queue = queue.Queue()
        self.auto_ack = auto_ack

    def __call__(self, item, ack):
        if self.auto_ack:
            ack()
        self.items.put((item, ack))

    def get(self, timeout: float = 10.0):
        return self.items.get(timeout=timeout)

    def empty_after(self, seconds: float) -> bool:
        try:
            self.items.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


def publisher(port: int, protocol=mqtt.MQTTv311) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
                         protocol=protocol)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, topic: str, payload: bytes, qos: int = 1) -> None:
    client.publish(topic, payload, qos=qos).wait_for_publish(timeout=5)


def source_for(broker, collector, **kw) -> ChirpStackSource:
    s = ChirpStackSettings(host="127.0.0.1", port=broker.port, client_id=kw.pop("client_id", "bridge-cs-test"),
                           reconnect_min_s=1, reconnect_max_s=2, **kw)
    return ChirpStackSource(s, collector)


def with_fcnt(fcnt: int) -> bytes:
    body = doc("chirpstack_up_soil.json")
    body["fCnt"] = fcnt
    body["deduplicationId"] = str(uuid.uuid4())
    return json.dumps(body).encode()


def test_uplinks_published_by_chirpstack_are_emitted_and_other_events_only_counted(mosquitto):
    collector = Collector()
    src = source_for(mosquitto, collector)
    src.start()
    pub = publisher(mosquitto.port)
    try:
        assert src.wait_connected(10) and src.stats.connected
        publish(pub, TOPIC.replace("/up", "/join"), fixture("chirpstack_join.json"))
        publish(pub, TOPIC, b"garbage")
        publish(pub, TOPIC, fixture("chirpstack_up_soil.json"))
        first, _ = collector.get()
        second, _ = collector.get()
        assert isinstance(first, Rejected) and first.reason == "invalid_json"
        assert isinstance(second, Uplink) and second.fcnt == 42
        assert src.events["join"] == 1 and src.events["up"] == 2
        assert src.stats.received == 2 and src.stats.rejected == {"invalid_json": 1}
    finally:
        pub.loop_stop()
        pub.disconnect()
        src.stop()


def test_an_uplink_not_acknowledged_is_redelivered_after_a_reconnect_and_an_acknowledged_one_is_not(mosquitto):
    pub = publisher(mosquitto.port)
    lazy = Collector(auto_ack=False)
    src = source_for(mosquitto, lazy)
    src.start()
    assert src.wait_connected(10)
    publish(pub, TOPIC, with_fcnt(1))
    item, _ack = lazy.get()
    assert item.fcnt == 1
    src.stop()  # the bridge went away before its outbox committed: no ack was sent

    diligent = Collector(auto_ack=True)
    src2 = source_for(mosquitto, diligent)
    src2.start()
    try:
        again, _ = diligent.get()
        assert again.fcnt == 1  # redelivered by the broker from the persistent session
        publish(pub, TOPIC, with_fcnt(2))
        assert diligent.get()[0].fcnt == 2
        assert src2.acks["sent"] == 2
    finally:
        src2.stop()

    src3 = source_for(mosquitto, Collector())
    src3.start()
    try:
        assert src3.wait_connected(10)
        publish(pub, TOPIC, with_fcnt(3))
        assert src3.emit.get()[0].fcnt == 3  # nothing old came back before it: 1 and 2 were acknowledged
    finally:
        src3.stop()
        pub.loop_stop()
        pub.disconnect()


def test_uplinks_published_while_the_bridge_is_away_arrive_when_it_returns(mosquitto):
    collector = Collector()
    src = source_for(mosquitto, collector, client_id="bridge-away")
    src.start()
    assert src.wait_connected(10)
    src.stop()
    pub = publisher(mosquitto.port)
    for fcnt in range(10, 15):
        publish(pub, TOPIC, with_fcnt(fcnt))
    src = source_for(mosquitto, collector, client_id="bridge-away")
    src.start()
    try:
        assert sorted(collector.get()[0].fcnt for _ in range(5)) == [10, 11, 12, 13, 14]
    finally:
        src.stop()
        pub.loop_stop()
        pub.disconnect()


def test_an_ack_from_an_earlier_connection_is_not_sent_on_the_new_one(mosquitto):
    lazy = Collector(auto_ack=False)
    src = source_for(mosquitto, lazy, client_id="bridge-stale")
    src.start()
    pub = publisher(mosquitto.port)
    try:
        assert src.wait_connected(10)
        publish(pub, TOPIC, with_fcnt(7))
        _, ack = lazy.get()
        src._client.reconnect()  # the connection drops and comes back
        redelivered, ack2 = lazy.get()
        assert redelivered.fcnt == 7
        ack()
        assert src.acks["stale"] == 1 and src.acks["sent"] == 0
        ack2()
        assert src.acks["sent"] == 1
    finally:
        src.stop()
        pub.loop_stop()
        pub.disconnect()


def test_downlinks_go_to_the_command_topic_of_the_application_the_device_was_heard_in(mosquitto):
    got: queue.Queue = queue.Queue()
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="lns-listener")
    listener.on_message = lambda c, u, m: got.put((m.topic, json.loads(m.payload), m.qos))
    subscribed = threading.Event()
    listener.on_subscribe = lambda *a: subscribed.set()
    listener.connect("127.0.0.1", mosquitto.port)
    listener.loop_start()
    listener.subscribe("application/+/device/+/command/down", qos=1)
    collector = Collector()
    src = source_for(mosquitto, collector)
    src.start()
    pub = publisher(mosquitto.port)
    try:
        assert subscribed.wait(5) and src.wait_connected(10)
        with pytest.raises(DownlinkError):
            src.send_downlink(Downlink(TREE, 20, b"\x15\x0f"))  # not heard yet: application unknown
        publish(pub, TOPIC, fixture("chirpstack_up_soil.json"))
        collector.get()
        src.send_downlink(Downlink(TREE, 20, b"\x15\x0f", confirmed=True, request_id="r", seq=5))
        topic, body, qos = got.get(timeout=5)
        assert topic == f"application/17c82e96-be03-4f38-aef3-f83d48582d97/device/{TREE}/command/down"
        assert body == {"devEui": TREE, "confirmed": True, "fPort": 20, "data": "FQ8="} and qos == 1
    finally:
        src.stop()
        pub.loop_stop()
        pub.disconnect()
        listener.loop_stop()
        listener.disconnect()


def test_a_shared_subscription_spreads_uplinks_over_bridges_without_overlap(mosquitto):
    a, b = Collector(), Collector()
    src_a = source_for(mosquitto, a, client_id="bridge-a", shared_group="citynode")
    src_b = source_for(mosquitto, b, client_id="bridge-b", shared_group="citynode")
    src_a.start()
    src_b.start()
    pub = publisher(mosquitto.port)
    try:
        assert src_a.wait_connected(10) and src_b.wait_connected(10)  # both subscriptions acknowledged
        for fcnt in range(100, 120):
            publish(pub, TOPIC, with_fcnt(fcnt))
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < 20 and time.monotonic() < deadline:
            for c in (a, b):
                try:
                    seen.append((c is a, c.items.get(timeout=0.1)[0].fcnt))
                except queue.Empty:
                    pass
        fcnts = [f for _, f in seen]
        assert sorted(fcnts) == list(range(100, 120))  # each exactly once
        assert {who for who, _ in seen} == {True, False}  # both bridges took a share
    finally:
        src_a.stop()
        src_b.stop()
        pub.loop_stop()
        pub.disconnect()


def test_the_source_reconnects_after_the_broker_restarts(mosquitto):
    collector = Collector()
    src = source_for(mosquitto, collector, client_id="bridge-restart")
    src.start()
    try:
        assert src.wait_connected(10)
        mosquitto.kill()
        deadline = time.monotonic() + 10
        while src.stats.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not src.stats.connected
        mosquitto.start()
        assert src.wait_connected(15)
        pub = publisher(mosquitto.port)
        publish(pub, TOPIC, with_fcnt(99))
        assert collector.get()[0].fcnt == 99
        pub.loop_stop()
        pub.disconnect()
    finally:
        src.stop()
