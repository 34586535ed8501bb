"""Decoded codec data -> one Sample per measurement time.

A soil_reading, fill_reading or alarm is one sample taken when the uplink was received. A batch expands to
one sample per entry, each with its own time = received_at + offset_s (offset_s <= 0, newest last). The
batch's battery belongs to its newest sample only; its flags (the union over the batch) go on every sample.
Measurement names are the spec's, with the unit in the name; a value the node did not send is None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .messages import number

MEASUREMENTS: dict[str, tuple[str, ...]] = {
    "soil": ("vwc_pct", "soil_temperature_c", "soil_tension_kpa", "soil_ec_us_cm"),
    "fill": ("fill_pct", "distance_m", "temperature_c"),
}
READING_MESSAGES = {"soil_reading": "soil", "fill_reading": "fill"}
MAX_OFFSET_S = 30 * 86400  # a sample older than this (corrupt age) is placed at the uplink time


@dataclass(frozen=True)
class Sample:
    measurements: dict
    time: datetime
    offset_s: int
    index: int
    count: int
    battery_v: float | None
    flags: tuple[str, ...]


def kind_of(data: Mapping) -> str | None:
    """'soil' or 'fill' from a decoded message, None when the message does not say."""
    message = data.get("message")
    if message in READING_MESSAGES:
        return READING_MESSAGES[message]
    kind = data.get("node_kind")
    return kind if kind in MEASUREMENTS else None


def _flags(data: Mapping) -> tuple[str, ...]:
    flags = data.get("flags")
    if not isinstance(flags, (list, tuple)):
        return ()
    return tuple(f for f in flags if isinstance(f, str))


def _measurements(kind: str, source: Mapping) -> dict:
    return {name: number(source.get(name)) for name in MEASUREMENTS[kind]}


def samples(data: Mapping, kind: str, received_at: datetime) -> list[Sample]:
    """The samples in one decoded uplink (soil_reading, fill_reading, alarm or batch) of `kind`."""
    flags = _flags(data)
    battery = number(data.get("battery_v"))
    entries = data.get("samples")
    if data.get("message") != "batch" or not isinstance(entries, (list, tuple)):
        return [Sample(_measurements(kind, data), received_at, 0, 0, 1, battery, flags)]
    entries = [e for e in entries if isinstance(e, Mapping)]
    count = len(entries)
    out = []
    for i, entry in enumerate(entries):
        offset = number(entry.get("offset_s"))
        offset = int(offset) if offset is not None and -MAX_OFFSET_S <= offset <= 0 else 0
        try:
            when = received_at + timedelta(seconds=offset)
        except OverflowError:  # a received_at at the very start of the calendar
            when, offset = received_at, 0
        out.append(Sample(_measurements(kind, entry), when, offset, i, count,
                          battery if i == count - 1 else None, flags))
    return out
