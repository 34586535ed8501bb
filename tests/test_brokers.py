"""The test broker harness itself: a real Mosquitto that tests can kill and restart, with TLS and passwords."""

from __future__ import annotations

import ssl
import threading

import paho.mqtt.client as mqtt

from brokers import Mosquitto


def _roundtrip(broker: Mosquitto, **auth) -> bytes:
    got = threading.Event()
    box = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if broker.tls:
        c.tls_set(ca_certs=str(broker.certs["ca"]), cert_reqs=ssl.CERT_REQUIRED)
    if auth:
        c.username_pw_set(auth["user"], auth["password"])

    def on_message(client, userdata, msg):
        box["payload"] = msg.payload
        got.set()

    c.on_message = on_message
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        subscribed = threading.Event()
        c.on_subscribe = lambda *a: subscribed.set()
        c.subscribe("t/#", qos=1)
        assert subscribed.wait(5)
        c.publish("t/x", b"hello", qos=1).wait_for_publish(5)
        assert got.wait(5)
        return box["payload"]
    finally:
        c.loop_stop()
        c.disconnect()


def test_broker_relays_a_message(mosquitto):
    assert _roundtrip(mosquitto) == b"hello"


def test_broker_can_be_killed_and_restarted_on_the_same_port(mosquitto):
    port = mosquitto.port
    mosquitto.kill()
    mosquitto.start()
    assert mosquitto.port == port and _roundtrip(mosquitto) == b"hello"


def test_tls_with_passwords_refuses_anonymous_clients(tmp_path):
    with Mosquitto(tmp_path, tls=True, users={"bridge": "s3cret"}) as broker:
        assert _roundtrip(broker, user="bridge", password="s3cret") == b"hello"
        refused = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.tls_set(ca_certs=str(broker.certs["ca"]))
        c.on_connect = lambda client, userdata, flags, reason, props: reason.is_failure and refused.set()
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        try:
            assert refused.wait(5), "an anonymous client was let in"
        finally:
            c.loop_stop()
