"""The JSON payloads the bridge publishes (docs/asyncapi.yaml has their schemas).

Conventions: snake_case keys with the unit in the name, numbers as numbers, a missing value is null (never a
sentinel), times in ISO 8601 UTC with a "Z" and milliseconds. Every event message carries a message_id that
is a UUIDv5 over what the node sent (dev_eui, fcnt, fport, payload, sample index), so a redelivered uplink
yields the same ids and the platform can drop repeats.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import datetime, timezone
from typing import Any

READING = "citynode/reading/1"
STATE = "citynode/state/1"
AVAILABILITY = "citynode/availability/1"
STATUS = "citynode/status/1"
ALERT = "citynode/alert/1"
DEADLETTER = "citynode/deadletter/1"
SET_RESPONSE = "citynode/set_response/1"

# Fixed namespace for citynode message ids (uuid5 of the DNS namespace and "citynode.messages").
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "citynode.messages")
MAX_RAW_BYTES = 16384  # a dead letter carries at most this much of the raw message

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def iso(dt: datetime) -> str:
    """2026-05-04T09:34:15.775Z: UTC, milliseconds, "Z"."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}."
            f"{dt.microsecond // 1000:03d}Z")


def iso_epoch(t: float) -> str:
    return iso(datetime.fromtimestamp(t, timezone.utc))


def number(value: Any) -> int | float | None:
    """A finite int or float, else None (bools, NaN and infinities are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def message_id(dev_eui: str, fcnt: int | None, fport: int, payload: bytes, sample_index: int = 0,
               *extra: str) -> str:
    """The stable id of what one uplink produced: the same uplink always gives the same id."""
    name = "|".join([dev_eui, "" if fcnt is None else str(fcnt), str(fport), payload.hex(), str(sample_index),
                     *extra])
    return str(uuid.uuid5(NAMESPACE, name))


def encode(message: dict) -> bytes:
    """Compact UTF-8 JSON; raises ValueError on NaN or infinity (callers pass numbers through number())."""
    return _ENCODER.encode(message).encode("utf-8")


def rf_block(uplink) -> dict:
    """Radio metadata of an Uplink: the best gateway's RSSI/SNR (highest RSSI, then SNR) and how many heard it."""
    best = None
    for rx in uplink.rx:
        rssi, snr = number(rx.rssi_dbm), number(rx.snr_db)
        rank = (rssi if rssi is not None else -math.inf, snr if snr is not None else -math.inf)
        if best is None or rank > best[0]:
            best = (rank, rx, rssi, snr)
    return {
        "rssi_dbm": best[2] if best else None,
        "snr_db": best[3] if best else None,
        "gateway_count": len(uplink.rx),
        "gateway_id": best[1].gateway_id if best else None,
        "spreading_factor": number(uplink.spreading_factor),
        "frequency_hz": number(uplink.frequency_hz),
    }


def identity(ident) -> dict:
    """The device block every device message starts with (ident is an enrich.Identity)."""
    return {"device_id": ident.device_id, "dev_eui": ident.dev_eui, "device_known": ident.known,
            "kind": ident.kind, "asset_id": ident.asset_id, "location": ident.location}


def reading(ident, uplink, sample, *, message: str, mid: str, derived: dict) -> dict:
    return {
        "schema": READING,
        "message_id": mid,
        **identity(ident),
        "labels": dict(ident.labels),
        "time": iso(sample.time),
        "received_at": iso(uplink.received_at),
        "measurements": dict(sample.measurements),
        "derived": derived,
        "battery_v": number(sample.battery_v),
        "flags": list(sample.flags),
        "message": message,
        "fcnt": uplink.fcnt,
        "fport": uplink.fport,
        "sample_index": sample.index,
        "sample_count": sample.count,
        "rf": rf_block(uplink),
        "source": uplink.source,
        "raw": uplink.payload.hex(),
    }


