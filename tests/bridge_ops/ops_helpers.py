"""Helpers for the bridge_ops and chaos tests: a collecting MQTT subscriber, a scriptable fake broker that withholds
PUBACKs, waiting for a condition (never asserting on elapsed time), uplinks as the network servers publish them,
an LNS publisher, and the real bridge in a subprocess."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from citynode.core.messages import message_id
from citynode_codec import encode

from brokers import free_port


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Polls until condition() is true; fails the test (not a timing assertion) if it never becomes true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> dict:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A QoS 1 subscriber on a real broker that keeps everything it receives."""

    port: int
    topics: tuple[str, ...] = ("#",)
    tls_ca: str | None = None
    username: str | None = None
    password: str | None = None
    protocol: int = mqtt.MQTTv311
    client_id: str = ""
    clean_session: bool = True  # False + a client_id: the broker keeps the session (and queues) while away
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        kwargs = {"clean_session": self.clean_session} if self.protocol == mqtt.MQTTv311 else {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=self.protocol, **kwargs)
        self.client.reconnect_delay_set(0.1, 1)
        if self.tls_ca:
            self.client.tls_set(ca_certs=self.tls_ca, cert_reqs=ssl.CERT_REQUIRED)
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in self.topics])
        self.client.on_subscribe = lambda *a: self._subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def start(self) -> Subscriber:
        self.client.connect("127.0.0.1", self.port, 30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("subscriber did not get its SUBACK")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic_prefix: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.startswith(topic_prefix)]

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def publish(port: int, topic: str, payload: bytes, *, retain: bool = False, tls_ca: str | None = None,
            username: str | None = None, password: str | None = None) -> None:
    """One QoS 1 message, waiting for its PUBACK."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if tls_ca:
        c.tls_set(ca_certs=tls_ca, cert_reqs=ssl.CERT_REQUIRED)
    if username:
        c.username_pw_set(username, password)
    c.connect("127.0.0.1", port, 30)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


# -- a broker that accepts connections and records PUBLISH packets, acknowledging only when told --------


@dataclass
class FakePublish:
    topic: str
    payload: bytes
    mid: int
    dup: bool


class FakeBroker:
    """Speaks just enough MQTT 3.1.1 for one client: CONNACK, SUBACK, records PUBLISHes; sends PUBACK only
    when `ack` is True. `drop()` closes the current connection (the client sees a lost connection)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.ack = False
        self.connections: list[list[FakePublish]] = []
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                self._conn = conn
                self.connections.append([])
                published = self.connections[-1]
            threading.Thread(target=self._serve, args=(conn, published), daemon=True).start()

    def _read(self, conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _serve(self, conn: socket.socket, published: list[FakePublish]) -> None:
        try:
            while True:
                header = self._read(conn, 1)[0]
                length, shift = 0, 0
                while True:
                    b = self._read(conn, 1)[0]
                    length |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                body = self._read(conn, length)
                kind = header >> 4
                if kind == 1:  # CONNECT
                    conn.sendall(b"\x20\x02\x00\x00")
                elif kind == 8:  # SUBSCRIBE: grant QoS 1 to each filter
                    mid = body[:2]
                    filters, i = 0, 2
                    while i < len(body):
                        n = int.from_bytes(body[i:i + 2], "big")
                        i += 2 + n + 1
                        filters += 1
                    conn.sendall(bytes([0x90, 2 + filters]) + mid + b"\x01" * filters)
                elif kind == 10:  # UNSUBSCRIBE
                    conn.sendall(b"\xb0\x02" + body[:2])
                elif kind == 12:  # PINGREQ
                    conn.sendall(b"\xd0\x00")
                elif kind == 3:  # PUBLISH
                    qos = (header >> 1) & 3
                    n = int.from_bytes(body[:2], "big")
                    topic = body[2:2 + n].decode()
                    mid = int.from_bytes(body[2 + n:4 + n], "big") if qos else 0
                    payload = body[4 + n:] if qos else body[2 + n:]
                    with self._lock:
                        published.append(FakePublish(topic, payload, mid, bool(header & 0x08)))
                    if qos and self.ack:
                        conn.sendall(b"\x40\x02" + mid.to_bytes(2, "big"))
                elif kind == 14:  # DISCONNECT
                    return
        except (ConnectionError, OSError):
            return
        finally:
            conn.close()

    def published(self, connection: int = -1, topic_prefix: str = "") -> list[FakePublish]:
        with self._lock:
            if not self.connections:
                return []
            return [p for p in self.connections[connection] if p.topic.startswith(topic_prefix)]

    def drop(self) -> None:
        with self._lock:
            conn = self._conn
        if conn:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.server.close()
        self.drop()


# -- uplinks as the network servers publish them, and the bridge process --------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TREE = "ac1f09fffe000001"  # tree-0001 (soil) in examples/registry.toml
GLASS = "ac1f09fffe000002"  # glass-0002 (fill)
TTS_APP, TTS_TENANT = "city-containers", "ttn"


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

    def __init__(self, broker, username: str | None = None, password: str | None = None):
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

    def __init__(self, workdir: Path, lns, out, *, tts: bool = False, instance: str = "",
                 shared_group: str = "", redis_url: str = "", secrets: dict[str, str] | None = None,
                 credentials: dict[str, dict] | None = None, log_level: str = "INFO",
                 overrides: dict[str, dict] | None = None):
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
        for name, table in (overrides or {}).items():  # extra sections (input.serial) or changed keys
            sections.setdefault(name, {}).update(table)
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



def platform(out, **kw) -> Subscriber:
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


