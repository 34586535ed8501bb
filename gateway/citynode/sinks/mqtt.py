"""The platform publisher: drains the outbox to the city's MQTT broker, QoS 1, never losing a row.

One thread owns one paho client (VERSION2 callbacks, clean session) and drives it with its own select()
loop, so every callback runs in that thread and needs no lock. The algorithm (perf_reliability.md §1b):

- Bounded in-flight window. At most `inflight_window` publishes are un-acknowledged at any time, tracked by
  our own {mid: row} map; paho's queue never holds more, so Mosquitto's per-client limits are not hit and
  paho's 16-bit message ids never wrap (the window is capped at 65,535 by the config).
- Delete on PUBACK. A row leaves the outbox only after the broker acknowledged it (deletes are batched).
- A fresh client per connection. When a connection is lost the client object is thrown away with
  whatever paho still queued, and the next connection re-sends every row still in the outbox from the
  oldest, through the same window. paho's own re-send after reconnect (which ignores max_inflight and can
  publish twice, paho #492) never runs. A row whose PUBACK was lost is sent again with the same payload,
  so the platform recognises the duplicate by its message id.
- Bridge state. LWT on `<base>/bridge/state` = retained {"state": "offline"}; on every (re)connect the
  sink publishes retained {"state": "online", "version", ...}. It subscribes to that topic first: if the
  broker returns no retained message before the echo of our own "online", the broker has lost its retained
  messages (a restart without persistence) and the latest retained state/availability of every device
  (kept by the outbox) is published again before anything else. If that check cannot run (ACL, timeout),
  the sink re-publishes anyway: a redundant retained message is harmless, a missing one is not.
- Reconnect with capped exponential backoff and jitter; "connected" and "connection lost" are logged at the
  same level (WARNING), so a log filter never shows one without the other.
- Never publishes to a topic with "+", "#", an empty level, a NUL or a leading "$".
- Commands: subscribes to `<base>/+/+/set` (shared when `command_share_group` is set, for scale-out) and
  hands (kind, device, payload) to a callback, which must only enqueue.
"""

from __future__ import annotations

import json
import logging
import random
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from citynode.config import Secret
from citynode.core.topics import Topics, is_safe_topic
from citynode.metrics import BridgeMetrics
from citynode.sinks.outbox import Outbox, OutboxError, OutboxRow

log = logging.getLogger(__name__)

CommandHandler = Callable[[str, str, bytes], None]  # (kind, device, payload)
_ACK_FLUSH_S = 0.05  # batch PUBACK deletes: at most this long (a crash before it costs re-sends, not loss)
_DETECT_TIMEOUT_S = 10.0  # waiting for the echo of our "online" before re-publishing retained state anyway


