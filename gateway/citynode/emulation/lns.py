"""LoRaWAN network servers for emulation, implementing the modem's `Network` interface (rak3172.py).

- LoopbackNetwork: in-process, no MQTT; hears everything.
- EmulatedLNS: publishes to a real MQTT broker exactly what ChirpStack v4 (flavour "chirpstack") or The Things
  Stack v3 (flavour "tts") would, and takes downlinks from the broker the way they do (lns_formats.md §1, §2).

    with EmulatedLNS("127.0.0.1", broker.port, flavour="chirpstack", clock=virtual_clock) as lns:
        lns.add_device("AC1F09FFFE000001", name="soil-1", position=Position(52.52, 13.40))
        modem = RAK3172(dev_eui="AC1F09FFFE000001", network=lns)

JSON follows the Protocol Buffers JSON mapping both servers use: default values (0, false, "", empty lists and
maps) are left out, so the first uplink after a join has no "fCnt" and an unconfirmed one no "confirmed".
Timestamps come from `clock` (epoch seconds), so virtual-time fleets get consistent times.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import ssl
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from .air import REGIONS, LinkModel, Position
from .rak3172 import EmulatorError, JoinAccept, Outcome, _eui

log = logging.getLogger(__name__)

FLAVOURS = ("chirpstack", "tts")
TTS_PRIORITIES = ("LOWEST", "LOW", "BELOW_NORMAL", "NORMAL", "ABOVE_NORMAL", "HIGH", "HIGHEST")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class LNSError(EmulatorError):
    """The emulated network server cannot do what was asked."""


class BrokerConnectError(LNSError):
    """The MQTT broker refused or never answered the connection."""

    def __init__(self, host: str, port: int, reason: str):
        super().__init__(f"cannot connect to MQTT broker {host}:{port}: {reason}")
        self.host, self.port, self.reason = host, port, reason


# -- the in-process network ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UplinkRecord:
    """One uplink as a network saw it (also the lost ones: heard_by is empty)."""

    dev_eui: bytes
    fcnt: int
    port: int | None
    payload: bytes
    confirmed: bool
    dr: int
    now_ms: int
    ack: bool
    heard_by: tuple[str, ...] = ()
    retransmission: bool = False


class LoopbackNetwork:
    """A network that hears everything: joins are accepted (unless accept_joins is False), confirmed uplinks
    are acknowledged, and downlinks queued with queue_downlink() go out in RX1 of the device's next uplink."""

    def __init__(self, *, rssi: int = -60, snr: float = 9.0, heard: bool = True, accept_joins: bool = True):
        self.rssi, self.snr, self.heard, self.accept_joins = rssi, snr, heard, accept_joins
        self.joins: list[tuple[bytes, int]] = []
        self.uplinks: list[UplinkRecord] = []
        self._queues: dict[bytes, deque[tuple[int, bytes, bool]]] = defaultdict(deque)
        self._next_addr = 0x00189440
        self._lock = threading.Lock()

    def queue_downlink(self, dev_eui: bytes | str, port: int, payload: bytes, confirmed: bool = False) -> None:
        """Send `payload` on `port` in RX1 of the next uplink from `dev_eui`."""
        with self._lock:
            self._queues[_eui(dev_eui, 8)].append((port, bytes(payload), confirmed))

    def join(self, dev_eui: bytes, join_eui: bytes, app_key: bytes, now_ms: int, *, dr: int = 0) -> JoinAccept | None:
        with self._lock:
            self.joins.append((bytes(dev_eui), now_ms))
            if not (self.heard and self.accept_joins):
                return None
            self._next_addr += 1
            return JoinAccept(self._next_addr.to_bytes(4, "big"), self.rssi, self.snr)

    def uplink(self, dev_eui: bytes, fcnt: int, port: int | None, payload: bytes, confirmed: bool, dr: int,
               now_ms: int, *, ack: bool = False, adr: bool = False) -> Outcome:
        with self._lock:
            self.uplinks.append(UplinkRecord(bytes(dev_eui), fcnt, port, bytes(payload), confirmed, dr, now_ms, ack,
                                             ("loopback",) if self.heard else ()))
            if not self.heard:
                return Outcome(heard=False)
            queue = self._queues.get(bytes(dev_eui))
            down = queue.popleft() if queue else None
            return Outcome(heard=True, acked=confirmed, downlink=(down[0], down[1]) if down else None,
                           downlink_confirmed=bool(down and down[2]), rssi=self.rssi, snr=self.snr)


