"""The Bridge's own logic, in process, with a fake input source and a real output broker: an input is
acknowledged only after its publications are in the outbox (never when storing fails), stop() drains the
queue, and platform commands become downlinks routed to the right source."""

from __future__ import annotations

import base64
import json
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from ops_helpers import Subscriber, publish, wait_for

from citynode.bridge import Bridge
from citynode.config import ConfigError, parse_config
from citynode.records import Downlink, Rejected, SourceStats, Uplink
from citynode.sinks.outbox import Outbox
from citynode_codec import decode_downlink, encode

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TREE = "ac1f09fffe000001"


class FakeSource:
    """Stands in for ChirpStackSource: the test calls deliver(); acks and downlinks are recorded."""

    def __init__(self, name: str, emit) -> None:
        self.name, self.emit = name, emit
        self.stats = SourceStats(connected=True)
        self.acked: list[int] = []
        self.downlinks: list[Downlink] = []
        self.fail_downlinks = False
        self.depth_at_ack: list[int] = []
        self.outbox = None

    def start(self) -> None: ...

    def stop(self) -> None:
        self.stats.connected = False

    def deliver(self, fcnt: int, *, dev_eui: str = TREE) -> None:
        fport, payload = encode("soil_reading", {"vwc_pct": 20.0 + fcnt / 10, "soil_temperature_c": 12.5,
                                                 "battery_v": 3.6})
        item = Uplink(self.name, dev_eui, fport, payload, datetime.now(timezone.utc), fcnt=fcnt,
                      source_id=f"id-{fcnt}")

        def ack() -> None:
            self.acked.append(fcnt)
            self.depth_at_ack.append(self.outbox.depth if self.outbox else -1)

        self.emit(item, ack)

    def send_downlink(self, d: Downlink) -> None:
        if self.fail_downlinks:
            raise RuntimeError("LNS refused the downlink")
        self.downlinks.append(d)


class BridgeWithFakes(Bridge):
    def _source(self, kind: str, settings) -> FakeSource:
        return FakeSource(kind, self._emit)


def config(tmp_path: Path, out_port: int, **outbox) -> object:
    doc = {"input": {"chirpstack": {"host": "127.0.0.1", "anonymous": True}},
           "output": {"host": "127.0.0.1", "port": out_port, "anonymous": True, "reconnect_min_s": 0.1,
                      "reconnect_max_s": 0.5},
           "outbox": {"path": str(tmp_path / "outbox.sqlite"), **outbox},
           "registry": {"path": str(EXAMPLES / "registry.toml")},
           "bridge": {"drain_timeout_s": 5},
           "metrics": {"enabled": False}}
    return parse_config(doc, "test", {})


@pytest.fixture
def bridge(tmp_path, mosquitto):
    b = BridgeWithFakes(config(tmp_path, mosquitto.port))
    b.sources["chirpstack"].outbox = b.outbox
    yield b
    b.stop()


def test_an_input_is_acknowledged_only_after_its_publications_are_in_the_outbox(tmp_path):
    b = BridgeWithFakes(config(tmp_path, 1))  # an output that never connects: rows stay in the outbox
    source = b.sources["chirpstack"]
    source.outbox = b.outbox
    b.start()
    try:
        for fcnt in (1, 2, 3):
            source.deliver(fcnt)
        wait_for(lambda: source.acked == [1, 2, 3], what="three acks")
        # reading + state per uplink (+ availability for the first): stored before each ack
        assert source.depth_at_ack[0] >= 2 and source.depth_at_ack == sorted(source.depth_at_ack)
        assert b.outbox.depth >= 4
    finally:
        b.stop()


def test_when_the_outbox_cannot_store_the_input_is_not_acknowledged_until_it_can(tmp_path):
    b = BridgeWithFakes(config(tmp_path, 1))
    source = b.sources["chirpstack"]
    b.start()
    try:
        b.outbox._db.execute("PRAGMA query_only = ON")  # the database has become read-only
        source.deliver(1)
        wait_for(lambda: not b.health()[1]["outbox"]["storing"], what="the failure to be noticed")
        assert source.acked == [] and "readonly" in (b.health()[1]["last_error"] or "").replace(" ", "")
        assert b.health()[0] is False
        b.outbox._db.execute("PRAGMA query_only = OFF")  # writable again: the retry stores it, then acks
        wait_for(lambda: source.acked == [1], what="the ack after recovery")
        assert b.outbox.depth >= 2
    finally:
        b.stop()


def test_stop_stores_and_acknowledges_everything_already_queued(tmp_path):
    b = BridgeWithFakes(config(tmp_path, 1))
    source = b.sources["chirpstack"]
    gate = threading.Event()
    original = b.pipeline.handle
    b.pipeline.handle = lambda item: (gate.wait(10), original(item))[1]  # hold the worker while items queue
    b.start()
    for fcnt in range(1, 21):
        source.deliver(fcnt)
    threading.Timer(0.2, gate.set).start()
    b.stop()
    assert source.acked == list(range(1, 21))
    reopened = Outbox(tmp_path / "outbox.sqlite")
    readings = [r for r in reopened.peek(limit=1000) if r.topic.endswith("/reading")]
    assert len(readings) == 20
    reopened.close()


def test_a_rejected_item_is_stored_as_a_dead_letter_and_acknowledged(bridge, mosquitto):
    with Subscriber(mosquitto.port, ("citynode/deadletter",)) as sub:
        bridge.start()
        acked = threading.Event()
        bridge._emit(Rejected("chirpstack", "invalid_json", "not JSON", datetime.now(timezone.utc), raw=b"{"),
                     acked.set)
        assert acked.wait(10)
        wait_for(lambda: sub.messages, what="the dead letter")
    assert sub.messages[0].json()["reason"] == "invalid_json"


