"""The bridge's pipeline: Uplink | Rejected in, Publications out. Pure apart from the injected dedup store and
clock; the app feeds it from its sources and hands what it returns to the outbox.

    handle(item)                      dedup -> decode -> normalise -> enrich -> derive -> alerts -> publications
    tick(now)                         availability (offline, device_silent) and expired commands
    command(kind, device, payload)    a platform command -> (Downlink or None, responses)

Every Publication has QoS 1 and a stable key: readings, alerts and responses to acks carry message ids derived
from the uplink, retained messages use their topic. handle(), tick() and command() never raise: anything
unexpected becomes a dead letter (reason "internal_error") and is logged. The app must acknowledge an input
message even when handle() returns nothing (a duplicate).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from citynode_codec import decode_uplink

from ..records import Downlink, Publication, Rejected, Uplink
from ..registry import Device, Registry
from ..sinks import fiware as fiware_sink
from ..sinks import sensorthings as sta_sink
from . import dedup as dd
from . import messages as msg
from .alerts import AlertEngine, AlertEvent, AlertSettings
from .availability import Availability
from .downlinks import CommandError, PendingCommands, parse_command
from .enrich import Identity, derive_fill, identify
from .normalise import MEASUREMENTS, kind_of, samples
from .topics import Topics, is_safe_topic, sanitise_id

log = logging.getLogger(__name__)

READING_MESSAGES = ("soil_reading", "fill_reading", "batch", "alarm")
UNKNOWN_DEVICES = ("publish", "deadletter")
MAX_TRACKED_DEVICES = 200_000
HEX16 = re.compile(r"[0-9a-f]{16}")


@dataclass
class PipelineSettings:
    base_topic: str = "citynode"
    dedup_window_s: float = 600.0
    unknown_devices: str = "publish"  # "publish" (flagged device_known=false) | "deadletter"
    default_expected_interval_s: float = 3600.0
    offline_after_intervals: float = 3.0
    # alert thresholds (per device overrides: the registry's [device.thresholds])
    fill_collection_pct: float = 80.0
    soil_irrigation_pct: float = 15.0
    battery_low_v: float = 3.3
    fill_hysteresis_pct: float = 5.0
    soil_hysteresis_pct: float = 2.0
    battery_hysteresis_v: float = 0.1
    alert_cooldown_s: float = 600.0
    # optional platform mappings
    sensorthings: sta_sink.SensorThingsSettings | None = None
    fiware: bool = False
    fiware_topic: str = fiware_sink.DEFAULT_TOPIC
    # commands
    command_ttl_s: float = 86400.0
    max_pending_per_device: int = 8

    def __post_init__(self) -> None:
        Topics(self.base_topic)  # raises TopicError for an unusable base
        if isinstance(self.sensorthings, dict):  # straight from a config file
            self.sensorthings = sta_sink.SensorThingsSettings(**self.sensorthings)
        if self.unknown_devices not in UNKNOWN_DEVICES:
            raise ValueError(f"unknown_devices must be one of {UNKNOWN_DEVICES}, got {self.unknown_devices!r}")
        for name in ("dedup_window_s", "default_expected_interval_s", "offline_after_intervals", "command_ttl_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")

    def alert_settings(self) -> AlertSettings:
        return AlertSettings(self.fill_collection_pct, self.soil_irrigation_pct, self.battery_low_v,
                             self.fill_hysteresis_pct, self.soil_hysteresis_pct, self.battery_hysteresis_v,
                             self.alert_cooldown_s)


@dataclass
class DeviceState:
    """What the pipeline remembers about a device, for its retained state and for routing downlinks."""

    ident: Identity
    via: str | None = None
    last_seen: datetime | None = None
    measured_at: datetime | None = None
    measurements: dict = field(default_factory=dict)
    battery_v: float | None = None
    flags: tuple[str, ...] = ()
    fcnt: int | None = None
    rf: dict = field(default_factory=dict)
    source: str | None = None
    firmware_version: str | None = None
    config_crc: int | None = None


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


class Pipeline:
    def __init__(self, registry: Registry, settings: PipelineSettings | None = None, dedup=None,
                 clock: Callable[[], float] = time.time):
        self.registry = registry
        self.settings = settings or PipelineSettings()
        self.topics = Topics(self.settings.base_topic)
        self.dedup = dedup if dedup is not None else dd.Deduplicator(self.settings.dedup_window_s)
        self.clock = clock
        self.alerts = AlertEngine(self.settings.alert_settings())
        self.availability = Availability(self.settings.default_expected_interval_s,
                                         self.settings.offline_after_intervals)
        self.pending = PendingCommands(self.settings.command_ttl_s, self.settings.max_pending_per_device)
        self.stats: Counter[str] = Counter()
        self._devices: OrderedDict[str, DeviceState] = OrderedDict()
        self._unknown_ids: OrderedDict[str, str] = OrderedDict()  # device id -> DevEUI, for unregistered devices
        self._lock = threading.RLock()

    # -- helpers ------------------------------------------------------------------------------------------------

    def _pub(self, topic: str, body: dict, *, retain: bool = False, key: str | None = None) -> Publication:
        if not is_safe_topic(topic):  # cannot happen with Topics; a guard, not a code path
            raise ValueError(f"unsafe topic {topic!r}")
        return Publication(topic, msg.encode(body), retain=retain, qos=1, key=key if key is not None else topic)

    def _deadletter(self, *, reason: str, detail: str, source: str, received_at: datetime,
                    dev_eui: str | None = None, fport: int | None = None, fcnt: int | None = None,
                    payload: bytes | None = None, raw: bytes | None = None) -> list[Publication]:
        device = self.registry.get(dev_eui) if dev_eui else None
        body = msg.deadletter(reason=reason, detail=detail[:500], source=source, received_at=received_at,
                              dev_eui=dev_eui, device_id=device.name if device else None, fport=fport, fcnt=fcnt,
                              payload=payload, raw=raw)
        self.stats["deadletters"] += 1
        self.stats[f"deadletter.{reason}"] += 1
        return [self._pub(self.topics.deadletter(), body, key=body["message_id"])]

    def _state_of(self, ident: Identity) -> DeviceState:
        st = self._devices.get(ident.dev_eui)
        if st is None:
            st = self._devices[ident.dev_eui] = DeviceState(ident)
            if len(self._devices) > MAX_TRACKED_DEVICES:
                self._devices.popitem(last=False)
        else:
            st.ident = ident
            self._devices.move_to_end(ident.dev_eui)
        return st

    def _identify(self, uplink: Uplink, device: Device | None, payload_kind: str | None) -> Identity:
        if device is not None:
            return identify(uplink.dev_eui, device)
        known = self._devices.get(uplink.dev_eui)
        kind = payload_kind or (known.ident.kind if known else None)
        return identify(uplink.dev_eui, None, lns_name=self._unknown_id(uplink), payload_kind=kind)

    def _unknown_id(self, uplink: Uplink) -> str:
        """An unregistered device's id: its LNS name when no other device has it, else its DevEUI. LNS names are
        unique per application only, and one device may be named after another's DevEUI; two devices sharing an
        id would overwrite each other's retained state."""
        eui = uplink.dev_eui
        wanted = sanitise_id(uplink.device_name, eui) if uplink.device_name else eui
        if wanted != eui and (HEX16.fullmatch(wanted) or self.registry.by_name(wanted) is not None
                              or self._unknown_ids.get(wanted, eui) != eui):
            wanted = eui  # a DevEUI is unique, and no device may take another's DevEUI as its name
        self._unknown_ids[wanted] = eui
        self._unknown_ids.move_to_end(wanted)
        if len(self._unknown_ids) > MAX_TRACKED_DEVICES:
            self._unknown_ids.popitem(last=False)
        return wanted

    def _alert_pub(self, ident: Identity, event: AlertEvent, mid: str, when: datetime) -> Publication:
        self.stats[f"alert.{event.alert}.{event.state}"] += 1
        return self._pub(self.topics.alert(ident.kind, ident.device_id, event.alert),
                         msg.alert(ident, event, mid=mid, time=when), key=mid)

    def _availability_pub(self, ident: Identity, online: bool, last_seen: datetime | None,
                          now: float) -> Publication:
        body = msg.availability(ident, online=online, last_seen=last_seen, now=_utc(now),
                                expected_interval_s=self.availability.interval(ident.dev_eui))
        topic = self.topics.availability(ident.kind, ident.device_id)
        return self._pub(topic, body, retain=True)

    def _state_pub(self, st: DeviceState) -> Publication:
        ident = st.ident
        body = msg.state(ident, last_seen=st.last_seen, measured_at=st.measured_at, measurements=st.measurements,
                         battery_v=st.battery_v, flags=st.flags, fcnt=st.fcnt, rf=st.rf, source=st.source or "",
                         alerts=self.alerts.active(ident.dev_eui), firmware_version=st.firmware_version,
                         config_crc=st.config_crc)
        return self._pub(self.topics.state(ident.kind, ident.device_id), body, retain=True)

    # -- handle -------------------------------------------------------------------------------------------------

    def handle(self, item: Uplink | Rejected) -> list[Publication]:
        """Publications for one source item; never raises."""
        with self._lock:
            try:
                if isinstance(item, Rejected):
                    self.stats["rejected"] += 1
                    return self._deadletter(reason=item.reason, detail=item.detail, source=item.source,
                                            received_at=item.received_at, dev_eui=item.dev_eui, raw=item.raw)
                if isinstance(item, Uplink):
                    return self._handle_uplink(item)
                log.error("pipeline got %s, not an Uplink or Rejected", type(item).__name__)
                return []
            except Exception as e:  # noqa: BLE001 - a bug must cost one message (as a dead letter), not the bridge
                log.exception("pipeline failed on an item from %s", getattr(item, "source", "?"))
                try:
                    return self._deadletter(
                        reason="internal_error", detail=f"{type(e).__name__}: {e}", source=str(item.source),
                        received_at=item.received_at, dev_eui=getattr(item, "dev_eui", None),
                        fport=getattr(item, "fport", None), fcnt=getattr(item, "fcnt", None),
                        payload=getattr(item, "payload", None), raw=getattr(item, "raw", None))
                except Exception:  # noqa: BLE001
                    log.exception("could not even build the dead letter")
                    return []

    def _handle_uplink(self, up: Uplink) -> list[Publication]:
        now = self.clock()
        self.stats["uplinks"] += 1
        verdict = self.dedup.check(up, now)
        self.stats[f"dedup.{verdict}"] += 1
        if verdict == dd.DUPLICATE:
            return []

        def dead(reason: str, detail: str) -> list[Publication]:
            return self._deadletter(reason=reason, detail=detail, source=up.source, received_at=up.received_at,
                                    dev_eui=up.dev_eui, fport=up.fport, fcnt=up.fcnt, payload=up.payload, raw=up.raw)

        device = self.registry.get(up.dev_eui)
        if device is None and self.settings.unknown_devices == "deadletter":
            return dead("unknown_device", f"{up.dev_eui} is not in the device registry")
        decoded = decode_uplink(up.fport, up.payload)
        data = decoded.get("data") if isinstance(decoded, dict) else None
        if not isinstance(data, dict):
            errors = decoded.get("errors") if isinstance(decoded, dict) else None
            return dead("decode_error", "; ".join(str(e) for e in errors) if errors else "codec returned nothing")
        message = data.get("message")
        payload_kind = kind_of(data)
        if device is not None and payload_kind is not None and payload_kind != device.kind:
            return dead("kind_mismatch", f"{message} is a {payload_kind} message but the registry lists "
                                         f"{device.name} as a {device.kind} node")
        if message not in READING_MESSAGES and message not in ("status", "downlink_ack"):
            return dead("unsupported_message", f"message {message!r} is not handled by the bridge")
        ident = self._identify(up, device, payload_kind)
        if message in READING_MESSAGES and ident.kind not in MEASUREMENTS:
            return dead("unknown_kind", f"cannot tell whether {ident.device_id} is a soil or a fill node")

        out: list[Publication] = []
        st = self._state_of(ident)
        st.via = up.source
        st.source = up.source
        st.last_seen = up.received_at if st.last_seen is None else max(st.last_seen, up.received_at)
        st.fcnt = up.fcnt
        st.rf = msg.rf_block(up)
        interval = device.expected_interval_s if device else None
        if self.availability.heard(up.dev_eui, interval, now):
            out.append(self._availability_pub(ident, True, st.last_seen, now))
            cleared = self.alerts.silent(up.dev_eui, False, now, 0.0, self.availability.timeout_s(interval))
            if cleared:
                out.append(self._alert_pub(ident, cleared, msg.message_id(up.dev_eui, up.fcnt, up.fport, up.payload,
                                                                          0, "alert", cleared.alert, "cleared"),
                                           up.received_at))
        if message in READING_MESSAGES:
            out += self._readings(up, ident, st, data, message)
            self.stats["uplinks.readings"] += 1
        elif message == "status":
            out += self._status(up, ident, st, data)
        else:
            out += self._downlink_ack(up, ident, data)
        out.append(self._state_pub(st))
        return out

    def _readings(self, up: Uplink, ident: Identity, st: DeviceState, data: dict, message: str) -> list[Publication]:
        out: list[Publication] = []
        device = ident.device
        overrides = device.thresholds if device else {}
        registry_ids = device.datastreams if device else None
        if message == "alarm":
            event = self.alerts.node_alarm(up.dev_eui, data, up.received_at.timestamp())
            if event is not None:
                mid = msg.message_id(up.dev_eui, up.fcnt, up.fport, up.payload, 0, "alert", event.alert, event.state)
                out.append(self._alert_pub(ident, event, mid, up.received_at))
        for sample in samples(data, ident.kind, up.received_at):
            measurements, derived = dict(sample.measurements), {}
            if ident.kind == "fill":
                measurements, derived = derive_fill(measurements, device)
            mid = msg.message_id(up.dev_eui, up.fcnt, up.fport, up.payload, sample.index)
            body = msg.reading(ident, up, sample, message=message, mid=mid, derived=derived)
            body["measurements"] = measurements
            out.append(self._pub(self.topics.reading(ident.kind, ident.device_id), body, key=mid))
            self.stats["readings"] += 1
            if self.settings.sensorthings is not None:
                out += sta_sink.observations(body, self.settings.sensorthings, registry_ids)
            if self.settings.fiware:
                out += fiware_sink.entities(body, self.settings.base_topic, self.settings.fiware_topic)
            for event in self.alerts.evaluate(up.dev_eui, ident.kind, measurements, sample.battery_v, sample.flags,
                                              sample.time.timestamp(), overrides):
                amid = msg.message_id(up.dev_eui, up.fcnt, up.fport, up.payload, sample.index, "alert", event.alert,
                                      event.state)
                out.append(self._alert_pub(ident, event, amid, sample.time))
            if st.measured_at is None or sample.time >= st.measured_at:  # a late, older uplink never regresses state
                st.measured_at = sample.time
                st.measurements = measurements
                st.flags = sample.flags
                if sample.battery_v is not None:
                    st.battery_v = sample.battery_v
        return out

    def _status(self, up: Uplink, ident: Identity, st: DeviceState, data: dict) -> list[Publication]:
        mid = msg.message_id(up.dev_eui, up.fcnt, up.fport, up.payload, 0)
        body = msg.status(ident, up, data, mid=mid)
        st.firmware_version = body.get("firmware_version")
        st.config_crc = body.get("config_crc")
        if msg.number(body.get("battery_v")) is not None:
            st.battery_v = body["battery_v"]
        self.stats["status"] += 1
        return [self._pub(self.topics.status(ident.kind, ident.device_id), body, retain=True)]

    def _downlink_ack(self, up: Uplink, ident: Identity, data: dict) -> list[Publication]:
        entry = self.pending.match(up.dev_eui, data.get("seq"), data.get("command"))
        self.stats["acks.matched" if entry else "acks.unmatched"] += 1
        body = msg.set_response(status=str(data.get("result")), device_id=ident.device_id, dev_eui=up.dev_eui,
                                time=up.received_at, request_id=entry.request_id if entry else None,
                                command=data.get("command"), seq=data.get("seq"), config_crc=data.get("config_crc"))
        mid = msg.message_id(up.dev_eui, up.fcnt, up.fport, up.payload, 0, "set_response")
        st = self._devices.get(up.dev_eui)
        if st is not None and isinstance(data.get("config_crc"), int):
            st.config_crc = data["config_crc"]
        return [self._pub(self.topics.set_response(ident.kind, ident.device_id), body, key=mid)]

    # -- tick ---------------------------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[Publication]:
        """Availability and command expiry; call it every few seconds. Never raises."""
        with self._lock:
            try:
                return self._tick(self.clock() if now is None else now)
            except Exception:  # noqa: BLE001
                log.exception("pipeline tick failed")
                return []

    def _ident_for(self, dev_eui: str) -> Identity:
        st = self._devices.get(dev_eui)
        device = self.registry.get(dev_eui)
        if device is not None:
            return identify(dev_eui, device)
        return st.ident if st else identify(dev_eui, None)

    def _tick(self, now: float) -> list[Publication]:
        out: list[Publication] = []
        for device in self.registry:
            self.availability.watch(device.dev_eui, device.expected_interval_s, now)
        for dev_eui, last_seen, silence in self.availability.due(now):
            ident = self._ident_for(dev_eui)
            st = self._devices.get(dev_eui)
            out.append(self._availability_pub(ident, False, st.last_seen if st else None, now))
            event = self.alerts.silent(dev_eui, True, now, silence,
                                       self.availability.timeout_s(self.availability.interval(dev_eui)))
            if event is not None:
                seed = f"{dev_eui}|{event.alert}|raised|{last_seen if last_seen is not None else 'never'}"
                mid = str(uuid.uuid5(msg.NAMESPACE, seed))
                out.append(self._alert_pub(ident, event, mid, _utc(now)))
        for entry in self.pending.expire(now):
            rid = entry.request_id or f"seq{entry.seq}@{entry.created}"
            body = msg.set_response(status="expired", device_id=entry.device_id, dev_eui=entry.dev_eui,
                                    time=_utc(now), request_id=entry.request_id, command=entry.command,
                                    seq=entry.seq, error="no acknowledgement from the node before the command expired")
            key = str(uuid.uuid5(msg.NAMESPACE, f"set|{entry.dev_eui}|{rid}|expired"))
            out.append(self._pub(self.topics.set_response(entry.kind, entry.device_id), body, key=key))
        return out

    # -- commands -----------------------------------------------------------------------------------------------

    def command(self, kind: str, device: str, payload: bytes,
                now: float | None = None) -> tuple[Downlink | None, list[Publication]]:
        """A command from `<base>/<kind>/<device>/set`. Returns the Downlink to send (None when refused or a
        repeat of a request already queued) and the response publication. Never raises."""
        with self._lock:
            now = self.clock() if now is None else now
            try:
                return self._command(kind, device, payload, now)
            except Exception as e:  # noqa: BLE001
                log.exception("command for %r failed", device)
                return None, [self._response(kind, device, None, now, status="rejected",
                                             error=f"internal error: {type(e).__name__}")]

    def _response(self, kind: str, device_id: str, dev_eui: str | None, now: float, *, status: str,
                  request_id: str | None = None, command: str | None = None, seq: int | None = None,
                  error: str | None = None) -> Publication:
        body = msg.set_response(status=status, device_id=sanitise_id(device_id), dev_eui=dev_eui, time=_utc(now),
                                request_id=request_id, command=command, seq=seq, error=error)
        seed = f"set|{dev_eui or sanitise_id(device_id)}|{request_id if request_id is not None else now}|{status}"
        key = str(uuid.uuid5(msg.NAMESPACE, seed))
        self.stats[f"commands.{status}"] += 1
        return self._pub(self.topics.set_response(kind, device_id), body, key=key)

    def _find_device(self, device: str) -> Identity | None:
        found = self.registry.find(device) if isinstance(device, str) else None
        if found is not None:
            return identify(found.dev_eui, found)
        wanted = sanitise_id(device)
        for st in reversed(self._devices.values()):  # unknown devices the bridge has heard
            if st.ident.device_id == wanted or st.ident.dev_eui == wanted:
                return st.ident
        return None

    def _command(self, kind: str, device: str, payload: bytes, now: float) -> tuple[Downlink | None, list]:
        ident = self._find_device(device)
        if ident is None:
            return None, [self._response(kind, device, None, now, status="rejected",
                                         error=f"unknown device {sanitise_id(device)!r}")]
        if ident.kind != kind:
            return None, [self._response(kind, device, ident.dev_eui, now, status="rejected",
                                         error=f"{ident.device_id} is a {ident.kind} node, not {sanitise_id(kind)}")]
        try:
            command = parse_command(payload, ident.kind, ident.device_id)
        except CommandError as e:
            return None, [self._response(ident.kind, ident.device_id, ident.dev_eui, now, status="rejected",
                                         request_id=e.request_id, command=e.command, error=str(e))]
        waiting = self.pending.for_request(ident.dev_eui, command.request_id)
        if waiting is not None:  # the platform sent the same request again: answer, do not send twice
            return None, [self._response(ident.kind, ident.device_id, ident.dev_eui, now, status="queued",
                                         request_id=waiting.request_id, command=waiting.command, seq=waiting.seq)]
        try:
            entry = self.pending.add(ident.dev_eui, ident.device_id, ident.kind, command.name, command.request_id, now)
        except CommandError as e:
            return None, [self._response(ident.kind, ident.device_id, ident.dev_eui, now, status="rejected",
                                         request_id=command.request_id, command=command.name, error=str(e))]
        fport, frame = command.encode(entry.seq)
        st = self._devices.get(ident.dev_eui)
        via = (st.via if st else None) or (ident.device.source if ident.device else None)
        downlink = Downlink(ident.dev_eui, fport, frame, confirmed=command.confirmed,
                            request_id=command.request_id, seq=entry.seq, via=via)
        return downlink, [self._response(ident.kind, ident.device_id, ident.dev_eui, now, status="queued",
                                         request_id=command.request_id, command=command.name, seq=entry.seq)]

    def command_failed(self, downlink: Downlink, error: str, now: float | None = None) -> list[Publication]:
        """The app could not hand `downlink` to its source: forget the pending command and tell the platform."""
        with self._lock:
            now = self.clock() if now is None else now
            entry = self.pending.match(downlink.dev_eui, downlink.seq, self._pending_command(downlink))
            ident = self._ident_for(downlink.dev_eui)
            return [self._response(ident.kind, ident.device_id, downlink.dev_eui, now, status="failed",
                                   request_id=downlink.request_id, command=entry.command if entry else None,
                                   seq=downlink.seq, error=error[:300])]

    def _pending_command(self, downlink: Downlink) -> str | None:
        waiting = self.pending._pending.get(downlink.dev_eui, {})
        entry = waiting.get(downlink.seq) if downlink.seq is not None else None
        return entry.command if entry else None
