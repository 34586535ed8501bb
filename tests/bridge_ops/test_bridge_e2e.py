"""The real bridge (`citynode bridge` in a subprocess) between two real Mosquitto brokers: an "LNS" broker where
the test publishes ChirpStack v4 and The Things Stack v3 uplinks, and an "output" broker where a platform
subscriber checks that every reading arrives, by message id, with the right values and topics.

Faults: the output broker killed for 10 s, the bridge killed with SIGKILL, both brokers with TLS and passwords,
a platform command turned into a ChirpStack downlink, and two bridge processes on a shared subscription with
duplicate detection in a private redis-server.
"""

from __future__ import annotations

import base64
import subprocess
import time

import pytest
from ops_helpers import (
    TREE,
    TTS_APP,
    TTS_TENANT,
    BridgeProcess,
    LNSPublisher,
    Subscriber,
    all_arrived,
    check_every_reading,
    chirpstack_uplink,
    platform,
    soil_payload,
    tts_uplink,
    wait_for,
)

from brokers import Mosquitto, free_port

pytestmark = pytest.mark.slow

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