def test_a_platform_command_becomes_a_downlink_through_the_source_that_heard_the_device(bridge, mosquitto):
    source = bridge.sources["chirpstack"]
    with Subscriber(mosquitto.port, ("citynode/soil/+/set/response",)) as sub:
        bridge.start()
        wait_for(lambda: bridge.sink.connected, what="output connected")
        source.deliver(1)
        wait_for(lambda: source.acked == [1], what="the uplink")
        publish(mosquitto.port, "citynode/soil/tree-0001/set", b'{"command": "request_status", "request_id": "r7"}')
        wait_for(lambda: source.downlinks, what="the downlink")
        wait_for(lambda: sub.messages, what="the response")
    d = source.downlinks[0]
    assert d.dev_eui == TREE and d.request_id == "r7" and d.via == "chirpstack" and d.payload
    assert sub.messages[0].json()["status"] == "queued"


def test_a_downlink_the_source_refuses_is_answered_as_failed(bridge, mosquitto):
    source = bridge.sources["chirpstack"]
    source.fail_downlinks = True
    with Subscriber(mosquitto.port, ("citynode/soil/+/set/response",)) as sub:
        bridge.start()
        wait_for(lambda: bridge.sink.connected, what="output connected")
        publish(mosquitto.port, "citynode/soil/tree-0001/set", b'{"command": "reboot", "request_id": "r8"}')
        wait_for(lambda: any(m.json()["status"] == "failed" for m in sub.messages), what="the failure response")
    failed = [m.json() for m in sub.messages if m.json()["status"] == "failed"][0]
    assert failed["request_id"] == "r8" and "refused" in failed["error"]


def test_health_reports_each_part_and_turns_503_when_an_input_is_down(bridge):
    bridge.start()
    wait_for(lambda: bridge.health()[0], what="healthy")
    healthy, details = bridge.health()
    assert details["sources"] == {"chirpstack": {"connected": True, "received": 0}}
    assert details["output"]["connected"] is True and details["outbox"]["depth"] == 0
    bridge.sources["chirpstack"].stats.connected = False
    assert bridge.health()[0] is False


def test_scale_out_without_an_instance_name_is_refused(tmp_path):
    doc = {"input": {"chirpstack": {"host": "127.0.0.1", "anonymous": True}},
           "output": {"host": "127.0.0.1", "anonymous": True}, "outbox": {"path": str(tmp_path / "o.sqlite")},
           "registry": {"path": str(EXAMPLES / "registry.toml")}, "metrics": {"enabled": False},
           "bridge": {"shared_group": "g"}, "dedup": {"redis_url": "redis://127.0.0.1:1/0"}}
    with pytest.raises(ConfigError) as err:
        BridgeWithFakes(parse_config(doc, "test", {}))
    assert err.value.key == "bridge.instance"


def test_the_output_section_reaches_the_sink_as_configured_with_the_instance_added(tmp_path):
    output = {"host": "broker.example", "port": 8883, "tls": True, "username": "bridge", "password": "s3cret",
              "client_id": "cn", "base_topic": "city/iot", "qos": 2, "inflight_window": 17, "keepalive_s": 45,
              "protocol": "5", "reconnect_min_s": 0.2, "reconnect_max_s": 9.0, "max_payload_bytes": 4096,
              "republish_retained": False, "give_up_after_s": 60.0}
    doc = {"input": {"chirpstack": {"host": "127.0.0.1", "anonymous": True}}, "output": output,
           "outbox": {"path": str(tmp_path / "o.sqlite")}, "registry": {"path": str(EXAMPLES / "registry.toml")},
           "metrics": {"enabled": False}, "bridge": {"shared_group": "g", "instance": "b1"},
           "dedup": {"redis_url": "redis://127.0.0.1:1/0"}}
    b = BridgeWithFakes(parse_config(doc, "test", {}))
    try:
        got = b.sink.settings
        for key, value in output.items():
            if key == "password":
                assert got.password.reveal() == value
            elif key == "client_id":
                assert got.client_id == "cn-b1"  # each instance its own MQTT session
            else:
                assert getattr(got, key) == value, key
        assert got.instance == "b1" and got.command_share_group == "g"
    finally:
        b.outbox.close()


def test_a_chirpstack_downlink_payload_round_trips_the_codec(bridge, mosquitto):
    # The Downlink handed to the source carries the codec's bytes for the command (request_status, no fields).
    source = bridge.sources["chirpstack"]
    bridge.start()
    wait_for(lambda: bridge.sink.connected, what="output connected")
    publish(mosquitto.port, "citynode/soil/tree-0001/set", json.dumps({"command": "request_status"}).encode())
    wait_for(lambda: source.downlinks, what="the downlink")
    d = source.downlinks[0]
    decoded = decode_downlink(d.fport, d.payload)
    assert decoded["data"]["message"] == "request_status", (base64.b64encode(d.payload), decoded)


def test_a_source_that_reconnects_is_counted(tmp_path):
    cfg = config(tmp_path, 1)
    b = BridgeWithFakes(cfg)
    source = b.sources["chirpstack"]
    b._count_source_reconnects()
    source.stats.connected = False
    b._count_source_reconnects()
    source.stats.connected = True
    b._count_source_reconnects()
    assert b.metrics.reconnects.labels(client="chirpstack")._value.get() == 1
    b.stop()
