"""The emulated network server against a real Mosquitto: what ChirpStack v4 and The Things Stack v3 publish
(shared/reference/lns_formats.md §1.2-1.5, §2.1-2.4), downlinks from MQTT to RX1, and the radio model."""

from __future__ import annotations

import base64
import json
import re
import threading
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
import pytest

from citynode.emulation.air import Position
from citynode.emulation.lns import BrokerConnectError, EmulatedLNS, Gateway, LNSError, LoopbackNetwork
from citynode.emulation.rak3172 import RAK3172, Faults

from brokers import Mosquitto

DEV_EUI = "AC1F09FFFE000001"
EUI = DEV_EUI.lower()
APP = "17c82e96-be03-4f38-aef3-f83d48582d97"
TENANT = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
PROFILE = "14855bf7-d10d-4aee-b618-ebfcb64dc7ad"
EPOCH = 1_750_000_000.0
CS_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}\+00:00$")
TTS_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
ULID = "[0-9A-HJKMNP-TV-Z]{26}"


class Collector:
    """A plain MQTT subscriber to '#' that keeps (topic, JSON) in arrival order."""

    def __init__(self, port: int, **connect):
        self.messages: list[tuple[str, dict]] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-collector")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("#")
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(5), "collector did not subscribe"

    def _on_message(self, client, userdata, msg):
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = {"raw": msg.payload.decode("latin-1")}  # the invalid commands the tests send
        with self._cond:
            self.messages.append((msg.topic, body))
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = 5.0) -> list[tuple[str, dict]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def events(self, suffix: str) -> list[dict]:
        with self._cond:
            return [body for topic, body in self.messages if topic.endswith(suffix)]

    def publish(self, topic: str, body: object) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body)
        self.client.publish(topic, payload).wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class Host:
    """Drives a modem in virtual time; `now` is the virtual epoch the LNS clock reads."""

    def __init__(self, modem: RAK3172):
        self.modem = modem
        self.t = 0

    def now(self) -> float:
        return EPOCH + self.t / 1000

    def send(self, line: str, wait_ms: int = 50) -> str:
        self.modem.write(line.encode() + b"\r\n", self.t)
        return self.run(wait_ms)

    def run(self, ms: int) -> str:
        end, out = self.t + ms, b""
        while (due := self.modem.next_event_ms()) is not None and due <= end:
            self.t = max(self.t, due)
            out += self.modem.read(self.t)
        self.t = end
        return out.decode()

    def until(self, text: str, limit_ms: int = 60_000) -> str:
        out = ""
        while text not in out:
            due = self.modem.next_event_ms()
            assert due is not None and due <= self.t + limit_ms, f"{text!r} never printed; got {out!r}"
            self.t = max(self.t, due)
            out += self.modem.read(self.t).decode()
        return out

    def join(self, dr: int = 5) -> None:
        assert self.send(f"AT+DR={dr}") == "OK\r\n"
        self.send("AT+JOIN")
        assert "+EVT:JOINED" in self.until("+EVT:JOIN")


@pytest.fixture
def collector(mosquitto):
    c = Collector(mosquitto.port)
    yield c
    c.close()


def make_lns(broker: Mosquitto, host_clock, flavour: str = "chirpstack", **kw) -> EmulatedLNS:
    if flavour == "chirpstack":
        kw.setdefault("application_id", APP)
        kw.setdefault("tenant_id", TENANT)
        kw.setdefault("device_profile_id", PROFILE)
    else:
        kw.setdefault("application_id", "app1")
        kw.setdefault("tenant_id", "tenant1")
    return EmulatedLNS("127.0.0.1", broker.port, flavour=flavour, clock=host_clock, **kw)


