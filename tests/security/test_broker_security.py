"""Security of the deployment as shipped: both brokers with TLS (certificates made at test time), passwords and
the ACLs from examples/mosquitto/; the bridge connects with TLS and credentials to both; a client without the
right cannot command a node; nobody gets in anonymously; and no secret appears in anything the bridge or the
tools print."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "bridge_ops"))
from ops_helpers import (  # noqa: E402
    TREE,
    BridgeProcess,
    LNSPublisher,
    Subscriber,
    all_arrived,
    chirpstack_uplink,
    platform,
    wait_for,
)

from brokers import Mosquitto  # noqa: E402

pytestmark = pytest.mark.slow
EXAMPLES = ROOT / "examples"
SECRETS = {"SEC_LNS_PW": "lns-Pw-7Hq2xx", "SEC_OUT_PW": "out-Pw-4Kd8yy"}
OPERATOR_PW, VIEWER_PW, CHIRPSTACK_PW = "op-Pw-1a2b3c", "view-Pw-9z8y", "cs-Pw-5e6f"


def _client(broker: Mosquitto, user: str | None, password: str | None) -> tuple[mqtt.Client, bool]:
    """Connect over TLS; (client, accepted)."""
    done, accepted = threading.Event(), {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sec-{user}-{time.monotonic_ns()}")
    c.tls_set(ca_certs=str(broker.certs["ca"]))
    if user:
        c.username_pw_set(user, password)

    def on_connect(client, userdata, flags, reason, props):
        accepted["ok"] = not reason.is_failure
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert done.wait(10), "no CONNACK"
    return c, accepted["ok"]


@pytest.fixture
def secured(tmp_path):
    lns_users = {"citynode-bridge": SECRETS["SEC_LNS_PW"], "chirpstack": CHIRPSTACK_PW}
    out_users = {"citynode-bridge": SECRETS["SEC_OUT_PW"], "operator": OPERATOR_PW, "viewer": VIEWER_PW}
    with Mosquitto(tmp_path / "lns", tls=True, users=lns_users, acl=(EXAMPLES / "mosquitto" / "lns.acl").read_text(),
                   extra_conf="max_inflight_messages 1000") as lns, \
            Mosquitto(tmp_path / "out", tls=True, users=out_users,
                      acl=(EXAMPLES / "mosquitto" / "platform.acl").read_text()) as out:
        credentials = {"chirpstack": {"username": "citynode-bridge", "password": {"env": "SEC_LNS_PW"}},
                       "output": {"username": "citynode-bridge", "password": {"env": "SEC_OUT_PW"},
                                  "client_id": "citynode-bridge"}}
        bridge = BridgeProcess(tmp_path / "b", lns, out, secrets=SECRETS, credentials=credentials,
                               log_level="DEBUG").start()
        try:
            yield lns, out, bridge
        finally:
            bridge.stop()


def test_the_bridge_talks_tls_with_credentials_to_both_brokers_and_only_operators_command_nodes(secured):
    lns, out, bridge = secured
    sub = platform(out, tls_ca=str(out.certs["ca"]), username="viewer", password=VIEWER_PW)
    downlinks = Subscriber(lns.port, ("application/+/device/+/command/down",), tls_ca=str(lns.certs["ca"]),
                           username="chirpstack", password=CHIRPSTACK_PW).start()
    pub = LNSPublisher(lns, "chirpstack", CHIRPSTACK_PW)
    try:
        expected = [pub.send(chirpstack_uplink(1))]
        wait_for(all_arrived(sub, expected), what="a reading over TLS with passwords and ACLs")
        command = b'{"command": "request_status", "request_id": "%s"}'
        viewer, ok = _client(out, "viewer", VIEWER_PW)
        assert ok
        viewer.publish("citynode/soil/tree-0001/set", command % b"from-viewer", qos=1).wait_for_publish(5)
        operator, ok = _client(out, "operator", OPERATOR_PW)
        assert ok
        operator.publish("citynode/soil/tree-0001/set", command % b"from-operator", qos=1).wait_for_publish(5)
        wait_for(lambda: downlinks.messages, what="the operator's downlink")
        time.sleep(2)  # give a wrongly accepted viewer command every chance to show up too
        assert len(downlinks.messages) == 1 and downlinks.messages[0].json()["devEui"] == TREE
        responses = [m.json() for m in sub.messages if m.topic.endswith("/set/response")]
        assert [r["request_id"] for r in responses] == ["from-operator"]
        # The viewer cannot publish readings either: the ACL drops it, the platform never sees it.
        viewer.publish("citynode/soil/tree-0001/reading", b'{"message_id": "forged"}', qos=1).wait_for_publish(5)
        time.sleep(1)
        assert not any(b"forged" in m.payload for m in sub.messages)
        for c in (viewer, operator):
            c.loop_stop()
            c.disconnect()
    finally:
        pub.close()
        downlinks.stop()
        sub.stop()


def test_nobody_gets_in_anonymously_or_with_a_wrong_password(secured):
    lns, out, _ = secured
    for broker in (lns, out):
        for user, password in ((None, None), ("citynode-bridge", "guess"), ("operator", OPERATOR_PW[:-1])):
            client, ok = _client(broker, user, password)
            client.loop_stop()
            assert not ok, (broker.port, user)


def test_no_secret_appears_in_anything_the_bridge_prints_even_at_debug(secured):
    lns, out, bridge = secured
    pub = LNSPublisher(lns, "chirpstack", CHIRPSTACK_PW)
    sub = platform(out, tls_ca=str(out.certs["ca"]), username="viewer", password=VIEWER_PW)
    expected = [pub.send(chirpstack_uplink(n)) for n in range(1, 6)]
    wait_for(all_arrived(sub, expected), what="readings")
    pub.close()
    sub.stop()
    bridge.stop()
    text = bridge.log_text()
    assert "DEBUG" in text or '"level": "DEBUG"' in text
    assert not any(secret in text for secret in SECRETS.values())


def test_the_shipped_example_configs_allow_no_anonymous_access():
    bridge = tomllib.loads((EXAMPLES / "bridge.toml").read_text())
    for name, section in [("output", bridge["output"])] + [(f"input.{k}", v) for k, v in bridge["input"].items()]:
        assert not section.get("anonymous", False), name
        if name != "input.serial":
            assert section.get("username") or section.get("api_key") or section.get("cert_file"), name
        for key in ("password", "api_key"):
            if key in section:
                assert isinstance(section[key], dict), f"{name}.{key} must come from env or a file, not the file"
    conf = (EXAMPLES / "mosquitto" / "platform.conf").read_text()
    assert "allow_anonymous false" in conf and "password_file" in conf and "acl_file" in conf
    assert "listener 1883" not in conf and "cafile" in conf


def test_bad_configs_and_commands_never_echo_a_secret(tmp_path):
    """Config errors name the key, never its value; a tool's --json output carries no key."""
    secret = "super-Secret-Pw-123"
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'[output]\nhost = "x"\nport = 0\nusername = "u"\npassword = "{secret}"\n'
                   f'[input.chirpstack]\nhost = "y"\nusername = "u"\npassword = "{secret}"\nqos = 7\n')
    out = subprocess.run([sys.executable, "-m", "citynode", "bridge", "--config", str(cfg), "--check"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "output.port" in out.stdout + out.stderr
    assert secret not in out.stdout + out.stderr
    enc = subprocess.run([sys.executable, "-m", "citynode", "encode", "--json", "set_interval",
                          '{"sample_interval_s": 900}'], capture_output=True, text=True, check=True)
    assert base64.b64decode(json.loads(enc.stdout)["base64"])  # sanity: the tool ran
