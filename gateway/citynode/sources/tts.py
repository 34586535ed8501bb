"""The Things Stack v3 MQTT server (lns_formats.md §2).

Uplinks arrive on `v3/{application_id}@{tenant_id}/devices/{device_id}/up` (open-source edition:
`v3/{application_id}/devices/...`). TTS publishes QoS 0 only and leaves empty fields out ("", 0, false): a
missing f_cnt is 0, a missing f_port is 0. frm_payload is base64, settings.frequency a string in Hz,
rx_metadata one entry per gateway. The username is `{application_id}@{tenant_id}`, the password an API key
(a secret: it is never logged or shown in repr). Downlinks are pushed to `.../devices/{device_id}/down/push`
as {"downlinks": [{"f_port", "frm_payload", "priority": "NORMAL", "confirmed", "correlation_ids"}]}.

Because TTS is QoS 0, uplinks published while the bridge is disconnected are lost at the broker: use TTS's
Storage Integration to backfill after an outage (bridge_anchors.md §7.4).

parse_event() is pure and never raises; its reason codes are ChirpStack's (invalid_json, invalid_message,
too_large, bad_topic, bad_dev_eui, no_dev_eui, device_id_mismatch, invalid_field, no_payload, mac_only).
"""

from __future__ import annotations

import base64
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

SOURCE = "tts"
EVENTS = ("up", "join", "down/queued", "down/sent", "down/ack", "down/nack", "down/failed", "service/data",
          "location/solved")


@dataclass
class TTSSettings:
    application_id: str = ""
    tenant_id: str | None = "ttn"  # None or "" for The Things Stack open-source edition
    api_key: str | None = field(default=None, repr=False)  # the MQTT password (NNSXS....): secret
    host: str = "eu1.cloud.thethings.network"
    port: int = 8883
    tls: bool = True
    ca_file: str | None = None
    client_id: str = ""
    qos: int = 0  # TTS supports QoS 0 only
    clean_session: bool = True
    keepalive: int = 60
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    device_ids: dict[str, str] = field(default_factory=dict)  # dev_eui -> TTS device id, for downlinks before
    # the device has been heard (otherwise learnt from its uplinks)

    def __post_init__(self) -> None:
        if not self.client_id:
            self.client_id = default_client_id(SOURCE)
        if not self.application_id or any(c in self.application_id for c in "+#/@"):
            raise ValueError("application_id must be the TTS application id (no '+', '#', '/', '@')")
        if self.tenant_id and any(c in self.tenant_id for c in "+#/@"):
            raise ValueError("tenant_id must not contain '+', '#', '/' or '@'")

    @property
    def username(self) -> str:
        return f"{self.application_id}@{self.tenant_id}" if self.tenant_id else self.application_id

    @property
    def password(self) -> str | None:
        return self.api_key

    @property
    def prefix(self) -> str:
        return f"v3/{self.username}"

    shared_group = None  # TTS speaks MQTT 3.1.1 only: no shared subscriptions


def split_topic(topic: str) -> tuple[str, str, str] | None:
    """(application part "app@tenant", device_id, event) or None."""
    parts = topic.split("/") if isinstance(topic, str) else []
    if len(parts) < 5 or parts[0] != "v3" or parts[2] != "devices" or not parts[1] or not parts[3]:
        return None
    return parts[1], parts[3], "/".join(parts[4:])