def iso(epoch: float, zulu: bool) -> str:
    micros = round(epoch * 1e6)
    base = datetime.fromtimestamp(micros // 10**6, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{micros % 10**6:06d}000" + ("Z" if zulu else "+00:00")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def setup(broker, flavour="chirpstack", modem_kw=None, **kw) -> tuple[Host, EmulatedLNS]:
    host = Host(RAK3172(dev_eui=DEV_EUI, booted=True, **(modem_kw or {})))
    lns = make_lns(broker, host.now, flavour, **kw)
    host.modem.network = lns
    return host, lns


# -- ChirpStack v4 ----------------------------------------------------------------------------------------------


def test_chirpstack_first_uplink_publishes_join_then_up_with_default_values_left_out(mosquitto, collector):
    host, lns = setup(mosquitto)
    with lns:
        lns.add_device(DEV_EUI, name="soil-1", tags={"site": "park"})
        host.join()
        host.send("AT+SEND=2:0102")
        host.until("+EVT:TX_DONE")
        messages = collector.wait(2)
    (join_topic, join), (up_topic, up) = messages
    base = f"application/{APP}/device/{EUI}/event/"
    assert (join_topic, up_topic) == (base + "join", base + "up")
    device_info = {"tenantId": TENANT, "tenantName": "citynode", "applicationId": APP,
                   "applicationName": "citynode", "deviceProfileId": PROFILE, "deviceProfileName": "citynode-node",
                   "deviceName": "soil-1", "devEui": EUI, "tags": {"site": "park"}}
    dev_addr = lns.devices[bytes.fromhex(EUI)].dev_addr.hex()
    assert set(join) == {"deduplicationId", "time", "deviceInfo", "devAddr", "regionConfigId"}
    assert join["deviceInfo"] == device_info and join["devAddr"] == dev_addr
    # fCnt 0, adr false and confirmed false are proto3 defaults: ChirpStack leaves them out.
    assert set(up) == {"deduplicationId", "time", "deviceInfo", "devAddr", "dr", "fPort", "data", "rxInfo",
                       "txInfo", "regionConfigId"}
    sent_at = lns.uplinks[0].now_ms
    assert up["time"] == iso(EPOCH + sent_at / 1000, zulu=False) and CS_TIME.match(up["time"])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", up["deduplicationId"])
    assert (up["deviceInfo"], up["devAddr"], up["dr"], up["fPort"], up["data"]) == (device_info, dev_addr, 5, 2,
                                                                                   "AQI=")
    assert up["regionConfigId"] == "eu868"
    (rx,) = up["rxInfo"]
    assert rx["gatewayId"] == "0016c001f153a14c" and rx["crcStatus"] == "CRC_OK"
    assert rx["metadata"] == {"region_config_id": "eu868", "region_common_name": "EU868"}
    assert {"gatewayId", "uplinkId", "rssi", "snr", "context", "metadata", "crcStatus"} <= set(rx)
    assert set(rx) <= {"gatewayId", "uplinkId", "nsTime", "rssi", "snr", "channel", "location", "context",
                       "metadata", "crcStatus"}
    assert isinstance(rx["rssi"], int) and rx["rssi"] < 0 and len(base64.b64decode(rx["context"])) == 4
    assert up["txInfo"]["frequency"] in (868100000, 868300000, 868500000)
    assert up["txInfo"]["modulation"] == {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}}
    assert [(p.topic, p.payload) for p in lns.published] == messages  # the record matches what was received


def test_chirpstack_later_uplink_carries_fcnt_confirmed_and_adr(mosquitto, collector):
    host, lns = setup(mosquitto)
    with lns:
        lns.add_device(DEV_EUI)
        host.join()
        for cmd in ("AT+ADR=1", "AT+CFM=1"):
            host.send(cmd)
        for _ in range(2):
            host.send("AT+SEND=10:AABB")
            assert "+EVT:SEND_CONFIRMED_OK" in host.until("+EVT:SEND_CONFIRMED")
        collector.wait(3)
    second = collector.events("/event/up")[1]
    assert (second["fCnt"], second["confirmed"], second["adr"], second["fPort"]) == (1, True, True, 10)