# -- the MQTT network server --------------------------------------------------------------------------------------


@dataclass
class Gateway:
    """An emulated gateway: its EUI (ChirpStack gatewayId), TTS gateway_id, position and whether it is up."""

    eui: str
    gateway_id: str = ""
    position: Position | None = None
    online: bool = True

    def __post_init__(self) -> None:
        self.eui = _eui(self.eui, 8).hex()
        self.gateway_id = self.gateway_id or f"eui-{self.eui}"


@dataclass
class QueuedDownlink:
    """A downlink waiting for (or sent in) an RX1 window."""

    id: str
    f_port: int
    data: bytes
    confirmed: bool
    priority: str = "LOWEST"
    correlation_ids: tuple[str, ...] = ()
    f_cnt: int | None = None


@dataclass
class Device:
    """A registered end device and its session."""

    dev_eui: bytes
    name: str
    device_id: str
    position: Position | None = None
    tags: dict[str, str] = field(default_factory=dict)
    join_eui: bytes | None = None
    app_key: bytes | None = None
    dev_addr: bytes | None = None  # set for ABP devices, assigned on join for OTAA
    f_cnt_up: int | None = None
    f_cnt_down: int = 0
    session_key_id: bytes = b""
    join_event_pending: bool = False
    queue: deque[QueuedDownlink] = field(default_factory=deque)
    awaiting_ack: QueuedDownlink | None = None


@dataclass(frozen=True)
class Published:
    """One MQTT message the LNS published."""

    topic: str
    payload: dict[str, Any]
    qos: int
    at: float
    duplicate: bool = False


@dataclass(frozen=True)
class Rejected:
    """A downlink command the LNS refused, and why."""

    topic: str
    reason: str
    raw: bytes


