"""Helpers for the bridge_ops tests: a collecting MQTT subscriber, a scriptable fake broker that withholds
PUBACKs, and waiting for a condition (never asserting on elapsed time)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt


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