def test_join_with_the_wrong_app_key_fails_and_chirpstack_logs_uplink_mic(mosquitto, collector):
    host, lns = setup(mosquitto)
    with lns:
        lns.add_device(DEV_EUI, app_key="04FA4E626EF5CF227C969601176275C2")
        host.send("AT+APPKEY=00000000000000000000000000000001")
        host.send("AT+JOIN")
        assert "+EVT:JOIN_FAILED_RX_TIMEOUT" in host.until("+EVT:JOIN")
        collector.wait(1)
    (log_event,) = collector.events("/event/log")
    assert (log_event["level"], log_event["code"]) == ("ERROR", "UPLINK_MIC")
    assert lns.stats["join_mic_error"] == 1


def test_chirpstack_downlink_goes_out_in_rx1_of_the_next_uplink_with_a_txack(mosquitto, collector):
    host, lns = setup(mosquitto)
    with lns:
        lns.add_device(DEV_EUI)
        host.join()
        collector.publish(f"application/{APP}/device/{EUI}/command/down",
                          {"devEui": EUI, "confirmed": False, "fPort": 10, "data": b64(b"\x01\x02\xab")})
        assert lns.wait_handled(1)
        host.send("AT+SEND=2:01")
        out = host.until("+EVT:RX_1")
        collector.wait(4)  # the command itself, join, up, txack
    assert re.search(r"\+EVT:TX_DONE\r\n\+EVT:RX_1:-?\d+:-?\d+:UNICAST:10:0102ab\r\n$", out), out
    (txack,) = collector.events("/event/txack")
    assert set(txack) == {"downlinkId", "time", "deviceInfo", "queueItemId", "gatewayId", "txInfo"}  # fCntDown 0
    assert txack["gatewayId"] == "0016c001f153a14c" and CS_TIME.match(txack["time"])
    assert txack["txInfo"]["modulation"]["lora"]["polarizationInversion"] is True


def test_confirmed_downlink_gets_an_ack_event_when_the_device_acknowledges(mosquitto, collector):
    host, lns = setup(mosquitto)
    with lns:
        lns.add_device(DEV_EUI)
        host.join()
        collector.publish(f"application/{APP}/device/{EUI}/command/down",
                          {"devEui": EUI, "confirmed": True, "fPort": 5, "data": b64(b"\x07")})
        assert lns.wait_handled(1)
        host.send("AT+SEND=2:01")
        host.until("+EVT:RX_1")
        host.until("+EVT:TX_DONE")  # RUI3's automatic empty uplink carries the ACK
        collector.wait(5)
    (txack,) = collector.events("/event/txack")
    (ack,) = collector.events("/event/ack")
    assert set(ack) == {"deduplicationId", "time", "deviceInfo", "queueItemId", "acknowledged"}
    assert ack["acknowledged"] is True and ack["queueItemId"] == txack["queueItemId"]
    assert len(collector.events("/event/up")) == 1  # the empty ACK frame has no FPort: no application uplink


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "not JSON"),
    ({"devEui": "0000000000000001", "fPort": 1, "data": "AQ=="}, "does not match"),
    ({"devEui": EUI, "fPort": 0, "data": "AQ=="}, "fPort must be 1..223"),
    ({"devEui": EUI, "fPort": 224, "data": "AQ=="}, "fPort must be 1..223"),
    ({"devEui": EUI, "fPort": True, "data": "AQ=="}, "fPort must be 1..223"),
    ({"devEui": EUI, "fPort": 1, "data": "not base64!"}, "bad base64"),
    ({"devEui": EUI, "fPort": 1, "object": {"led": 1}}, "no data"),
    ([1, 2], "not a JSON object"),
])
def test_invalid_chirpstack_downlinks_are_rejected_counted_and_survived(mosquitto, collector, body, reason):
    host, lns = setup(mosquitto)
    with lns:
        lns.add_device(DEV_EUI)
        host.join()
        collector.publish(f"application/{APP}/device/{EUI}/command/down", body)
        assert lns.wait_handled(1)
        assert lns.stats["downlink_rejected"] == 1 and reason in lns.rejected[0].reason
        collector.publish(f"application/{APP}/device/{EUI}/command/down",
                          {"devEui": EUI, "fPort": 3, "data": b64(b"\x09")})
        assert lns.wait_handled(2)
        host.send("AT+SEND=2:01")
        assert host.until("+EVT:RX_1").endswith(":UNICAST:3:09\r\n")