class EmulatedLNS:
    """An emulated ChirpStack v4 or The Things Stack v3 in front of a real MQTT broker. Thread-safe.

    gateways: where the network listens (default: one gateway without position). An uplink heard by no online
    gateway is lost. duplicate_probability: chance that an `up` is published twice with the same
    deduplicationId / correlation_ids, as a second integration would. Records: published, rejected, uplinks,
    stats.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, *, flavour: str = "chirpstack",
                 application_id: str | None = None, application_name: str = "citynode",
                 tenant_id: str | None = None, tenant_name: str = "citynode",
                 device_profile_id: str | None = None, device_profile_name: str = "citynode-node",
                 region: str = "EU868", gateways: Iterable[Gateway] | None = None,
                 clock: Callable[[], float] = time.time, seed: int = 0, duplicate_probability: float = 0.0,
                 link_model: LinkModel | None = None, username: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None, ca_certs: str | Path | None = None,
                 client_id: str | None = None, qos: int = 0, connect_timeout: float = 10.0):
        if flavour not in FLAVOURS:
            raise LNSError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")
        if flavour == "tts" and qos != 0:
            raise LNSError("The Things Stack supports MQTT QoS 0 only")
        if region not in REGIONS:
            raise LNSError(f"unknown region {region!r}")
        self.flavour, self.region, self.clock, self.qos = flavour, REGIONS[region], clock, qos
        self._rng = random.Random(seed)
        self.application_id = application_id or (self._uuid() if flavour == "chirpstack" else "citynode")
        self.tenant_id = tenant_id if tenant_id is not None else (self._uuid() if flavour == "chirpstack" else "ttn")
        self.application_name, self.tenant_name = application_name, tenant_name
        self.device_profile_id = device_profile_id or self._uuid()
        self.device_profile_name = device_profile_name
        self.gateways = list(gateways) if gateways is not None else [Gateway("0016c001f153a14c")]
        self.duplicate_probability = duplicate_probability
        self.link_model = link_model or LinkModel()
        self.devices: dict[bytes, Device] = {}
        self.published: list[Published] = []
        self.rejected: list[Rejected] = []
        self.uplinks: list[UplinkRecord] = []
        self.stats: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._handled = threading.Condition(self._lock)
        self._infos: list[mqtt.MQTTMessageInfo] = []
        self._closed = False
        self._connected = threading.Event()
        self._connect_error = ""
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=client_id or f"citynode-lns-{self._rng.getrandbits(32):08x}")
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls is not None:
            self._client.tls_set_context(tls)
        elif ca_certs is not None:
            self._client.tls_set(ca_certs=str(ca_certs))
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.1, 2.0)
        try:
            self._client.connect(host, port, keepalive=30)
        except (OSError, ssl.SSLError) as e:
            raise BrokerConnectError(host, port, str(e)) from e
        self._client.loop_start()
        if not self._connected.wait(connect_timeout) or self._connect_error:
            self._stop_client()
            raise BrokerConnectError(host, port, self._connect_error or "no CONNACK/SUBACK in time")

    # -- topics ------------------------------------------------------------------------------------------------------

    @property
    def downlink_topics(self) -> list[str]:
        """The filters the LNS subscribes to for downlink commands."""
        if self.flavour == "chirpstack":
            return [f"application/{self.application_id}/device/+/command/down"]
        return [f"{self._tts_prefix()}/devices/+/down/push", f"{self._tts_prefix()}/devices/+/down/replace"]

    def event_topic(self, device: Device, event: str) -> str:
        """Where `event` ("up", "join", "ack", "txack", "log" / "up", "join", "down/sent", ...) is published."""
        if self.flavour == "chirpstack":
            return f"application/{self.application_id}/device/{device.dev_eui.hex()}/event/{event}"
        return f"{self._tts_prefix()}/devices/{device.device_id}/{event}"

    def _tts_prefix(self) -> str:
        app = f"{self.application_id}@{self.tenant_id}" if self.tenant_id else self.application_id
        return f"v3/{app}"

    # -- registry ---------------------------------------------------------------------------------------------------

    def add_device(self, dev_eui: bytes | str, *, name: str = "", device_id: str = "",
                   position: Position | None = None, tags: dict[str, str] | None = None,
                   join_eui: bytes | str | None = None, app_key: bytes | str | None = None,
                   dev_addr: bytes | str | None = None) -> Device:
        """Register a device. join_eui/app_key, when given, must match the join request (else the join fails);
        dev_addr makes it an ABP device with a session from the start."""
        eui = _eui(dev_eui, 8)
        device = Device(eui, name or f"node-{eui.hex()[-6:]}", device_id or f"eui-{eui.hex()}", position,
                        dict(tags or {}), _eui(join_eui, 8) if join_eui is not None else None,
                        _eui(app_key, 16) if app_key is not None else None,
                        _eui(dev_addr, 4) if dev_addr is not None else None)
        if device.dev_addr is not None:
            device.session_key_id = self._rng.randbytes(16)
        with self._lock:
            self.devices[eui] = device
        return device

    def set_gateway_online(self, eui: str, online: bool) -> None:
        """Take a gateway down (an outage) or bring it back."""
        with self._lock:
            for gw in self.gateways:
                if gw.eui == _eui(eui, 8).hex():
                    gw.online = online
                    return
        raise LNSError(f"no gateway {eui}")

    def enqueue(self, dev_eui: bytes | str, f_port: int, data: bytes, confirmed: bool = False) -> QueuedDownlink:
        """Queue a downlink directly, without MQTT."""
        with self._lock:
            device = self._device(_eui(dev_eui, 8))
            item = QueuedDownlink(self._uuid(), f_port, bytes(data), confirmed)
            device.queue.append(item)
            return item

    def events(self, event: str) -> list[dict[str, Any]]:
        """Payloads published for `event` ("up", "join", "txack", "down/sent", ...), oldest first."""
        suffix = ("/event/" if self.flavour == "chirpstack" else "/") + event
        with self._lock:
            return [p.payload for p in self.published if p.topic.endswith(suffix)]

    def wait_handled(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until `count` downlink commands have been taken in (queued or rejected) since start."""
        with self._handled:
            return self._handled.wait_for(lambda: self.stats["downlink_commands"] >= count, timeout)

    def wait_published(self, timeout: float = 5.0) -> bool:
        """Wait until every message published so far has left the client."""
        deadline = time.monotonic() + timeout
        with self._lock:
            infos = list(self._infos)
        for info in infos:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _published(info, remaining):
                return False
        return True

    def close(self) -> None:
        """Disconnect cleanly (messages already handed to the client are sent first)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.wait_published(2.0)
        self._stop_client()

    def __enter__(self) -> EmulatedLNS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the Network interface ---------------------------------------------------------------------------------------

    def join(self, dev_eui: bytes, join_eui: bytes, app_key: bytes, now_ms: int, *, dr: int = 0) -> JoinAccept | None:
        with self._lock:
            device = self.devices.get(bytes(dev_eui))
            if device is None:
                self.stats["join_unknown_device"] += 1
                return None
            heard = self._receive(device, dr)
            if not heard:
                self.stats["join_lost"] += 1
                return None
            if (device.app_key is not None and bytes(app_key) != device.app_key) or \
                    (device.join_eui is not None and bytes(join_eui) != device.join_eui):
                self.stats["join_mic_error"] += 1
                if self.flavour == "chirpstack":
                    self._publish(device, "log", {"time": self._time(), "deviceInfo": self._device_info(device),
                                                  "level": "ERROR", "code": "UPLINK_MIC",
                                                  "description": "MIC of join-request is invalid, make sure keys "
                                                                 "are correct",
                                                  "context": {"deduplication_id": self._uuid()}})
                return None
            device.dev_addr = self._rng.getrandbits(25).to_bytes(4, "big")  # NetID 000000: 7-bit prefix 0
            device.f_cnt_up, device.f_cnt_down, device.awaiting_ack = None, 0, None
            device.session_key_id = self._rng.randbytes(16)
            self.stats["joins"] += 1
            if self.flavour == "chirpstack":
                device.join_event_pending = True  # ChirpStack sends `join` with the first uplink after OTAA
            else:
                now = self._time()
                self._publish(device, "join", {"end_device_ids": self._tts_ids(device),
                                               "correlation_ids": self._correlation_ids("as:up"),
                                               "received_at": now,
                                               "join_accept": {"session_key_id": _b64(device.session_key_id),
                                                               "received_at": now}})
            best = max(heard, key=lambda r: r[1].rssi)[1]
            return JoinAccept(device.dev_addr, best.rssi, best.snr)

    def uplink(self, dev_eui: bytes, fcnt: int, port: int | None, payload: bytes, confirmed: bool, dr: int,
               now_ms: int, *, ack: bool = False, adr: bool = False) -> Outcome:
        with self._lock:
            device = self.devices.get(bytes(dev_eui))
            if device is None or device.dev_addr is None:
                self.stats["uplink_no_session"] += 1
                return Outcome(heard=False)
            heard = self._receive(device, dr)
            retransmission = heard != [] and device.f_cnt_up == fcnt
            self.uplinks.append(UplinkRecord(bytes(dev_eui), fcnt, port, bytes(payload), confirmed, dr, now_ms, ack,
                                             tuple(gw.eui for gw, _ in heard), retransmission))
            if not heard:
                self.stats["uplinks_lost"] += 1
                return Outcome(heard=False)
            if device.f_cnt_up is not None and fcnt < device.f_cnt_up:
                self.stats["uplinks_replayed"] += 1  # frame counter went back: the NS drops the frame
                return Outcome(heard=True)
            if device.awaiting_ack is not None and not retransmission:
                self._publish_ack(device, device.awaiting_ack, ack)
                device.awaiting_ack = None
            if retransmission:
                self.stats["uplinks_retransmitted"] += 1
            else:
                device.f_cnt_up = fcnt
                self.stats["uplinks"] += 1
                if device.join_event_pending:
                    device.join_event_pending = False
                    self._publish(device, "join", {"deduplicationId": self._uuid(), "time": self._time(),
                                                   "deviceInfo": self._device_info(device),
                                                   "devAddr": device.dev_addr.hex(),
                                                   "regionConfigId": self.region.config_id})
                if port is not None:  # a frame without FPort carries MAC commands only: no application event
                    self._publish_up(device, fcnt, port, bytes(payload), confirmed, dr, adr, heard)
            best_gw, best = max(heard, key=lambda r: r[1].rssi)
            item = self._next_downlink(device, dr) if device.awaiting_ack is None else None
            if item is not None:
                self._publish_sent(device, item, best_gw, dr)
                if item.confirmed:
                    device.awaiting_ack = item
            return Outcome(heard=True, acked=confirmed, downlink=(item.f_port, item.data) if item else None,
                           downlink_confirmed=bool(item and item.confirmed), rssi=best.rssi, snr=best.snr)

    # -- radio --------------------------------------------------------------------------------------------------------

    def _receive(self, device: Device, dr: int) -> list[tuple[Gateway, Any]]:
        mod = self.region.modulation(dr) if dr < len(self.region.data_rates) else None
        sf, bw = mod if mod is not None else (7, 125_000)
        heard = []
        for gw in self.gateways:
            link = self.link_model.link(self._rng, device.position, gw.position, sf, bw)
            if gw.online and link.heard:
                heard.append((gw, link))
        return heard

    def _next_downlink(self, device: Device, dr: int) -> QueuedDownlink | None:
        limit = self.region.max_payload[min(dr, len(self.region.max_payload) - 1)]
        while device.queue:
            item = device.queue.popleft()
            if len(item.data) <= limit:
                item.f_cnt = device.f_cnt_down
                device.f_cnt_down += 1
                return item
            self.stats["downlinks_too_long"] += 1
            log.warning("downlink %s for %s is %d bytes, DR%d allows %d: dropped", item.id, device.dev_eui.hex(),
                        len(item.data), dr, limit)
            if self.flavour == "chirpstack":
                self._publish(device, "log", {"time": self._time(), "deviceInfo": self._device_info(device),
                                              "level": "ERROR", "code": "DOWNLINK_PAYLOAD_SIZE",
                                              "description": f"Device queue-item discarded because it exceeds "
                                                             f"the max. payload size ({limit} bytes)",
                                              "context": {"queue_item_id": item.id}})
            else:
                self._publish(device, "down/failed", self._tts_down(device, item, "downlink_failed"))
        return None

    # -- ChirpStack and TTS messages ----------------------------------------------------------------------------

    def _publish_up(self, device: Device, fcnt: int, port: int, payload: bytes, confirmed: bool, dr: int,
                    adr: bool, heard: list[tuple[Gateway, Any]]) -> None:
        now = self._time()
        mod = self.region.modulation(dr) if dr < len(self.region.data_rates) else None
        sf, bw = mod if mod is not None else (0, 0)
        freq = self._rng.choice(self.region.uplink_hz)
        channel = self.region.uplink_hz.index(freq)
        if self.flavour == "chirpstack":
            body: dict[str, Any] = {
                "deduplicationId": self._uuid(), "time": now, "deviceInfo": self._device_info(device),
                "devAddr": device.dev_addr.hex() if device.dev_addr else "", "adr": adr, "dr": dr, "fCnt": fcnt,
                "fPort": port, "confirmed": confirmed, "data": _b64(payload),
                "rxInfo": [{"gatewayId": gw.eui, "uplinkId": self._rng.getrandbits(16), "nsTime": now,
                            "rssi": link.rssi, "snr": link.snr, "channel": channel,
                            "location": _location(gw.position, "latitude", "longitude", "altitude"),
                            "context": _b64(self._rng.randbytes(4)),
                            "metadata": {"region_config_id": self.region.config_id,
                                         "region_common_name": self.region.name},
                            "crcStatus": "CRC_OK"} for gw, link in heard],
                "txInfo": {"frequency": freq, "modulation": {"lora": {"bandwidth": bw, "spreadingFactor": sf,
                                                                      "codeRate": "CR_4_5"}}},
                "regionConfigId": self.region.config_id}
        else:
            toa_s = self.region.time_on_air_ms(len(payload), dr) / 1000
            timestamp = self._rng.getrandbits(32)
            body = {
                "end_device_ids": self._tts_ids(device),
                "correlation_ids": self._correlation_ids("as:up", "gs:conn", "gs:uplink", "ns:uplink",
                                                         "rpc:/ttn.lorawan.v3.GsNs/HandleUplink"),
                "received_at": now,
                "uplink_message": {
                    "session_key_id": _b64(device.session_key_id), "f_port": port, "f_cnt": fcnt,
                    "frm_payload": _b64(payload),
                    "rx_metadata": [{"gateway_ids": {"gateway_id": gw.gateway_id, "eui": gw.eui.upper()},
                                     "time": now, "timestamp": timestamp, "rssi": link.rssi,
                                     "channel_rssi": link.rssi, "snr": link.snr,
                                     "location": _location(gw.position, "latitude", "longitude", "altitude",
                                                           source="SOURCE_REGISTRY"),
                                     "uplink_token": _b64(self._rng.randbytes(24)), "channel_index": channel,
                                     "received_at": now} for gw, link in heard],
                    "settings": {"data_rate": {"lora": {"bandwidth": bw, "spreading_factor": sf,
                                                        "coding_rate": "4/5"}},
                                 "frequency": str(freq), "timestamp": timestamp, "time": now},
                    "received_at": now, "confirmed": confirmed, "consumed_airtime": f"{toa_s:.6f}s",
                    "network_ids": {"net_id": "000013", "tenant_id": self.tenant_id, "cluster_id": "eu1"}}}
        duplicate = self._rng.random() < self.duplicate_probability
        self._publish(device, "up", body)
        if duplicate:
            self.stats["up_duplicates"] += 1
            self._publish(device, "up", body, duplicate=True)

    def _publish_sent(self, device: Device, item: QueuedDownlink, gw: Gateway, dr: int) -> None:
        if self.flavour == "tts":
            self._publish(device, "down/sent", self._tts_down(device, item, "downlink_sent"))
            return
        mod = self.region.modulation(dr) if dr < len(self.region.data_rates) else None
        sf, bw = mod if mod is not None else (0, 0)
        self._publish(device, "txack", {
            "downlinkId": self._rng.getrandbits(32), "time": self._time(), "deviceInfo": self._device_info(device),
            "queueItemId": item.id, "fCntDown": item.f_cnt, "gatewayId": gw.eui,
            "txInfo": {"frequency": self._rng.choice(self.region.uplink_hz), "power": 14,
                       "modulation": {"lora": {"bandwidth": bw, "spreadingFactor": sf, "codeRate": "CR_4_5",
                                               "polarizationInversion": True}},
                       "timing": {"delay": {"delay": "1s"}}, "context": _b64(self._rng.randbytes(4))}})

    def _publish_ack(self, device: Device, item: QueuedDownlink, acknowledged: bool) -> None:
        self.stats["downlinks_acked" if acknowledged else "downlinks_nacked"] += 1
        if self.flavour == "chirpstack":
            self._publish(device, "ack", {"deduplicationId": self._uuid(), "time": self._time(),
                                          "deviceInfo": self._device_info(device), "queueItemId": item.id,
                                          "acknowledged": acknowledged, "fCntDown": item.f_cnt})
        elif acknowledged:
            self._publish(device, "down/ack", self._tts_down(device, item, "downlink_ack"))
        else:
            self._publish(device, "down/nack", self._tts_down(device, item, "downlink_nack"))

    def _tts_down(self, device: Device, item: QueuedDownlink, kind: str) -> dict[str, Any]:
        inner: dict[str, Any] = {"f_port": item.f_port, "f_cnt": item.f_cnt, "frm_payload": _b64(item.data),
                                 "confirmed": item.confirmed, "priority": item.priority,
                                 "correlation_ids": list(item.correlation_ids)}
        if kind != "downlink_queued":
            inner = {"session_key_id": _b64(device.session_key_id), **inner}
        return {"end_device_ids": self._tts_ids(device),
                "correlation_ids": [*item.correlation_ids, *self._correlation_ids("as:downlink")],
                "received_at": self._time(), kind: inner}

    def _device_info(self, device: Device) -> dict[str, Any]:
        return {"tenantId": self.tenant_id, "tenantName": self.tenant_name, "applicationId": self.application_id,
                "applicationName": self.application_name, "deviceProfileId": self.device_profile_id,
                "deviceProfileName": self.device_profile_name, "deviceName": device.name,
                "devEui": device.dev_eui.hex(), "tags": device.tags}

    def _tts_ids(self, device: Device) -> dict[str, Any]:
        return {"device_id": device.device_id, "application_ids": {"application_id": self.application_id},
                "dev_eui": device.dev_eui.hex().upper(),
                "join_eui": device.join_eui.hex().upper() if device.join_eui else "",
                "dev_addr": device.dev_addr.hex().upper() if device.dev_addr else ""}

    def _publish(self, device: Device, event: str, body: dict[str, Any], duplicate: bool = False) -> None:
        topic = self.event_topic(device, event)
        payload = _omit_defaults(body)
        info = self._client.publish(topic, json.dumps(payload, separators=(",", ":")), qos=self.qos)
        if len(self._infos) > 1000:
            self._infos = [i for i in self._infos if not i.is_published()]
        self._infos.append(info)
        self.published.append(Published(topic, payload, self.qos, self.clock(), duplicate))

    # -- downlink commands ---------------------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.stats["downlink_commands"] += 1
            try:
                if self.flavour == "chirpstack":
                    self._take_chirpstack(msg.topic, msg.payload)
                else:
                    self._take_tts(msg.topic, msg.payload)
            except _Refused as e:
                self.stats["downlink_rejected"] += 1
                self.rejected.append(Rejected(msg.topic, str(e), bytes(msg.payload)))
                log.warning("downlink on %s rejected: %s", msg.topic, e)
            self._handled.notify_all()

    def _take_chirpstack(self, topic: str, raw: bytes) -> None:
        eui_text = topic.split("/")[3]
        body = _json_object(raw)
        if not isinstance(body.get("devEui"), str) or body["devEui"].lower() != eui_text.lower():
            raise _Refused(f"devEui {body.get('devEui')!r} does not match the topic's {eui_text}")
        device = self._device_by_text(eui_text)
        f_port = body.get("fPort")
        if not _is_int(f_port) or not 1 <= f_port <= 223:
            raise _Refused(f"fPort must be 1..223, got {f_port!r}")
        if "data" not in body:
            raise _Refused("no data (an object needs a codec, which this LNS has not)")
        confirmed = body.get("confirmed", False)
        if not isinstance(confirmed, bool):
            raise _Refused(f"confirmed must be a boolean, got {confirmed!r}")
        data = _b64decode(body["data"])
        item_id = body.get("id") if isinstance(body.get("id"), str) and body.get("id") else self._uuid()
        device.queue.append(QueuedDownlink(item_id, f_port, data, confirmed))
        self.stats["downlinks_queued"] += 1

    def _take_tts(self, topic: str, raw: bytes) -> None:
        parts = topic.split("/")
        device_id, action = parts[3], "/".join(parts[4:])
        device = next((d for d in self.devices.values() if d.device_id == device_id), None)
        if device is None:
            raise _Refused(f"unknown device {device_id}")
        body = _json_object(raw)
        downlinks = body.get("downlinks")
        if not isinstance(downlinks, list) or (action == "down/push" and not downlinks):
            raise _Refused("downlinks must be a non-empty array")
        items = [self._tts_item(d) for d in downlinks]
        if action == "down/replace":
            device.queue.clear()
        for item in items:
            device.queue.append(item)
            self.stats["downlinks_queued"] += 1
            self._publish(device, "down/queued", self._tts_down(device, item, "downlink_queued"))

    def _tts_item(self, d: object) -> QueuedDownlink:
        if not isinstance(d, dict):
            raise _Refused("each downlink must be an object")
        f_port = d.get("f_port")
        if not _is_int(f_port) or not 1 <= f_port <= 223:
            raise _Refused(f"f_port must be 1..223, got {f_port!r}")
        if "frm_payload" not in d:
            raise _Refused("no frm_payload (a decoded_payload needs a downlink encoder)")
        priority = d.get("priority", "LOWEST")
        if priority not in TTS_PRIORITIES:
            raise _Refused(f"priority must be one of {TTS_PRIORITIES}, got {priority!r}")
        confirmed = d.get("confirmed", False)
        ids = d.get("correlation_ids", [])
        if not isinstance(confirmed, bool) or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise _Refused("confirmed must be a boolean and correlation_ids an array of strings")
        return QueuedDownlink(self._uuid(), f_port, _b64decode(d["frm_payload"]), confirmed, priority, tuple(ids))

    def _device_by_text(self, eui_text: str) -> Device:
        try:
            eui = _eui(eui_text, 8)
        except (ValueError, EmulatorError) as e:
            raise _Refused(f"bad DevEUI {eui_text!r}") from e
        device = self.devices.get(eui)
        if device is None:
            raise _Refused(f"unknown device {eui_text}")
        return device

    def _device(self, eui: bytes) -> Device:
        device = self.devices.get(eui)
        if device is None:
            raise LNSError(f"unknown device {eui.hex()}")
        return device

    # -- MQTT plumbing -----------------------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: Any,
                    properties: object) -> None:
        if reason_code.is_failure:
            self._connect_error = str(reason_code)
            self._connected.set()
            return
        client.subscribe([(topic, self.qos) for topic in self.downlink_topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reason_codes: list[Any],
                      properties: object) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self._connect_error = f"subscription to {self.downlink_topics} refused"
        self._connected.set()

    def _stop_client(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # -- ids and times -----------------------------------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _time(self) -> str:
        return _iso(self.clock(), zulu=self.flavour == "tts")

    def _correlation_ids(self, *prefixes: str) -> list[str]:
        ms = int(self.clock() * 1000)
        return [f"{p}:{_ulid(ms, self._rng)}" for p in prefixes]


class _Refused(Exception):
    """A downlink command that fails validation (internal; recorded as Rejected)."""


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise _Refused(f"not JSON: {e}") from e
    if not isinstance(body, dict):
        raise _Refused("not a JSON object")
    return body


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: object) -> bytes:
    if not isinstance(text, str):
        raise _Refused(f"payload must be a base64 string, got {text!r}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _Refused(f"bad base64 {text!r}") from e


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _location(position: Position | None, lat: str, lon: str, alt: str, **extra: str) -> dict[str, Any] | None:
    if position is None:
        return None
    return {lat: position.latitude, lon: position.longitude, alt: position.altitude, **extra}


def _omit_defaults(value: Any) -> Any:
    """Drop what the Protocol Buffers JSON mapping leaves out: None, false, 0, "", and empty lists and maps."""
    if isinstance(value, dict):
        out = {k: _omit_defaults(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, False, 0, "", [], {})}
    if isinstance(value, list):
        return [_omit_defaults(v) for v in value]
    return value


def _iso(epoch: float, *, zulu: bool) -> str:
    """RFC 3339 UTC with nine fractional digits: ChirpStack ends in "+00:00", The Things Stack in "Z".

    The clock is rounded to the microsecond first: a float epoch carries no more, and the rest would be noise.
    """
    micros = round(epoch * 1_000_000)
    seconds, frac = divmod(micros, 1_000_000)
    base = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac * 1000:09d}" + ("Z" if zulu else "+00:00")


def _ulid(ms: int, rng: random.Random) -> str:
    """A ULID (48-bit milliseconds, 80 random bits, Crockford base32), as TTS correlation ids carry."""
    n = (ms & ((1 << 48) - 1)) << 80 | rng.getrandbits(80)
    return "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in range(25, -1, -1))


def _published(info: mqtt.MQTTMessageInfo, timeout: float) -> bool:
    try:
        info.wait_for_publish(timeout)
    except (ValueError, RuntimeError):
        return False  # not queued (disconnected), or gone
    return info.is_published()
