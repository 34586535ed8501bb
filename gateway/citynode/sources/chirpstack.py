"""ChirpStack v4 MQTT integration (lns_formats.md §1).

Events arrive on `application/{application_id}/device/{dev_eui}/event/{event}` as protobuf-JSON (camelCase,
bytes in base64, fields with default values left out: no "fCnt" means 0, no "confirmed" means false).
Only `up` carries an uplink; join, status, ack, txack, log, location and integration events are counted and
acknowledged at once. Downlinks go to `application/{application_id}/device/{dev_eui}/command/down` as
{"devEui", "confirmed", "fPort", "data"}.

parse_event() is pure and never raises: every `up` becomes an Uplink or a Rejected with a reason code:
  invalid_json, invalid_message, too_large, bad_topic, bad_dev_eui, dev_eui_mismatch, invalid_field,
  no_payload (no data), mac_only (fPort 0), encrypted (ChirpStack has no AppSKey: joinServerContext set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..records import Downlink, Emit, Rejected, RxInfo, Uplink
from . import (
    MAX_RX,
    DownlinkError,
    MqttSource,
    b64,
    default_client_id,
    dev_eui,
    integer,
    load_json_object,
    number,
    obj,
    or_default,
    parse_time,
    rejected,
    text,
)

SOURCE = "chirpstack"
EVENTS = ("up", "join", "status", "ack", "txack", "log", "location", "integration")


@dataclass
class ChirpStackSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = ""  # stable per bridge process (a persistent session needs it); default from the host name
    application_id: str = "+"  # "+" for all applications
    qos: int = 1
    clean_session: bool = False  # keep the session: the broker holds QoS 1 events while the bridge is away
    shared_group: str | None = None  # subscribe $share/<group>/... (MQTT 5) to spread load over bridges
    keepalive: int = 60
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    session_expiry_s: int = 7 * 86400  # MQTT 5 only: how long the broker keeps the session

    def __post_init__(self) -> None:
        if not self.client_id:
            self.client_id = default_client_id(SOURCE)
        if self.qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        if not self.application_id or "#" in self.application_id or "/" in self.application_id:
            raise ValueError("application_id must be one id or '+'")


def split_topic(topic: str) -> tuple[str, str, str] | None:
    """(application_id, dev_eui as in the topic, event) or None."""
    parts = topic.split("/") if isinstance(topic, str) else []
    if len(parts) != 6 or parts[0] != "application" or parts[2] != "device" or parts[4] != "event":
        return None
    return parts[1], parts[3], parts[5]


def parse_event(topic: str, payload: bytes, now: datetime) -> Uplink | Rejected | None:
    """One ChirpStack event -> Uplink, Rejected, or None for events that carry no uplink."""
    parts = split_topic(topic)
    if parts is None:
        return rejected(SOURCE, "bad_topic", f"not a ChirpStack event topic: {str(topic)[:120]!r}", now, payload)
    _, topic_eui, event = parts
    if event != "up":
        return None
    doc, reason, detail = load_json_object(payload)
    if doc is None:
        return rejected(SOURCE, reason, detail, now, payload, dev_eui(topic_eui))
    info = obj(doc.get("deviceInfo"))
    from_topic, from_body = dev_eui(topic_eui), dev_eui(info.get("devEui"))
    if info.get("devEui") is not None and from_body is None:
        return rejected(SOURCE, "bad_dev_eui", f"deviceInfo.devEui {str(info.get('devEui'))[:40]!r} is not 16 hex "
                                               "digits", now, payload, from_topic)
    if from_topic and from_body and from_topic != from_body:
        return rejected(SOURCE, "dev_eui_mismatch", f"topic DevEUI {from_topic} but deviceInfo.devEui {from_body}",
                        now, payload, from_topic)
    eui = from_body or from_topic
    if eui is None:
        return rejected(SOURCE, "bad_dev_eui", f"no usable DevEUI (topic has {topic_eui[:40]!r})", now, payload)
    received_at = parse_time(doc.get("time"), now)

    def bad(what: str) -> Rejected:
        return rejected(SOURCE, "invalid_field", what, received_at, payload, eui)

    fport = integer(or_default(doc, "fPort", 0), 0, 255)
    if fport is None:
        return bad(f"fPort {str(doc.get('fPort'))[:40]!r} is not 0..255")
    fcnt = integer(or_default(doc, "fCnt", 0), 0, 0xFFFFFFFF)
    if fcnt is None:
        return bad(f"fCnt {str(doc.get('fCnt'))[:40]!r} is not 0..4294967295")
    if doc.get("joinServerContext"):
        return rejected(SOURCE, "encrypted", "payload is encrypted with a key ChirpStack does not hold "
                                             "(joinServerContext set)", received_at, payload, eui)
    data = doc.get("data")
    if data is None or data == "":
        return rejected(SOURCE, "no_payload", f"uplink {fcnt} has no data (fPort {fport})", received_at, payload, eui)
    frame = b64(data)
    if frame is None:
        return bad("data is not base64")
    if fport == 0:
        return rejected(SOURCE, "mac_only", f"uplink {fcnt} on fPort 0 (MAC commands only)", received_at, payload,
                        eui)
    rx = []
    for entry in doc.get("rxInfo") if isinstance(doc.get("rxInfo"), list) else ():
        entry = obj(entry)
        rx.append(RxInfo(text(entry.get("gatewayId"), 64) or "", number(entry.get("rssi")), number(entry.get("snr"))))
        if len(rx) >= MAX_RX:
            break
    tx = obj(doc.get("txInfo"))
    lora = obj(obj(tx.get("modulation")).get("lora"))
    confirmed = doc.get("confirmed", False)
    return Uplink(
        source=SOURCE, dev_eui=eui, fport=fport, payload=frame, received_at=received_at, fcnt=fcnt,
        device_name=text(info.get("deviceName")), rx=tuple(rx),
        spreading_factor=integer(lora.get("spreadingFactor"), 5, 12),
        frequency_hz=integer(tx.get("frequency"), 1, 10_000_000_000),
        confirmed=confirmed is True, source_id=text(doc.get("deduplicationId"), 64), raw=bytes(payload))


def downlink_message(d: Downlink) -> dict:
    """The JSON ChirpStack enqueues from .../command/down."""
    import base64

    return {"devEui": d.dev_eui, "confirmed": bool(d.confirmed), "fPort": d.fport,
            "data": base64.b64encode(d.payload).decode("ascii")}


class ChirpStackSource(MqttSource):
    """Uplinks from ChirpStack's MQTT integration; downlinks back through it."""

    name = SOURCE

    def __init__(self, settings: ChirpStackSettings, emit: Emit):
        super().__init__(settings, emit, parse_event)
        self._apps: dict[str, str] = {}  # dev_eui -> application id it was last heard in

    def subscriptions(self) -> list[str]:
        topic = f"application/{self.settings.application_id}/device/+/event/+"
        group = self.settings.shared_group
        return [f"$share/{group}/{topic}" if group else topic]

    def event_of(self, topic: str) -> str:
        parts = split_topic(topic)
        return parts[2] if parts and parts[2] in EVENTS else "other"

    def remember(self, topic: str, item: Uplink) -> None:
        parts = split_topic(topic)
        if parts:
            self._apps[item.dev_eui] = parts[0]

    def send_downlink(self, d: Downlink) -> None:
        """Enqueue `d` in ChirpStack (QoS 1; queued by paho while disconnected). Raises DownlinkError when the
        device's application is unknown (with application_id "+", until the device has been heard)."""
        app = self.settings.application_id
        if app == "+":
            app = self._apps.get(d.dev_eui)
            if app is None:
                raise DownlinkError(f"application of {d.dev_eui} unknown: not heard since the bridge started "
                                    "(set application_id)")
        if not 1 <= d.fport <= 223:
            raise DownlinkError(f"fPort {d.fport} is not 1..223")
        self._publish(f"application/{app}/device/{d.dev_eui}/command/down", downlink_message(d), qos=1)