def test_downlink_for_an_unknown_device_is_rejected(mosquitto, collector):
    host, lns = setup(mosquitto)
    with lns:
        collector.publish(f"application/{APP}/device/0000000000000009/command/down",
                          {"devEui": "0000000000000009", "fPort": 3, "data": "AQ=="})
        assert lns.wait_handled(1)
    assert "unknown device" in lns.rejected[0].reason


# -- The Things Stack v3 -----------------------------------------------------------------------------------------


def test_tts_join_and_uplink_topics_and_json_shape(mosquitto, collector):
    host, lns = setup(mosquitto, "tts")
    with lns:
        lns.add_device(DEV_EUI, device_id="dev1", join_eui="800000000000000C")
        host.send("AT+APPEUI=800000000000000C")
        host.join()
        host.send("AT+SEND=15:0102")
        host.until("+EVT:TX_DONE")
        messages = collector.wait(2)
    (join_topic, join), (up_topic, up) = messages
    assert join_topic == "v3/app1@tenant1/devices/dev1/join"
    assert up_topic == "v3/app1@tenant1/devices/dev1/up"
    dev_addr = lns.devices[bytes.fromhex(EUI)].dev_addr.hex().upper()
    ids = {"device_id": "dev1", "application_ids": {"application_id": "app1"}, "dev_eui": DEV_EUI,
           "join_eui": "800000000000000C", "dev_addr": dev_addr}
    assert join["end_device_ids"] == ids and set(join["join_accept"]) == {"session_key_id", "received_at"}
    assert set(up) == {"end_device_ids", "correlation_ids", "received_at", "uplink_message"}
    assert up["end_device_ids"] == ids
    assert up["received_at"] == iso(EPOCH + lns.uplinks[0].now_ms / 1000, zulu=True) and TTS_TIME.match(
        up["received_at"])
    assert [c.split(":")[0] + ":" + c.split(":")[1] for c in up["correlation_ids"][:4]] == [
        "as:up", "gs:conn", "gs:uplink", "ns:uplink"]
    assert all(re.fullmatch(r".+:" + ULID, c) for c in up["correlation_ids"])
    msg = up["uplink_message"]
    # f_cnt 0 and confirmed false are "empty fields" and omitted (data-formats: "Empty fields are omitted").
    assert set(msg) == {"session_key_id", "f_port", "frm_payload", "rx_metadata", "settings", "received_at",
                        "consumed_airtime", "network_ids"}
    assert (msg["f_port"], msg["frm_payload"]) == (15, "AQI=")
    assert msg["settings"]["data_rate"] == {"lora": {"bandwidth": 125000, "spreading_factor": 7,
                                                     "coding_rate": "4/5"}}
    assert msg["settings"]["frequency"] in ("868100000", "868300000", "868500000")
    assert re.fullmatch(r"0\.\d{6}s", msg["consumed_airtime"]) and float(msg["consumed_airtime"][:-1]) > 0.04
    (meta,) = msg["rx_metadata"]
    assert meta["gateway_ids"] == {"gateway_id": "eui-0016c001f153a14c", "eui": "0016C001F153A14C"}
    assert {"time", "timestamp", "rssi", "channel_rssi", "snr", "uplink_token", "received_at"} <= set(meta)


def test_tts_downlink_push_is_queued_sent_and_acknowledged(mosquitto, collector):
    host, lns = setup(mosquitto, "tts")
    with lns:
        lns.add_device(DEV_EUI, device_id="dev1")
        host.join()
        collector.publish("v3/app1@tenant1/devices/dev1/down/push", {"downlinks": [
            {"f_port": 15, "frm_payload": "vu8=", "priority": "HIGH", "confirmed": True,
             "correlation_ids": ["my-correlation-id"]}]})
        assert lns.wait_handled(1)
        host.send("AT+SEND=2:01")
        assert host.until("+EVT:RX_1").endswith(":UNICAST:15:beef\r\n")
        host.until("+EVT:TX_DONE")
        collector.wait(6)
    (queued,) = collector.events("/down/queued")
    (sent,) = collector.events("/down/sent")
    (ack,) = collector.events("/down/ack")
    assert queued["downlink_queued"] == {"f_port": 15, "frm_payload": "vu8=", "confirmed": True, "priority": "HIGH",
                                         "correlation_ids": ["my-correlation-id"]}
    assert set(sent["downlink_sent"]) == {"session_key_id", "f_port", "frm_payload", "confirmed", "priority",
                                          "correlation_ids"}  # f_cnt 0 omitted
    assert ack["correlation_ids"][0] == "my-correlation-id"
    assert ack["downlink_ack"]["frm_payload"] == "vu8=" and ack["downlink_ack"]["confirmed"] is True