def parse_event(topic: str, payload: bytes, now: datetime) -> Uplink | Rejected | None:
    """One TTS message -> Uplink, Rejected, or None for messages that carry no uplink."""
    parts = split_topic(topic)
    if parts is None:
        return rejected(SOURCE, "bad_topic", f"not a TTS topic: {str(topic)[:120]!r}", now, payload)
    _, topic_device, event = parts
    if event != "up":
        return None
    doc, reason, detail = load_json_object(payload)
    if doc is None:
        return rejected(SOURCE, reason, detail, now, payload)
    ids = obj(doc.get("end_device_ids"))
    body_device = ids.get("device_id")
    if body_device is not None and body_device != topic_device:
        return rejected(SOURCE, "device_id_mismatch", f"topic device {topic_device[:64]!r} but end_device_ids."
                                                      f"device_id {str(body_device)[:64]!r}", now, payload)
    raw_eui = ids.get("dev_eui")
    eui = dev_eui(raw_eui)
    if eui is None:
        reason = "no_dev_eui" if raw_eui in (None, "") else "bad_dev_eui"
        return rejected(SOURCE, reason, f"device {topic_device[:64]!r} has no usable dev_eui "
                                        f"({str(raw_eui)[:40]!r})", now, payload)
    up = doc.get("uplink_message")
    if not isinstance(up, dict):
        return rejected(SOURCE, "invalid_message", "no uplink_message object", now, payload, eui)
    received_at = parse_time(up.get("received_at") or doc.get("received_at"), now)

    def bad(what: str) -> Rejected:
        return rejected(SOURCE, "invalid_field", what, received_at, payload, eui)

    fport = integer(or_default(up, "f_port", 0), 0, 255)
    if fport is None:
        return bad(f"f_port {str(up.get('f_port'))[:40]!r} is not 0..255")
    fcnt = integer(or_default(up, "f_cnt", 0), 0, 0xFFFFFFFF)
    if fcnt is None:
        return bad(f"f_cnt {str(up.get('f_cnt'))[:40]!r} is not 0..4294967295")
    data = up.get("frm_payload")
    if data is None or data == "":
        return rejected(SOURCE, "no_payload", f"uplink {fcnt} has no frm_payload (f_port {fport})", received_at,
                        payload, eui)
    frame = b64(data)
    if frame is None:
        return bad("frm_payload is not base64")
    if fport == 0:
        return rejected(SOURCE, "mac_only", f"uplink {fcnt} on f_port 0 (MAC commands only)", received_at, payload,
                        eui)
    rx = []
    for entry in up.get("rx_metadata") if isinstance(up.get("rx_metadata"), list) else ():
        entry = obj(entry)
        rssi = number(entry.get("rssi"))
        rx.append(RxInfo(text(obj(entry.get("gateway_ids")).get("gateway_id"), 64) or "",
                         rssi if rssi is not None else number(entry.get("channel_rssi")), number(entry.get("snr"))))
        if len(rx) >= MAX_RX:
            break
    settings = obj(up.get("settings"))
    lora = obj(obj(settings.get("data_rate")).get("lora"))
    correlation = doc.get("correlation_ids") if isinstance(doc.get("correlation_ids"), list) else []
    as_up = next((c for c in correlation if isinstance(c, str) and c.startswith("as:up:")), None)
    return Uplink(
        source=SOURCE, dev_eui=eui, fport=fport, payload=frame, received_at=received_at, fcnt=fcnt,
        device_name=text(topic_device), rx=tuple(rx), spreading_factor=integer(lora.get("spreading_factor"), 5, 12),
        frequency_hz=integer(settings.get("frequency"), 1, 10_000_000_000),
        confirmed=up.get("confirmed") is True, source_id=text(as_up, 128), raw=bytes(payload))


def downlink_message(d: Downlink) -> dict:
    correlation = ["citynode:bridge"]
    if d.request_id is not None:
        correlation.append(f"citynode:request:{d.request_id}"[:100])
    if d.seq is not None:
        correlation.append(f"citynode:seq:{d.seq}")
    return {"downlinks": [{"f_port": d.fport, "frm_payload": base64.b64encode(d.payload).decode("ascii"),
                           "priority": "NORMAL", "confirmed": bool(d.confirmed), "correlation_ids": correlation}]}


class TTSSource(MqttSource):
    """Uplinks from The Things Stack's MQTT server; downlinks pushed back to it."""

    name = SOURCE

    def __init__(self, settings: TTSSettings, emit: Emit):
        super().__init__(settings, emit, parse_event)
        self._device_ids: dict[str, str] = {k.lower(): v for k, v in settings.device_ids.items()}

    def credentials(self) -> tuple[str | None, str | None]:
        return self.settings.username, self.settings.api_key

    def subscriptions(self) -> list[str]:
        return [f"{self.settings.prefix}/devices/+/#"]

    def event_of(self, topic: str) -> str:
        parts = split_topic(topic)
        return parts[2] if parts and parts[2] in EVENTS else "other"

    def remember(self, topic: str, item: Uplink) -> None:
        parts = split_topic(topic)
        if parts:
            self._device_ids[item.dev_eui] = parts[1]

    def send_downlink(self, d: Downlink) -> None:
        """Push `d` to the device's queue. Raises DownlinkError while its TTS device id is unknown."""
        device_id = self._device_ids.get(d.dev_eui)
        if device_id is None:
            raise DownlinkError(f"TTS device id of {d.dev_eui} unknown: not heard since the bridge started "
                                "(list it in device_ids)")
        if not 1 <= d.fport <= 223:
            raise DownlinkError(f"f_port {d.fport} is not 1..223")
        self._publish(f"{self.settings.prefix}/devices/{device_id}/down/push", downlink_message(d), qos=0)
