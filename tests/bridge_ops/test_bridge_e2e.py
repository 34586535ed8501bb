"""The real bridge (`citynode bridge` in a subprocess) between two real Mosquitto brokers: an "LNS" broker where
the test publishes ChirpStack v4 and The Things Stack v3 uplinks, and an "output" broker where a platform
subscriber checks that every reading arrives, by message id, with the right values and topics.

Faults: the output broker killed for 10 s, the bridge killed with SIGKILL, both brokers with TLS and passwords,
a platform command turned into a ChirpStack downlink, and two bridge processes on a shared subscription with
duplicate detection in a private redis-server.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from ops_helpers import Subscriber, wait_for

from citynode.core.messages import message_id
from citynode_codec import encode

from brokers import Mosquitto, free_port

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TREE = "ac1f09fffe000001"  # tree-0001 (soil) in examples/registry.toml
GLASS = "ac1f09fffe000002"  # glass-0002 (fill)
TTS_APP, TTS_TENANT = "city-containers", "ttn"


# -- uplinks as the network servers publish them -------------------------------------------------------------


def soil_payload(n: int) -> tuple[int, bytes, float]:
    vwc = round(10 + (n % 300) / 10, 1)
    fport, payload = encode("soil_reading", {"vwc_pct": vwc, "soil_temperature_c": 12.5, "battery_v": 3.6})
    return fport, payload, vwc


def chirpstack_uplink(fcnt: int, dev_eui: str = TREE, app: str = "app-trees") -> tuple[str, bytes, dict]:
    fport, payload, vwc = soil_payload(fcnt)
    body = {"deduplicationId": str(uuid.uuid4()), "time": "2026-05-04T09:34:15.775Z",
            "deviceInfo": {"applicationId": app, "applicationName": "street-trees", "deviceName": "tree-0001",
                           "devEui": dev_eui},
            "devAddr": "00189440", "dr": 5, "fCnt": fcnt, "fPort": fport, "data": base64.b64encode(payload).decode(),
            "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -97, "snr": 4.5}],
            "txInfo": {"frequency": 867100000, "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7}}}}
    expected = {"id": message_id(dev_eui, fcnt, fport, payload, 0), "topic": "citynode/soil/tree-0001/reading",
                "check": ("vwc_pct", vwc)}
    return f"application/{app}/device/{dev_eui}/event/up", json.dumps(body).encode(), expected


def tts_uplink(fcnt: int) -> tuple[str, bytes, dict]:
    fill = 20 + fcnt % 70
    fport, payload = encode("fill_reading", {"fill_pct": fill, "distance_m": 0.36, "temperature_c": 9,
                                             "battery_v": 3.58})
    body = {"end_device_ids": {"device_id": "glass-0002", "application_ids": {"application_id": TTS_APP},
                               "dev_eui": GLASS.upper()},
            "correlation_ids": [f"as:up:{uuid.uuid4().hex}"], "received_at": "2026-05-04T10:15:46.014Z",
            "uplink_message": {"f_port": fport, "f_cnt": fcnt, "frm_payload": base64.b64encode(payload).decode(),
                               "rx_metadata": [{"gateway_ids": {"gateway_id": "gtw-rathaus"}, "rssi": -35, "snr": 5}],
                               "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
                                            "frequency": "868300000"}}}
    expected = {"id": message_id(GLASS, fcnt, fport, payload, 0), "topic": "citynode/fill/glass-0002/reading",
                "check": ("node_fill_pct", fill)}
    return f"v3/{TTS_APP}@{TTS_TENANT}/devices/glass-0002/up", json.dumps(body).encode(), expected


class LNSPublisher:
    """Publishes at QoS 1 to the LNS broker, as ChirpStack / TTS would."""

    def __init__(self, broker: Mosquitto, username: str | None = None, password: str | None = None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"lns-{uuid.uuid4().hex[:6]}")
        if broker.tls:
            self.client.tls_set(ca_certs=str(broker.certs["ca"]))
        if username:
            self.client.username_pw_set(username, password)
        self.client.connect("127.0.0.1", broker.port, 30)
        self.client.loop_start()

    def send(self, message: tuple[str, bytes, dict]) -> dict:
        topic, payload, expected = message
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)
        return expected

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the bridge process ------------------------------------------------------------------------------------


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def write_config(path: Path, sections: dict[str, dict]) -> Path:
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class BridgeProcess:
    """`python -m citynode bridge --config ...` with /metrics and /health on a free port."""

    def __init__(self, workdir: Path, lns: Mosquitto, out: Mosquitto, *, tts: bool = False, instance: str = "",
                 shared_group: str = "", redis_url: str = "", secrets: dict[str, str] | None = None,
                 credentials: dict[str, dict] | None = None, log_level: str = "INFO"):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.metrics_port = free_port()
        credentials = credentials or {}
        chirpstack = {"host": "127.0.0.1", "port": lns.port, "client_id": "e2e-bridge-cs", "qos": 1,
                      "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                      **credentials.get("chirpstack", {"anonymous": True})}
        output = {"host": "127.0.0.1", "port": out.port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
                  **credentials.get("output", {"anonymous": True})}
        for section, broker in ((chirpstack, lns), (output, out)):
            if broker.tls:
                section.update(tls=True, ca_file=str(broker.certs["ca"]))
        sections = {"bridge": {"instance": instance, "shared_group": shared_group, "tick_interval_s": 1.0,
                               "drain_timeout_s": 10},
                    "input.chirpstack": chirpstack}
        if tts:
            sections["input.tts"] = {"host": "127.0.0.1", "port": lns.port, "tls": lns.tls,
                                     "application_id": TTS_APP, "tenant_id": TTS_TENANT, "client_id": "e2e-bridge-tts",
                                     "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                                     **({"ca_file": str(lns.certs["ca"])} if lns.tls else {}),
                                     **credentials.get("tts", {"api_key": "NNSXS.not-checked-by-this-broker"})}
        sections.update({
            "output": output,
            "outbox": {"path": str(workdir / "outbox.sqlite")},
            "registry": {"path": str(EXAMPLES / "registry.toml")},
            "dedup": {"window_s": 600, **({"redis_url": redis_url} if redis_url else {})},
            "metrics": {"port": self.metrics_port},
            "log": {"level": log_level, "format": "json"},
        })
        self.config = write_config(workdir / "bridge.toml", sections)
        self.env = {**os.environ, **(secrets or {})}
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    def start(self) -> BridgeProcess:
        log = self.workdir / f"bridge-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "w") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "citynode", "bridge", "--config", str(self.config)],
                                         stdout=f, stderr=subprocess.STDOUT, env=self.env)
        wait_for(lambda: self._alive() and self.health()[0] == 200, timeout=60, what="a healthy bridge")
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"bridge exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
        return True

    def health(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/health", timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
        except OSError:
            return 0, {}

    def metric(self, prefix: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())


@pytest.fixture
def lns(tmp_path):
    with Mosquitto(tmp_path / "lns") as broker:
        yield broker


@pytest.fixture
def out(tmp_path):
    # Persistent, so the platform subscriber's session (and what is queued for it) survives a broker kill.
    with Mosquitto(tmp_path / "out", persistence=True) as broker:
        yield broker


@pytest.fixture
def bridges():
    started: list[BridgeProcess] = []
    yield started
    for b in started:
        b.stop()


def platform(out: Mosquitto, **kw) -> Subscriber:
    return Subscriber(out.port, ("citynode/#",), client_id=f"platform-{uuid.uuid4().hex[:6]}", clean_session=False,
                      **kw).start()


def readings(sub: Subscriber) -> list:
    return [m for m in sub.messages if m.topic.endswith("/reading")]


def check_every_reading(sub: Subscriber, expected: list[dict], *, allow_redelivery: bool) -> None:
    """Every expected reading arrived on its topic with its values; copies only as the same message id."""
    got = readings(sub)
    by_id: dict[str, list] = {}
    for m in got:
        by_id.setdefault(m.json()["message_id"], []).append(m)
    assert set(by_id) == {e["id"] for e in expected}, "missing or unexpected readings"
    copies = Counter({mid: len(ms) for mid, ms in by_id.items() if len(ms) > 1})
    if not allow_redelivery:
        assert not copies, f"duplicated readings: {copies.most_common(3)}"
    for e in expected:
        first = by_id[e["id"]][0]
        assert all(m.payload == first.payload for m in by_id[e["id"]])  # a copy is the same message
        assert first.topic == e["topic"]
        field, value = e["check"]
        body = first.json()
        actual = body["derived"]["fill_pct_node"] if field == "node_fill_pct" else body["measurements"][field]
        assert actual == value, (e, body)


def all_arrived(sub: Subscriber, expected: list[dict]):
    ids = {e["id"] for e in expected}
    return lambda: ids <= {m.json()["message_id"] for m in readings(sub)}


# -- the tests -------------------------------------------------------------------------------------------


def test_chirpstack_and_tts_uplinks_become_readings_exactly_once_with_their_values(tmp_path, lns, out, bridges):
    sub = platform(out)
    bridge = BridgeProcess(tmp_path / "b", lns, out, tts=True).start()
    bridges.append(bridge)
    pub = LNSPublisher(lns)
    expected = []
    for n in range(1, 121):
        message = chirpstack_uplink(n)
        expected.append(pub.send(message))
        if n % 10 == 0:  # the same frame again through a second path: a duplicate, dropped
            pub.send(chirpstack_uplink(n))
    for n in range(1, 41):
        expected.append(pub.send(tts_uplink(n)))
    wait_for(all_arrived(sub, expected), timeout=60, what="all readings")
    wait_for(lambda: bridge.health()[1]["outbox"]["depth"] == 0, what="the outbox to drain")
    check_every_reading(sub, expected, allow_redelivery=False)
    assert bridge.metric("citynode_dedup_hits_total") == 12
    assert bridge.metric('citynode_uplinks_total{source="chirpstack"}') == 132
    assert bridge.metric('citynode_uplinks_total{source="tts"}') == 40
    state = [m for m in sub.messages if m.topic == "citynode/soil/tree-0001/state"]
    assert state and state[-1].json()["measurements"]["vwc_pct"] == soil_payload(120)[2]
    online = [m for m in sub.messages if m.topic == "citynode/bridge/state"]
    assert online and online[0].json()["state"] == "online"
    assert bridge.stop() == 0
    wait_for(lambda: [m for m in sub.messages if m.topic == "citynode/bridge/state"][-1].json()["state"] ==
             "offline", what="offline after SIGTERM")
    pub.close()
    sub.stop()


def test_an_output_broker_outage_of_10_s_loses_nothing(tmp_path, lns, out, bridges):
    sub = platform(out)
    subscribed_at = time.time()
    bridge = BridgeProcess(tmp_path / "b", lns, out).start()
    bridges.append(bridge)
    pub = LNSPublisher(lns)
    expected = [pub.send(chirpstack_uplink(n)) for n in range(1, 51)]
    wait_for(all_arrived(sub, expected), what="readings before the outage")
    # The broker saves its state every second: wait until the platform's session is on disk, or the kill
    # would take the subscription (not the bridge's data) with it.
    saved = out.dir / "mosquitto.db"
    wait_for(lambda: saved.exists() and saved.stat().st_mtime > subscribed_at + 1, what="the broker's autosave")
    out.kill()
    wait_for(lambda: bridge.health()[0] == 503, what="health to report the outage")
    status, health = bridge.health()
    assert health["output"]["connected"] is False and health["sources"]["chirpstack"]["connected"] is True
    expected += [pub.send(chirpstack_uplink(n)) for n in range(51, 151)]  # keep coming during the outage
    wait_for(lambda: bridge.metric("citynode_uplinks_total") == 150, what="the bridge to take every uplink")
    # Stored, not dropped: at least the 100 new readings and the device's retained state (coalesced to its latest
    # value), plus whatever was still waiting for a PUBACK when the broker died.
    assert bridge.health()[1]["outbox"]["depth"] >= 101
    time.sleep(10)  # the outage the brief asks for: 10 s with the broker down
    out.start()
    wait_for(all_arrived(sub, expected), timeout=60, what="every reading after the restart")
    wait_for(lambda: bridge.health() == (200, bridge.health()[1]) and bridge.health()[1]["outbox"]["depth"] == 0,
             what="healthy again with an empty outbox")
    check_every_reading(sub, expected, allow_redelivery=True)
    assert "connection lost" in bridge.log_text() and bridge.log_text().count("output: connected") >= 2
    pub.close()
    sub.stop()


def test_a_bridge_killed_with_sigkill_and_restarted_loses_nothing(tmp_path, lns, out, bridges):
    sub = platform(out)
    bridge = BridgeProcess(tmp_path / "b", lns, out)
    bridges.append(bridge)
    bridge.start()  # its first connection creates the persistent session on the LNS broker
    pub = LNSPublisher(lns)
    expected = [pub.send(chirpstack_uplink(n)) for n in range(1, 101)]
    bridge.kill()  # mid-stream: some of these are in the outbox, some not yet acknowledged to the LNS broker
    expected += [pub.send(chirpstack_uplink(n)) for n in range(101, 201)]  # while the bridge is down
    bridge.start()
    wait_for(all_arrived(sub, expected), timeout=60, what="every reading after the restart")
    check_every_reading(sub, expected, allow_redelivery=True)
    pub.close()
    sub.stop()


def test_an_outbox_full_of_unsent_readings_survives_sigkill_and_is_sent_after_the_restart(tmp_path, lns, out,
                                                                                          bridges):
    sub = platform(out)
    subscribed_at = time.time()
    bridge = BridgeProcess(tmp_path / "b", lns, out)
    bridges.append(bridge)
    bridge.start()
    pub = LNSPublisher(lns)
    expected = [pub.send(chirpstack_uplink(n)) for n in range(1, 21)]
    wait_for(all_arrived(sub, expected), what="readings before the outage")
    saved = out.dir / "mosquitto.db"
    wait_for(lambda: saved.exists() and saved.stat().st_mtime > subscribed_at + 1, what="the broker's autosave")
    out.kill()
    expected += [pub.send(chirpstack_uplink(n)) for n in range(21, 71)]
    wait_for(lambda: bridge.metric("citynode_uplinks_total") == 70, what="the bridge to store the next 50")
    depth = bridge.health()[1]["outbox"]["depth"]
    assert depth >= 51  # 50 readings + the device's state, acknowledged to the LNS broker, only in the outbox
    bridge.kill()
    expected += [pub.send(chirpstack_uplink(n)) for n in range(71, 101)]  # queued by the LNS broker meanwhile
    out.start()
    bridge.start()
    wait_for(all_arrived(sub, expected), timeout=60, what="every reading after both restarts")
    check_every_reading(sub, expected, allow_redelivery=True)
    assert f"({depth} publication(s) waiting in the outbox)" in bridge.logs[-1].read_text()
    pub.close()
    sub.stop()


def test_tls_and_passwords_on_both_brokers_and_no_secret_in_the_logs(tmp_path, bridges):
    secrets = {"E2E_LNS_PW": "lns-pw-7Hq2", "E2E_TTS_KEY": "NNSXS.tts-key-9Zx", "E2E_OUT_PW": "out-pw-4Kd8"}
    lns_users = {"bridge": secrets["E2E_LNS_PW"], f"{TTS_APP}@{TTS_TENANT}": secrets["E2E_TTS_KEY"],
                 "chirpstack": "cs-publisher-pw"}
    with Mosquitto(tmp_path / "lns", tls=True, users=lns_users) as lns, \
            Mosquitto(tmp_path / "out", tls=True, users={"bridge": secrets["E2E_OUT_PW"], "platform": "pf"}) as out:
        sub = platform(out, tls_ca=str(out.certs["ca"]), username="platform", password="pf")
        credentials = {"chirpstack": {"username": "bridge", "password": {"env": "E2E_LNS_PW"}},
                       "tts": {"api_key": {"env": "E2E_TTS_KEY"}},
                       "output": {"username": "bridge", "password": {"env": "E2E_OUT_PW"}}}
        bridge = BridgeProcess(tmp_path / "b", lns, out, tts=True, secrets=secrets, credentials=credentials,
                               log_level="DEBUG").start()
        bridges.append(bridge)
        pub = LNSPublisher(lns, "chirpstack", "cs-publisher-pw")
        expected = [pub.send(chirpstack_uplink(n)) for n in range(1, 21)]
        expected += [pub.send(tts_uplink(n)) for n in range(1, 11)]
        wait_for(all_arrived(sub, expected), timeout=60, what="readings over TLS")
        check_every_reading(sub, expected, allow_redelivery=False)
        assert bridge.stop() == 0
        logs = bridge.log_text()
        assert logs and not any(secret in logs for secret in secrets.values())
        pub.close()
        sub.stop()


def test_a_platform_command_becomes_a_chirpstack_downlink(tmp_path, lns, out, bridges):
    sub = platform(out)
    downlinks = Subscriber(lns.port, ("application/+/device/+/command/down",)).start()
    bridge = BridgeProcess(tmp_path / "b", lns, out).start()
    bridges.append(bridge)
    pub = LNSPublisher(lns)
    expected = [pub.send(chirpstack_uplink(1))]  # the device is heard: its ChirpStack application is known
    wait_for(all_arrived(sub, expected), what="the first reading")
    platform_client = LNSPublisher(out)  # any MQTT client: the platform publishing its command
    platform_client.client.publish("citynode/soil/tree-0001/set",
                                   b'{"command": "request_status", "request_id": "req-42"}', qos=1).wait_for_publish(5)
    wait_for(lambda: downlinks.messages, what="the downlink on the LNS broker")
    down = downlinks.messages[0]
    assert down.topic == f"application/app-trees/device/{TREE}/command/down"
    body = down.json()
    assert body["devEui"] == TREE and body["fPort"] > 0 and base64.b64decode(body["data"])
    wait_for(lambda: [m for m in sub.messages if m.topic == "citynode/soil/tree-0001/set/response"],
             what="the response")
    response = [m for m in sub.messages if m.topic == "citynode/soil/tree-0001/set/response"][0].json()
    assert response["request_id"] == "req-42" and response["status"] == "queued"
    platform_client.close()
    downlinks.stop()
    pub.close()
    sub.stop()


@pytest.fixture
def redis_url():
    port = free_port()
    proc = subprocess.Popen(["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(port=port)
        wait_for(lambda: _pings(client), what="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_two_bridges_on_a_shared_subscription_split_the_work_and_share_dedup(tmp_path, lns, out, bridges,
                                                                           redis_url):
    sub = platform(out)
    for name in ("a", "b"):
        bridges.append(BridgeProcess(tmp_path / name, lns, out, instance=name, shared_group="citynode",
                                     redis_url=redis_url).start())
    pub = LNSPublisher(lns)
    expected = []
    for n in range(1, 201):
        expected.append(pub.send(chirpstack_uplink(n)))
        if n % 4 == 0:
            pub.send(chirpstack_uplink(n))  # a copy: whichever bridge gets it, Redis says it was seen
    wait_for(all_arrived(sub, expected), timeout=60, what="all readings")
    wait_for(lambda: sum(b.health()[1]["outbox"]["depth"] for b in bridges) == 0, what="outboxes drained")
    check_every_reading(sub, expected, allow_redelivery=False)
    per_bridge = [b.metric('citynode_uplinks_total{source="chirpstack"}') for b in bridges]
    assert all(count > 0 for count in per_bridge) and sum(per_bridge) == 250
    assert sum(b.metric("citynode_dedup_hits_total") for b in bridges) == 50
    states = {m.topic for m in sub.messages if m.topic.startswith("citynode/bridge/state/")}
    assert states == {"citynode/bridge/state/a", "citynode/bridge/state/b"}
    pub.close()
    sub.stop()