@pytest.mark.parametrize("body, reason", [
    ({"downlinks": []}, "non-empty"),
    ({"downlinks": [{"f_port": 0, "frm_payload": "AQ=="}]}, "f_port must be 1..223"),
    ({"downlinks": [{"f_port": 1, "frm_payload": "%%"}]}, "bad base64"),
    ({"downlinks": [{"f_port": 1, "frm_payload": "AQ==", "priority": "URGENT"}]}, "priority"),
    ({"downlinks": [{"f_port": 1, "decoded_payload": {"x": 1}}]}, "no frm_payload"),
    ({"nothing": 1}, "non-empty"),
])
def test_invalid_tts_pushes_are_rejected(mosquitto, collector, body, reason):
    host, lns = setup(mosquitto, "tts")
    with lns:
        lns.add_device(DEV_EUI, device_id="dev1")
        collector.publish("v3/app1@tenant1/devices/dev1/down/push", body)
        assert lns.wait_handled(1)
    assert lns.stats["downlink_rejected"] == 1 and reason in lns.rejected[0].reason
    assert not lns.devices[bytes.fromhex(EUI)].queue


def test_tts_allows_qos_0_only():
    with pytest.raises(LNSError, match="QoS 0"):
        EmulatedLNS("127.0.0.1", 1, flavour="tts", qos=1)


# -- radio, outages, duplicates ---------------------------------------------------------------------------------


def test_gateways_hear_by_distance_and_an_outage_loses_the_uplink(mosquitto, collector):
    here = Position(52.5200, 13.4050)
    gateways = [Gateway("0000000000000001", position=Position(52.5209, 13.4050)),  # 100 m
                Gateway("0000000000000002", position=Position(52.5290, 13.4050)),  # 1 km
                Gateway("0000000000000003", position=Position(52.5650, 13.4050))]  # 5 km: out of range
    host, lns = setup(mosquitto, gateways=gateways, seed=1)
    with lns:
        lns.add_device(DEV_EUI, position=here)
        host.join()
        host.send("AT+CFM=1")
        host.send("AT+SEND=2:01")
        assert "+EVT:SEND_CONFIRMED_OK" in host.until("+EVT:SEND_CONFIRMED")
        for gw in ("0000000000000001", "0000000000000002"):
            lns.set_gateway_online(gw, False)
        host.send("AT+SEND=2:02")
        assert "+EVT:SEND_CONFIRMED_FAILED(4)" in host.until("+EVT:SEND_CONFIRMED")
        collector.wait(2)
    (up,) = collector.events("/event/up")
    near, middle = up["rxInfo"]
    assert (near["gatewayId"], middle["gatewayId"]) == ("0000000000000001", "0000000000000002")
    assert near["rssi"] > middle["rssi"]
    assert near["location"] == {"latitude": 52.5209, "longitude": 13.405}  # altitude 0 left out
    assert lns.uplinks[-1].heard_by == () and lns.stats["uplinks_lost"] == 1


def test_duplicate_publication_repeats_the_same_deduplication_id(mosquitto, collector):
    host, lns = setup(mosquitto, duplicate_probability=1.0)
    with lns:
        lns.add_device(DEV_EUI)
        host.join()
        host.send("AT+SEND=2:01")
        host.until("+EVT:TX_DONE")
        collector.wait(3)
    first, second = collector.events("/event/up")
    assert first == second
    assert [p.duplicate for p in lns.published if p.topic.endswith("/up")] == [False, True]


