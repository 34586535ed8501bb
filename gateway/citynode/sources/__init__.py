"""Where uplinks come from: ChirpStack v4 and The Things Stack v3 over MQTT, and a LoRa P2P receiver on a
serial port. Each source turns what it receives into the same citynode.records.Uplink, or a Rejected saying
why it is not one, and hands it to `emit(item, ack)`; `ack` is called by the app once the result is safely in
the outbox, and only then does an MQTT source acknowledge the message to its broker.

Each source module has a pure parser (bytes in, Uplink | Rejected out, never raising) and a client class.
This module holds what they share: small JSON/time/base64 helpers and MqttSource, the paho client both LNS
sources are built on.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import jsontext
from ..records import Emit, Rejected, SourceStats, Uplink

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024  # an LNS uplink event is a few kB; anything far larger is refused unparsed
MAX_RX = 64  # gateways kept per uplink
MAX_NAME = 128
PAST_LIMIT = timedelta(days=365)  # an LNS time further off than this is not believed: the bridge's time is used
# An LNS stamps uplinks when it receives them, so its time is never ahead of the bridge's except by clock skew;
# a time further ahead than this would hold back alerts and the retained state, so it is not believed either.
FUTURE_LIMIT = timedelta(minutes=10)
_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?\Z")
_HEX16 = re.compile(r"^[0-9a-fA-F]{16}\Z")


class DownlinkError(RuntimeError):
    """A downlink the source cannot send (unknown route, not started, not configured)."""


class _BadJSON(ValueError):
    pass


def _no_constants(name: str):
    raise _BadJSON(f"{name} is not allowed in JSON")


def load_json_object(payload: bytes) -> tuple[dict | None, str, str]:
    """(object, "", "") or (None, reason, detail) for bytes that are not one JSON object."""
    if not isinstance(payload, (bytes, bytearray)):
        return None, "invalid_message", f"payload is {type(payload).__name__}, not bytes"
    if len(payload) > MAX_MESSAGE_BYTES:
        return None, "too_large", f"message of {len(payload)} bytes (limit {MAX_MESSAGE_BYTES})"
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as e:
        return None, "invalid_json", f"not UTF-8 at byte {e.start}"
    try:
        doc = jsontext.loads(text, parse_constant=_no_constants)
    except RecursionError:
        return None, "invalid_json", "JSON nested too deeply"
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, integers too long to convert
        return None, "invalid_json", str(e).splitlines()[0][:200] if str(e) else "not JSON"
    if not isinstance(doc, dict):
        return None, "invalid_message", f"JSON {type(doc).__name__}, not an object"
    return doc, "", ""


def obj(value: Any) -> dict:
    """`value` when it is a JSON object, else {} (a missing or mistyped sub-object)."""
    return value if isinstance(value, dict) else {}


def or_default(doc: dict, key: str, default: Any) -> Any:
    """Protobuf JSON leaves default values out (0, false, ""), or may write null: both mean the default."""
    value = doc.get(key)
    return default if value is None else value


def number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def integer(value: Any, lo: int, hi: int) -> int | None:
    """An int in lo..hi (also a float or a decimal string holding one: protobuf JSON writes 64-bit ints as
    strings); None otherwise."""
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value.strip()):
        value = int(value.strip())
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return None
    return value


def text(value: Any, limit: int = MAX_NAME) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[:limit]


def dev_eui(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and _HEX16.match(value) else None


def b64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_time(value: Any, now: datetime) -> datetime:
    """An RFC 3339 time from an LNS (nanoseconds allowed) as aware UTC; `now` when missing, unreadable, or more
    than a year in the past or ten minutes in the future."""
    if isinstance(value, str):
        m = _TIME.match(value.strip())
        if m:
            try:
                y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
                micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
                tz = m.group(8)
                offset = timedelta(0)
                if tz and tz not in ("Z", "z"):
                    sign = -1 if tz[0] == "-" else 1
                    digits = tz[1:].replace(":", "")
                    offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
                t = datetime(y, mo, d, h, mi, s, micro, tzinfo=timezone.utc) - offset
                if now - PAST_LIMIT <= t <= now + FUTURE_LIMIT:
                    return t
            except (ValueError, OverflowError):
                pass
    return now


def rejected(source: str, reason: str, detail: str, now: datetime, payload: Any,
             dev: str | None = None) -> Rejected:
    raw = bytes(payload) if isinstance(payload, (bytes, bytearray)) else None
    return Rejected(source, reason, detail, now, dev, raw)


# -- MQTT -----------------------------------------------------------------------------------------------------


def default_client_id(source: str) -> str:
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "host"
    return f"citynode-{host}-{source}"


class MqttSource:
    """A paho-mqtt 2.x client (VERSION2 callbacks) that subscribes to an LNS, parses each message with
    `parse(topic, payload, now)` and emits the result. With QoS 1 it acknowledges manually: a message is
    acknowledged only when the app calls the `ack` handed to emit (after the outbox committed), and only on the
    connection it arrived on; after a reconnect the broker redelivers what was not acknowledged (persistent
    session). Reconnects use paho's capped exponential backoff. Callbacks never raise."""

    name = "mqtt"

    def __init__(self, settings, emit: Emit,
                 parse: Callable[[str, bytes, datetime], Uplink | Rejected | None]):
        self.settings = settings
        self.emit = emit
        self._parse = parse
        self.stats = SourceStats()
        self.events: Counter[str] = Counter()  # every message by event type, uplink or not
        self.acks = Counter()  # "sent", "stale" (not acked: from an earlier connection), "failed"
        self._client = None
        self._generation = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stopping = False

    # subclasses
    def subscriptions(self) -> list[str]:
        raise NotImplementedError

    def event_of(self, topic: str) -> str:
        return topic.rsplit("/", 1)[-1]

    def remember(self, topic: str, item: Uplink) -> None:
        """Keep what a downlink to this device needs (called for every accepted uplink)."""

    @property
    def manual_ack(self) -> bool:
        return self.settings.qos > 0

    def _build_client(self):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        s = self.settings
        v5 = bool(getattr(s, "shared_group", None))
        kwargs: dict[str, Any] = {"callback_api_version": CallbackAPIVersion.VERSION2, "client_id": s.client_id,
                                  "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311, "manual_ack": self.manual_ack}
        if not v5:
            kwargs["clean_session"] = s.clean_session
        client = mqtt.Client(**kwargs)
        username, password = self.credentials()
        if username:
            client.username_pw_set(username, password)
        if s.tls:
            client.tls_set(ca_certs=s.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(max(1, int(s.reconnect_min_s)), max(1, int(s.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client, v5

    def credentials(self) -> tuple[str | None, str | None]:
        return self.settings.username, self.settings.password

    def start(self) -> None:
        """Connect in the background (paho's network thread) and keep reconnecting until stop()."""
        with self._lock:
            if self._client is not None:
                return
            self._stopping = False
            client, v5 = self._build_client()
            s = self.settings
            if v5:
                from paho.mqtt.packettypes import PacketTypes
                from paho.mqtt.properties import Properties

                props = Properties(PacketTypes.CONNECT)
                if not s.clean_session:
                    props.SessionExpiryInterval = int(s.session_expiry_s)
                client.connect_async(s.host, s.port, s.keepalive, clean_start=s.clean_session, properties=props)
            else:
                client.connect_async(s.host, s.port, s.keepalive)
            self._client = client
            client.loop_start()
            log.info("%s: connecting to %s:%s as %s", self.name, s.host, s.port, s.client_id)

    def stop(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._stopping = True
        if client is not None:
            try:
                client.disconnect()
            finally:
                client.loop_stop()
        self.stats.connected = False
        self._connected.clear()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until subscribed (for tests and startup checks)."""
        return self._connected.wait(timeout)

    # callbacks: thin, never raising

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        try:
            if reason_code.is_failure:
                log.warning("%s: broker refused the connection: %s", self.name, reason_code)
                return
            self._generation += 1
            subs = [(topic, min(self.settings.qos, 2)) for topic in self.subscriptions()]
            client.subscribe(subs)
            self.stats.connected = True
            # The same level as "disconnected": an operator grepping the log sees both (rtl_433 #2629).
            log.warning("%s: connected (session present: %s), subscribed to %s", self.name,
                     getattr(flags, "session_present", "?"), ", ".join(t for t, _ in subs))
        except Exception:  # noqa: BLE001
            log.exception("%s: on_connect failed", self.name)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:
        refused = [str(rc) for rc in reason_codes if getattr(rc, "is_failure", False)]
        if refused:
            log.error("%s: the broker refused the subscription: %s (check the ACL)", self.name, ", ".join(refused))
            return
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self.stats.connected = False
        self._connected.clear()
        if not self._stopping:
            log.warning("%s: disconnected (%s); reconnecting with backoff", self.name, reason_code)

    def _acker(self, client, mid: int, qos: int, generation: int) -> Callable[[], None]:
        done = threading.Event()

        def ack() -> None:
            if done.is_set():
                return
            done.set()
            if qos == 0 or not self.manual_ack:
                return
            if generation != self._generation:
                # the broker will redeliver it on this connection; acknowledging an old packet id could
                # acknowledge a different message
                self.acks["stale"] += 1
                return
            try:
                client.ack(mid, qos)
                self.acks["sent"] += 1
            except Exception:  # noqa: BLE001
                self.acks["failed"] += 1
                log.exception("%s: acknowledging message %s failed", self.name, mid)

        return ack

    def _on_message(self, client, userdata, message) -> None:
        try:
            generation = self._generation
            ack = self._acker(client, message.mid, message.qos, generation)
            now = datetime.now(timezone.utc)
            try:
                topic = message.topic
            except UnicodeDecodeError:
                topic = None
            if topic is None:
                item: Uplink | Rejected | None = rejected(self.name, "bad_topic", "topic is not UTF-8", now,
                                                         message.payload)
            else:
                self.events[self.event_of(topic)] += 1
                item = self._parse(topic, message.payload, now)
            if item is None:  # an event without an uplink (join, status, ack, ...): nothing to store
                ack()
                return
            self.stats.received += 1
            if isinstance(item, Rejected):
                self.stats.rejected[item.reason] = self.stats.rejected.get(item.reason, 0) + 1
            elif topic is not None:
                self.remember(topic, item)
            self.emit(item, ack)
        except Exception:  # noqa: BLE001 - bad input or a failing emit must not kill paho's network thread
            log.exception("%s: message on %r could not be handled", self.name, getattr(message, "topic", "?"))

    def _publish(self, topic: str, body: dict, qos: int) -> None:
        client = self._client
        if client is None:
            raise DownlinkError(f"{self.name} source is not started")
        info = client.publish(topic, json.dumps(body, separators=(",", ":")), qos=qos)
        # QoS 1 while disconnected: paho queues it and returns MQTT_ERR_NO_CONN; it is sent after reconnect
        if info.rc not in (0, 4) or (qos == 0 and info.rc != 0):
            raise DownlinkError(f"{self.name}: publishing the downlink failed (rc {info.rc})")