def state(ident, *, last_seen: datetime, measured_at: datetime | None, measurements: dict,
          battery_v, flags, fcnt, rf: dict, source: str, alerts: list[str], firmware_version: str | None,
          config_crc: int | None) -> dict:
    return {
        "schema": STATE,
        **identity(ident),
        "last_seen": iso(last_seen),
        "measured_at": iso(measured_at) if measured_at else None,
        "measurements": dict(measurements),
        "battery_v": number(battery_v),
        "flags": list(flags),
        "fcnt": fcnt,
        "rf": rf,
        "source": source,
        "alerts": sorted(alerts),
        "firmware_version": firmware_version,
        "config_crc": config_crc,
    }


def availability(ident, *, online: bool, last_seen: datetime | None, now: datetime,
                 expected_interval_s: float) -> dict:
    return {
        "schema": AVAILABILITY,
        "state": "online" if online else "offline",
        "device_id": ident.device_id,
        "dev_eui": ident.dev_eui,
        "kind": ident.kind,
        "last_seen": iso(last_seen) if last_seen else None,
        "time": iso(now),
        "expected_interval_s": expected_interval_s,
    }


STATUS_FIELDS = ("reset_cause", "flags", "firmware_version", "wake_count", "sample_interval_s", "batch_size",
                 "battery_v", "sensor_errors", "radio_errors", "config_crc")


def status(ident, uplink, data: dict, *, mid: str) -> dict:
    body = {
        "schema": STATUS,
        "message_id": mid,
        "device_id": ident.device_id,
        "dev_eui": ident.dev_eui,
        "kind": ident.kind,
        "time": iso(uplink.received_at),
        "received_at": iso(uplink.received_at),
        "fcnt": uplink.fcnt,
    }
    for key in STATUS_FIELDS:
        value = data.get(key)
        body[key] = list(value) if key == "flags" else value
    body["rf"] = rf_block(uplink)
    body["source"] = uplink.source
    return body


def alert(ident, event, *, mid: str, time: datetime) -> dict:
    """event is an alerts.AlertEvent."""
    return {
        "schema": ALERT,
        "message_id": mid,
        "alert": event.alert,
        "state": event.state,
        "severity": event.severity,
        "origin": event.origin,
        **identity(ident),
        "value": number(event.value),
        "threshold": number(event.threshold),
        "unit": event.unit,
        "time": iso(time),
        "description": event.description,
    }


def deadletter(*, reason: str, detail: str, source: str, received_at: datetime, dev_eui: str | None,
               device_id: str | None = None, fport: int | None = None, fcnt: int | None = None,
               payload: bytes | None = None, raw: bytes | None = None) -> dict:
    raw_b = raw[:MAX_RAW_BYTES] if raw is not None else None
    seed = "|".join([source, reason, dev_eui or "", "" if fcnt is None else str(fcnt),
                     "" if fport is None else str(fport), payload.hex() if payload is not None else "",
                     (raw or b"").hex() if raw is not None else detail + iso(received_at)])
    return {
        "schema": DEADLETTER,
        "message_id": str(uuid.uuid5(NAMESPACE, "deadletter|" + seed)),
        "reason": reason,
        "detail": detail,
        "source": source,
        "dev_eui": dev_eui,
        "device_id": device_id,
        "received_at": iso(received_at),
        "fport": fport,
        "fcnt": fcnt,
        "payload_hex": payload.hex() if payload is not None else None,
        "raw": base64.b64encode(raw_b).decode("ascii") if raw_b is not None else None,
        "raw_encoding": "base64",
        "raw_truncated": raw is not None and len(raw) > MAX_RAW_BYTES,
    }


def set_response(*, status: str, device_id: str, dev_eui: str | None, time: datetime,
                 request_id: str | None = None, command: str | None = None, seq: int | None = None,
                 error: str | None = None, config_crc: int | None = None) -> dict:
    return {
        "schema": SET_RESPONSE,
        "request_id": request_id,
        "status": status,
        "command": command,
        "seq": seq,
        "error": error,
        "config_crc": config_crc,
        "device_id": device_id,
        "dev_eui": dev_eui,
        "time": iso(time),
    }