def test_retransmitted_confirmed_uplink_is_acknowledged_but_published_once(mosquitto, collector):
    host, lns = setup(mosquitto, modem_kw={"faults": Faults(ack_failures=1)})
    with lns:
        lns.add_device(DEV_EUI)
        host.join()
        host.send("AT+CFM=1")
        host.send("AT+RETY=1")
        host.send("AT+SEND=2:01")
        assert "+EVT:SEND_CONFIRMED_OK" in host.until("+EVT:SEND_CONFIRMED")
        collector.wait(2)
    assert [u.fcnt for u in lns.uplinks] == [0, 0] and lns.uplinks[1].retransmission
    assert len(collector.events("/event/up")) == 1


def test_device_that_never_joined_is_not_heard(mosquitto):
    host, lns = setup(mosquitto)
    with lns:
        lns.add_device(DEV_EUI)
        host.send("AT+NJM=0")  # ABP on the modem, but the LNS has no ABP session for it
        host.send("AT+SEND=2:01")
        host.until("+EVT:TX_DONE")
    assert lns.stats["uplink_no_session"] == 1 and lns.published == []


def test_abp_device_registered_with_its_address_is_heard_without_join(mosquitto, collector):
    host, lns = setup(mosquitto)
    with lns:
        lns.add_device(DEV_EUI, dev_addr="26011234")
        host.send("AT+NJM=0")
        host.send("AT+SEND=2:01")
        host.until("+EVT:TX_DONE")
        collector.wait(1)
    (up,) = collector.events("/event/up")
    assert up["devAddr"] == "26011234"


# -- connection -----------------------------------------------------------------------------------------------


def test_lns_connects_over_tls_with_credentials_and_refuses_a_wrong_password(tmp_path):
    with Mosquitto(tmp_path / "broker", tls=True, users={"lns": "s3cret"}) as broker:
        with EmulatedLNS("127.0.0.1", broker.port, username="lns", password="s3cret",
                         ca_certs=broker.certs["ca"]) as lns:
            lns.add_device(DEV_EUI)
            modem = RAK3172(dev_eui=DEV_EUI, booted=True, network=lns)
            host = Host(modem)
            host.join()
            host.send("AT+SEND=2:01")
            host.until("+EVT:TX_DONE")
            assert lns.wait_published()
        with pytest.raises(BrokerConnectError) as err:
            EmulatedLNS("127.0.0.1", broker.port, username="lns", password="wrong", ca_certs=broker.certs["ca"],
                        connect_timeout=5)
        assert err.value.port == broker.port


def test_close_disconnects_and_leaves_no_client_thread(mosquitto):
    lns = EmulatedLNS("127.0.0.1", mosquitto.port, client_id="lns-close-test")
    assert any("lns-close-test" in t.name for t in threading.enumerate())
    lns.close()
    lns.close()  # idempotent
    assert not any("lns-close-test" in t.name for t in threading.enumerate())


def test_unreachable_broker_is_a_broker_connect_error():
    from brokers import free_port

    port = free_port()
    with pytest.raises(BrokerConnectError) as err:
        EmulatedLNS("127.0.0.1", port)
    assert (err.value.host, err.value.port) == ("127.0.0.1", port)


def test_unknown_gateway_outage_is_an_error(mosquitto):
    with EmulatedLNS("127.0.0.1", mosquitto.port) as lns, pytest.raises(LNSError):
        lns.set_gateway_online("0000000000000099", False)


def test_loopback_network_delivers_queued_downlinks_without_mqtt():
    net = LoopbackNetwork(rssi=-50, snr=7)
    host = Host(RAK3172(dev_eui=DEV_EUI, booted=True, network=net))
    host.join()
    net.queue_downlink(DEV_EUI, 4, b"\xca\xfe")
    host.send("AT+SEND=2:01")
    assert host.until("+EVT:RX_1").endswith("+EVT:RX_1:-50:7:UNICAST:4:cafe\r\n")
    assert [(u.fcnt, u.port, u.payload) for u in net.uplinks] == [(0, 2, b"\x01")]
