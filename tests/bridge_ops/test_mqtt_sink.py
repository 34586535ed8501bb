"""The platform publisher against real Mosquitto brokers (and a fake broker that withholds PUBACKs): no loss,
a bounded in-flight window, re-send after a lost connection, bridge state with LWT, retained state
re-published after a broker restart, TLS and passwords, commands."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from ops_helpers import FakeBroker, Subscriber, publish, wait_for

from citynode.config import Secret
from citynode.records import Publication
from citynode.sinks.mqtt import MqttSink, MqttSinkSettings
from citynode.sinks.outbox import Outbox

from brokers import Mosquitto


def reading(n: int, device: str = "tree-1") -> Publication:
    return Publication(f"citynode/soil/{device}/reading", json.dumps({"message_id": f"m{n}", "n": n}).encode(),
                       key=f"m{n}")


def state(device: str, value: int) -> Publication:
    topic = f"citynode/soil/{device}/state"
    return Publication(topic, json.dumps({"vwc_pct": value}).encode(), retain=True, key=topic)


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def make_sink(outbox: Outbox, port: int, **kw) -> MqttSink:
    kw.setdefault("reconnect_min_s", 0.1)
    kw.setdefault("reconnect_max_s", 0.5)
    return MqttSink(MqttSinkSettings(host="127.0.0.1", port=port, **kw), outbox, version="test")


def test_every_row_is_published_once_and_deleted_after_its_puback(mosquitto, outbox):
    with Subscriber(mosquitto.port, ("citynode/soil/#",)) as sub:
        for n in range(300):
            outbox.add([reading(n)])
        sink = make_sink(outbox, mosquitto.port, inflight_window=16)
        sink.start()
        try:
            wait_for(lambda: len(sub.on("citynode/soil/")) >= 300 and outbox.depth == 0, what="300 readings")
        finally:
            sink.stop()
    ids = [m.json()["message_id"] for m in sub.on("citynode/soil/")]
    assert ids == [f"m{n}" for n in range(300)]  # in order, each once
    assert outbox.stats.published == 300


def test_never_more_publishes_in_flight_than_the_window_and_unacked_rows_are_resent_after_a_lost_connection(outbox):
    broker = FakeBroker()
    for n in range(50):
        outbox.add([reading(n)])
    sink = make_sink(outbox, broker.port, inflight_window=8)
    sink.start()
    try:
        # The window counts every un-acknowledged publish: the retained "online" state and 7 readings.
        wait_for(lambda: len(broker.published(0)) == 8, what="a full window")
        # No PUBACK comes, so nothing more may be sent however long we wait for it.
        assert not sink_sends_more(broker, 0, 8)
        first = broker.published(0, "citynode/soil/")
        assert len(first) == 7 and outbox.depth == 50
        broker.ack = True
        broker.drop()
        wait_for(lambda: outbox.depth == 0, what="the outbox to drain after the reconnect")
        second = broker.published(1, "citynode/soil/")
        # The same rows again, first, with the same payloads (so the platform can recognise a duplicate)...
        assert [p.payload for p in second[:7]] == [p.payload for p in first]
        # ...as fresh publishes of a fresh client, not paho's DUP re-sends (paho #492), and each row once.
        assert not any(p.dup for p in second)
        assert [json.loads(p.payload)["n"] for p in second] == list(range(50))
    finally:
        sink.stop(drain_timeout_s=0)
        broker.close()


def sink_sends_more(broker: FakeBroker, connection: int, count: int) -> bool:
    try:
        wait_for(lambda: len(broker.published(connection)) > count, timeout=1.0)
        return True
    except AssertionError:
        return False


def test_rows_added_while_the_broker_is_down_arrive_after_it_restarts_and_nothing_is_lost(tmp_path, outbox):
    with Mosquitto(tmp_path / "persistent", persistence=True) as broker:
        # A platform subscriber whose session the broker keeps across its own restart.
        sub = Subscriber(broker.port, ("citynode/soil/#",), client_id="platform", clean_session=False).start()
        subscribed_at = time.time()
        sink = make_sink(outbox, broker.port, inflight_window=32)
        sink.start()
        try:
            for n in range(100):
                outbox.add([reading(n)])
            wait_for(lambda: outbox.depth == 0, what="first batch")
            saved = broker.dir / "mosquitto.db"
            wait_for(lambda: saved.exists() and saved.stat().st_mtime > subscribed_at + 1, what="autosave")
            broker.kill()
            wait_for(lambda: not sink.connected, what="the sink to notice the outage")
            for n in range(100, 300):
                outbox.add([reading(n)])
            assert outbox.depth == 200
            broker.start()
            wait_for(lambda: outbox.depth == 0, what="the backlog to drain after the restart")
            wait_for(lambda: {m.json()["n"] for m in sub.on("citynode/soil/")} >= set(range(300)),
                     what="every reading")
        finally:
            sink.stop()
            sub.stop()


def test_bridge_state_is_online_while_connected_and_offline_after_a_clean_stop(mosquitto, outbox):
    sink = make_sink(outbox, mosquitto.port)
    sink.start()
    wait_for(lambda: sink.connected, what="connect")
    with Subscriber(mosquitto.port, ("citynode/bridge/state",)) as sub:
        wait_for(lambda: sub.on("citynode/bridge/state"), what="retained online")
        online = sub.on("citynode/bridge/state")[0]
        assert online.retain and online.json()["state"] == "online" and online.json()["version"] == "test"
        sink.stop()
        wait_for(lambda: any(m.json()["state"] == "offline" for m in sub.on("citynode/bridge/state")),
                 what="offline")
    with Subscriber(mosquitto.port, ("citynode/bridge/state",)) as late:
        wait_for(lambda: late.on("citynode/bridge/state"), what="retained state for a late subscriber")
        assert late.on("citynode/bridge/state")[0].json()["state"] == "offline"
        assert late.on("citynode/bridge/state")[0].json()["reason"] == "stopped"


def test_the_bridge_state_is_published_again_on_every_reconnect(mosquitto, outbox):
    sink = make_sink(outbox, mosquitto.port)
    sink.start()
    try:
        wait_for(lambda: sink.connected, what="connect")
        mosquitto.kill()
        wait_for(lambda: not sink.connected, what="outage noticed")
        mosquitto.start()
        with Subscriber(mosquitto.port, ("citynode/bridge/state",)) as sub:
            wait_for(lambda: any(m.json()["state"] == "online" for m in sub.on("citynode/bridge/state")),
                     what="online after the restart")
    finally:
        sink.stop()


def test_retained_device_state_is_republished_after_a_broker_restart_that_lost_it(mosquitto, outbox, caplog):
    sink = make_sink(outbox, mosquitto.port)
    sink.start()
    try:
        outbox.add([state("tree-1", 20), reading(1)])
        outbox.add([state("tree-1", 21), state("tree-2", 30)])
        wait_for(lambda: outbox.depth == 0, what="states published")
        mosquitto.kill()  # not persistent: every retained message is gone
        wait_for(lambda: not sink.connected, what="outage noticed")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="citynode.sinks.mqtt"):
            mosquitto.start()
            wait_for(lambda: any("re-published 2 retained" in r.getMessage() for r in caplog.records),
                     what="re-publish")
            wait_for(lambda: sink.inflight == 0, what="the re-published states to be acknowledged")
        with Subscriber(mosquitto.port, ("citynode/soil/+/state",)) as late:
            wait_for(lambda: len(late.on("citynode/soil/")) == 2, what="two retained states")
            got = {m.topic: m.json() for m in late.on("citynode/soil/")}
        assert got == {"citynode/soil/tree-1/state": {"vwc_pct": 21}, "citynode/soil/tree-2/state": {"vwc_pct": 30}}
        assert all(m.retain for m in late.on("citynode/soil/"))
    finally:
        sink.stop()


def test_retained_state_is_not_republished_when_the_broker_kept_it(tmp_path, outbox, caplog):
    with Mosquitto(tmp_path / "persistent", persistence=True) as broker:
        sink = make_sink(outbox, broker.port)
        sink.start()
        try:
            outbox.add([state("tree-1", 20)])
            wait_for(lambda: outbox.depth == 0, what="state published")
            with caplog.at_level(logging.INFO, logger="citynode.sinks.mqtt"):
                broker.restart()  # SIGTERM: Mosquitto saves its retained messages
                wait_for(lambda: any("kept its retained" in r.getMessage() for r in caplog.records),
                         what="the check after the reconnect")
            assert not any("re-publishing" in r.getMessage() for r in caplog.records)
        finally:
            sink.stop()


def test_rows_with_an_unsafe_topic_are_never_published_and_are_counted(mosquitto, outbox):
    with Subscriber(mosquitto.port, ("#",)) as sub:
        outbox.add([Publication("citynode/soil/+/reading", b"bad"), Publication("citynode/soil/#", b"bad"),
                    reading(1)])
        sink = make_sink(outbox, mosquitto.port)
        sink.start()
        try:
            wait_for(lambda: outbox.depth == 0, what="outbox drained")
            wait_for(lambda: sub.on("citynode/soil/tree-1/reading"), what="the good reading")
        finally:
            sink.stop()
    assert not [m for m in sub.messages if m.payload == b"bad"]
    assert sink.metrics.dropped.labels(reason="unsafe_topic")._value.get() == 2


def test_platform_commands_on_the_set_topic_reach_the_callback(mosquitto, outbox):
    got: list[tuple[str, str, bytes]] = []
    done = threading.Event()

    def on_command(kind: str, device: str, payload: bytes) -> None:
        got.append((kind, device, payload))
        done.set()

    sink = MqttSink(MqttSinkSettings(port=mosquitto.port), outbox, on_command=on_command, version="t")
    sink.start()
    try:
        wait_for(lambda: sink.connected, what="connect")
        wait_for(lambda: (publish(mosquitto.port, "citynode/soil/tree-7/set", b'{"interval_s":900}'),
                          done.wait(0.5))[1], what="command delivered")
    finally:
        sink.stop()
    assert got[0] == ("soil", "tree-7", b'{"interval_s":900}')


def test_tls_with_a_password_connects_and_a_wrong_password_is_refused_and_reported(tmp_path, outbox):
    with Mosquitto(tmp_path / "tls", tls=True, users={"bridge": "right-pw"}) as broker:
        ca = str(broker.certs["ca"])
        with Subscriber(broker.port, ("citynode/#",), tls_ca=ca, username="bridge", password="right-pw") as sub:
            wrong = make_sink(outbox, broker.port, tls=True, ca_file=ca, username="bridge",
                              password=Secret("wrong-pw"))
            wrong.start()
            wait_for(lambda: wrong.last_error and "refused" in wrong.last_error, what="refusal")
            assert not wrong.connected
            wrong.stop(drain_timeout_s=0)
            outbox.add([reading(1)])
            sink = make_sink(outbox, broker.port, tls=True, ca_file=ca, username="bridge",
                             password=Secret("right-pw"))
            sink.start()
            try:
                wait_for(lambda: sub.on("citynode/soil/"), what="reading over TLS")
            finally:
                sink.stop()


def test_tls_refuses_a_broker_whose_certificate_the_ca_did_not_sign(tmp_path, outbox):
    from brokers import make_certificates

    other_ca = make_certificates(tmp_path / "other")["ca"]
    with Mosquitto(tmp_path / "tls", tls=True, users={"bridge": "pw"}) as broker:
        sink = make_sink(outbox, broker.port, tls=True, ca_file=str(other_ca), username="bridge",
                         password=Secret("pw"))
        sink.start()
        try:
            wait_for(lambda: sink.last_error and "certificate" in sink.last_error.lower(), what="TLS failure")
            assert not sink.connected
        finally:
            sink.stop(drain_timeout_s=0)


def test_the_password_is_not_in_the_settings_repr():
    settings = MqttSinkSettings(username="bridge", password=Secret("hunter2"))
    assert "hunter2" not in repr(settings)


def test_stop_drains_the_outbox_while_connected(mosquitto, outbox):
    sink = make_sink(outbox, mosquitto.port, inflight_window=4)
    sink.start()
    wait_for(lambda: sink.connected, what="connect")
    with Subscriber(mosquitto.port, ("citynode/soil/#",)) as sub:
        outbox.add([reading(n) for n in range(200)])
        sink.stop(drain_timeout_s=30)
        assert outbox.depth == 0
        wait_for(lambda: len(sub.on("citynode/soil/")) == 200, what="all 200")


def test_with_give_up_after_s_the_sink_reports_fatal_when_the_broker_stays_unreachable(outbox):
    from brokers import free_port

    sink = make_sink(outbox, free_port(), give_up_after_s=0.3, reconnect_min_s=0.05, reconnect_max_s=0.1)
    sink.start()
    try:
        assert sink.finished.wait(30)
        assert sink.fatal and "no connection to the output broker" in sink.fatal and "refused" in sink.fatal
    finally:
        sink.stop(drain_timeout_s=0)