@dataclass(frozen=True)
class MqttSinkSettings:
    """Where and how to publish. `password` is a Secret: never printed."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    client_id: str = "citynode-bridge"
    base_topic: str = "citynode"
    instance: str | None = None  # scale-out: own state topic <base>/bridge/state/<instance>
    qos: int = 1
    inflight_window: int = 256
    keepalive_s: int = 30
    protocol: str = "3.1.1"  # or "5"
    connect_timeout_s: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_payload_bytes: int = 256 * 1024
    command_share_group: str | None = None
    republish_retained: bool = True
    give_up_after_s: float = 0.0  # > 0: report fatal after this long without a connection (exit for systemd)


@dataclass
class _InFlight:
    row_id: int | None  # None: a control message or a retained re-publish, not an outbox row
    enqueued_at: float


@dataclass
class _Connection:
    """State of one connection; thrown away with its client when the connection ends."""

    client: mqtt.Client
    nonce: str
    connected: bool = False
    closed: bool = False
    refused: str | None = None
    inflight: dict[int, _InFlight] = field(default_factory=dict)
    cursor: int = 0  # highest outbox row id sent on this connection
    acked: list[int] = field(default_factory=list)
    last_flush: float = 0.0
    state_sub_mid: int | None = None
    detect_deadline: float = 0.0
    detect_done: bool = False
    saw_retained: bool = False
    republishing: bool = False
    republish_cursor: str = ""
    republished: int = 0
    offline_mid: int | None = None


class MqttSink:
    """Publishes the outbox to the platform broker; see the module docstring for the guarantees."""

    def __init__(self, settings: MqttSinkSettings, outbox: Outbox, *, on_command: CommandHandler | None = None,
                 metrics: BridgeMetrics | None = None, version: str = "", clock: Callable[[], float] = time.time):
        if not 1 <= settings.inflight_window <= 65535:
            raise ValueError(f"inflight_window must be 1..65535, got {settings.inflight_window}")
        self.settings = settings
        self.outbox = outbox
        self.metrics = metrics or BridgeMetrics()
        self.topics = Topics(settings.base_topic)
        self.state_topic = (f"{settings.base_topic}/bridge/state/{settings.instance}" if settings.instance
                            else self.topics.bridge_state())
        self.last_error: str | None = None
        self.fatal: str | None = None
        self._on_command = on_command
        self._version = version
        self._clock = clock
        self._started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._stop = threading.Event()
        self._drain_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._conn: _Connection | None = None
        self._ever_connected = False
        self._finished = threading.Event()
        self._offline_deadline = 0.0
        outbox.add_listener(self.wake)

    # -- public ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="citynode-sink", daemon=True)
        self._thread.start()

    def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Publishes what it can of the outbox for up to `drain_timeout_s` (only while connected), then
        publishes the retained "offline" state and disconnects. Rows left stay in the outbox."""
        self._drain_deadline = time.monotonic() + drain_timeout_s
        self._stop.set()
        self.wake()
        if self._thread:
            self._thread.join(drain_timeout_s + self.settings.connect_timeout_s + 5)
        self._wake_r.close()
        self._wake_w.close()

    def wake(self) -> None:
        """Wakes the sink thread (new rows in the outbox); safe from any thread, never blocks."""
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake, or closed

    @property
    def connected(self) -> bool:
        conn = self._conn
        return bool(conn and conn.connected and not conn.closed)

    @property
    def inflight(self) -> int:
        conn = self._conn
        return len(conn.inflight) if conn else 0

    @property
    def finished(self) -> threading.Event:
        """Set when the sink thread has ended (stopped, or gave up: see `fatal`)."""
        return self._finished

    # -- the connection loop -------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        down_since = time.monotonic()
        try:
            while not self._stop.is_set():
                conn = self._connect()
                if conn is not None:
                    self._serve(conn)
                    self._conn = None
                    self.metrics.output_connected.set(0)
                    self.metrics.inflight.set(0)
                    if conn.connected:
                        failures, down_since = 0, time.monotonic()
                if self._stop.is_set():
                    break
                failures += 1
                if self.settings.give_up_after_s and time.monotonic() - down_since > self.settings.give_up_after_s:
                    self.fatal = (f"no connection to the output broker for {self.settings.give_up_after_s:.0f} s: "
                                  f"{self.last_error}")
                    log.error("output: giving up: %s", self.fatal)
                    break
                self._stop.wait(self._backoff(failures))
        finally:
            self._finished.set()

    def _backoff(self, failures: int) -> float:
        s = self.settings
        delay = min(s.reconnect_max_s, s.reconnect_min_s * 2 ** max(0, failures - 1))
        return delay * random.uniform(0.8, 1.2)  # jitter: many bridges must not reconnect in lock-step

    def _new_client(self) -> mqtt.Client:
        s = self.settings
        v5 = s.protocol == "5"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else True)
        # Our window is the bound (never more than inflight_window un-acked publishes, plus the bridge state).
        # paho's own limit stays off: with one set, paho scans its whole in-flight table on every PUBACK.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.connect_timeout = s.connect_timeout_s
        if s.username:
            client.username_pw_set(s.username, s.password.reveal() if s.password else None)
        if s.tls:
            client.tls_set(ca_certs=s.ca_file, certfile=s.cert_file, keyfile=s.key_file,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.will_set(self.state_topic, self._state_payload("offline", stamp=False, reason="connection lost"),
                        qos=1, retain=True)
        return client

    def _connect(self) -> _Connection | None:
        s = self.settings
        nonce = uuid.uuid4().hex[:16]
        try:
            client = self._new_client()
        except (OSError, ValueError, ssl.SSLError) as exc:  # unreadable CA or key file
            self._note_failure(f"TLS setup failed: {exc}")
            return None
        conn = _Connection(client=client, nonce=nonce)
        client.on_connect = lambda c, u, flags, rc, props: self._on_connect(conn, rc)
        client.on_disconnect = lambda c, u, flags, rc, props: self._on_disconnect(conn, rc)
        client.on_publish = lambda c, u, mid, rc, props: self._on_publish(conn, mid, rc)
        client.on_subscribe = lambda c, u, mid, rcs, props: self._on_subscribe(conn, mid, rcs)
        client.on_message = lambda c, u, msg: self._on_message(conn, msg)
        self._conn = conn
        try:
            if s.protocol == "5":
                client.connect(s.host, s.port, s.keepalive_s, clean_start=True)
            else:
                client.connect(s.host, s.port, s.keepalive_s)
        except (OSError, ValueError) as exc:  # refused, unreachable, timeout, TLS handshake (SSLError)
            self._conn = None
            self._note_failure(f"cannot connect to {s.host}:{s.port}: {exc}")
            return None
        sock = client.socket()
        if sock is not None:
            try:  # small PUBLISH packets must not wait for Nagle's algorithm (latency)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        return conn

    def _note_failure(self, message: str) -> None:
        if message != self.last_error:
            log.warning("output: %s", message)
        self.last_error = message

    def _serve(self, conn: _Connection) -> None:
        """Runs one connection until it ends (lost, refused, or stopped after draining)."""
        client = conn.client
        connect_deadline = time.monotonic() + self.settings.connect_timeout_s
        while not conn.closed:
            sock = client.socket()
            if sock is None:
                break
            pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
            want_write = client.want_write()
            try:
                readable, _, _ = select.select([sock, self._wake_r], [sock] if want_write else [], [],
                                               0.0 if pending else 0.5)
            except (OSError, ValueError):
                break
            if self._wake_r in readable:
                self._drain_wake()
            if (sock in readable or pending) and client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            if client.want_write() and client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            if not conn.connected:
                if time.monotonic() > connect_deadline:
                    self._note_failure(f"no CONNACK from {self.settings.host}:{self.settings.port}")
                    break
                continue
            self._flush_acks(conn, force=self._stop.is_set())
            if self._stop.is_set() and self._finish_if_drained(conn):
                break
            self._check_detection(conn)
            self._fill(conn)
            self.metrics.inflight.set(len(conn.inflight))
        conn.closed = True
        self._flush_acks(conn, force=True)
        try:
            client.disconnect()
        except (OSError, ValueError):
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # -- sending ---------------------------------------------------------------------------------------

    def _fill(self, conn: _Connection) -> None:
        """Publishes until the window is full: retained re-publish first, then outbox rows in order."""
        window = self.settings.inflight_window
        if self._stop.is_set() and time.monotonic() > self._drain_deadline:
            return
        if conn.republishing:
            free = window - len(conn.inflight)
            if free <= 0:
                return
            rows = self._read(lambda: self.outbox.retained_after(conn.republish_cursor, free))
            for topic, payload, qos in rows or []:
                if not self._publish(conn, topic, payload, qos, True, None, self._clock()):
                    return
                conn.republish_cursor = topic
                conn.republished += 1
            if rows is not None and len(rows) < free:
                conn.republishing = False
                log.warning("output: re-published %d retained state topic(s) the broker had lost",
                            conn.republished)
        while len(conn.inflight) < window and not conn.closed:
            rows = self._read(lambda: self.outbox.peek(conn.cursor, window - len(conn.inflight)))
            if not rows:
                return
            for row in rows:
                if not self._sendable(conn, row):
                    continue
                if not self._publish(conn, row.topic, row.payload, row.qos, row.retain, row.id, row.enqueued_at):
                    return
                conn.cursor = row.id

    def _read(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except OutboxError as exc:
            self.last_error = str(exc)
            return None

    def _sendable(self, conn: _Connection, row: OutboxRow) -> bool:
        reason = None
        if not is_safe_topic(row.topic):
            reason = "unsafe_topic"
        elif len(row.payload) > self.settings.max_payload_bytes:
            reason = "too_large"
        if reason is None:
            return True
        log.error("output: not publishing row %d to %r (%s, %d bytes); deleted", row.id, row.topic, reason,
                  len(row.payload))
        self.metrics.dropped.labels(reason=reason).inc()
        conn.acked.append(row.id)
        conn.cursor = row.id
        return False

    def _publish(self, conn: _Connection, topic: str, payload: bytes, qos: int, retain: bool,
                 row_id: int | None, enqueued_at: float) -> bool:
        qos = min(2, max(qos, self.settings.qos))
        info = conn.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # Not connected any more (paho may have queued it: that client is discarded, the row stays).
            if info.rc != MQTTErrorCode.MQTT_ERR_NO_CONN:
                log.error("output: publish to %r failed: %s", topic, mqtt.error_string(info.rc))
            conn.closed = conn.closed or info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN
            return False
        conn.inflight[info.mid] = _InFlight(row_id, enqueued_at)
        return True

    def _flush_acks(self, conn: _Connection, force: bool = False) -> None:
        now = time.monotonic()
        if not conn.acked or (not force and now - conn.last_flush < _ACK_FLUSH_S
                              and len(conn.acked) < self.settings.inflight_window // 2):
            return
        try:
            self.outbox.delete(conn.acked)
            conn.acked = []
        except OutboxError as exc:  # kept for the next flush; at worst re-sent after a reconnect
            self.last_error = str(exc)
        conn.last_flush = now

    def _finish_if_drained(self, conn: _Connection) -> bool:
        """While stopping: once the outbox is empty (or the drain time is up), publish "offline" and wait
        for its PUBACK. True when the connection may close."""
        if conn.offline_mid is None:
            drained = not conn.inflight and self.outbox.depth == 0
            if not drained and time.monotonic() < self._drain_deadline:
                return False
            if conn.inflight and time.monotonic() < self._drain_deadline + 2.0:
                return False  # let the last sent rows be acknowledged
            info = conn.client.publish(self.state_topic, self._state_payload("offline", reason="stopped"), qos=1,
                                       retain=True)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return True
            conn.offline_mid = info.mid
            conn.inflight[info.mid] = _InFlight(None, self._clock())
            self._offline_deadline = time.monotonic() + 2.0
            return False
        return conn.offline_mid not in conn.inflight or time.monotonic() > self._offline_deadline

    # -- callbacks (all in the sink thread) ---------------------------------------------------------

    def _on_connect(self, conn: _Connection, reason: ReasonCode) -> None:
        s = self.settings
        if reason.is_failure:
            conn.refused = str(reason)
            conn.closed = True
            self._note_failure(f"{s.host}:{s.port} refused the connection: {reason}")
            return
        conn.connected = True
        if self._ever_connected:
            self.metrics.reconnects.labels(client="output").inc()
        self._ever_connected = True
        self.last_error = None
        self.metrics.output_connected.set(1)
        log.warning("output: connected to %s:%d as %s (%d publication(s) waiting in the outbox)", s.host, s.port,
                    s.client_id, self.outbox.depth)
        client = conn.client
        if s.republish_retained:
            rc, conn.state_sub_mid = client.subscribe(self.state_topic, qos=1)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._start_republish(conn, "could not subscribe to the bridge state topic")
        else:
            conn.detect_done = True
        commands = self.topics.set_subscription()
        if s.command_share_group:
            commands = f"$share/{s.command_share_group}/{commands}"
        if self._on_command is not None:
            client.subscribe(commands, qos=1)
        online = client.publish(self.state_topic, self._state_payload("online", session=conn.nonce), qos=1,
                                retain=True)
        if online.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            conn.inflight[online.mid] = _InFlight(None, self._clock())
        conn.detect_deadline = time.monotonic() + _DETECT_TIMEOUT_S

    def _on_disconnect(self, conn: _Connection, reason: ReasonCode) -> None:
        was_connected = conn.connected and not conn.closed
        conn.closed = True
        self.metrics.output_connected.set(0)
        if was_connected and not self._stop.is_set():
            self.last_error = f"connection lost: {reason}"
            log.warning("output: connection lost to %s:%d (%s); %d publication(s) un-acknowledged will be sent"
                        " again", self.settings.host, self.settings.port, reason, len(conn.inflight))

    def _on_publish(self, conn: _Connection, mid: int, reason: ReasonCode) -> None:
        entry = conn.inflight.pop(mid, None)
        if entry is None or entry.row_id is None:
            return
        if reason.is_failure:  # MQTT 5 only: the broker refused it (e.g. ACL); re-sending would not help
            log.error("output: broker refused publication (row %d): %s; deleted", entry.row_id, reason)
            self.metrics.dropped.labels(reason="refused_by_broker").inc()
        else:
            self.metrics.publish_latency.observe(max(0.0, self._clock() - entry.enqueued_at))
        conn.acked.append(entry.row_id)

    def _on_subscribe(self, conn: _Connection, mid: int, reasons: list[ReasonCode]) -> None:
        failed = [r for r in reasons if r.is_failure]
        if not failed:
            return
        if mid == conn.state_sub_mid:
            self._start_republish(conn, f"subscription to {self.state_topic} refused ({failed[0]})")
        else:
            log.error("output: subscription to platform commands refused (%s): commands will not work", failed[0])

    def _on_message(self, conn: _Connection, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.state_topic:
            self._on_state_message(conn, msg)
            return
        parsed = self.topics.parse_set(msg.topic)
        if parsed is None or self._on_command is None:
            return
        try:
            self._on_command(parsed[0], parsed[1], bytes(msg.payload))
        except Exception:  # a bad command must not take the publisher down
            log.exception("output: command handler failed for %r", msg.topic)

    # -- retained state after a broker restart --------------------------------------------------------

    def _on_state_message(self, conn: _Connection, msg: mqtt.MQTTMessage) -> None:
        if conn.detect_done:
            return
        try:
            session = json.loads(msg.payload).get("session")
        except (ValueError, AttributeError):
            session = None
        if session == conn.nonce and not msg.retain:  # the echo of our "online": the check is complete
            conn.detect_done = True
            conn.client.unsubscribe(self.state_topic)
            if conn.saw_retained:
                log.info("output: the broker kept its retained messages; no re-publish needed")
            else:
                self._start_republish(conn, "the broker had no retained bridge state (it restarted without "
                                            "persistence, or this is its first start)")
        elif msg.retain:
            conn.saw_retained = True

    def _check_detection(self, conn: _Connection) -> None:
        if not conn.detect_done and time.monotonic() > conn.detect_deadline:
            self._start_republish(conn, "no echo of the bridge state within "
                                        f"{_DETECT_TIMEOUT_S:.0f} s")

    def _start_republish(self, conn: _Connection, why: str) -> None:
        conn.detect_done = True
        count = self._read(self.outbox.retained_count) or 0
        if count:
            log.warning("output: re-publishing the latest retained state of %d topic(s): %s", count, why)
            conn.republishing, conn.republish_cursor, conn.republished = True, "", 0

    def _state_payload(self, state: str, stamp: bool = True, **extra: Any) -> bytes:
        """The retained bridge state; `stamp` adds the time it was sent (not for the LWT, which is sent
        by the broker at an unknown later time)."""
        body: dict[str, Any] = {"state": state, "version": self._version, "started_at": self._started_at}
        if stamp:
            body["at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if self.settings.instance:
            body["instance"] = self.settings.instance
        body.update(extra)
        return json.dumps(body, separators=(",", ":")).encode()
