"""Readings as OGC SensorThings API Observations over MQTT (FROST-Server's "create Observation via MQTT").

One reading becomes one Observation per measurement that has a value and a Datastream:

    topic   v1.1/Datastreams(<id>)/Observations        (a text id is quoted: Datastreams('tree-1-vwc'))
    body    {"phenomenonTime": <sample time>, "resultTime": <received_at>, "result": <value>,
             "parameters": {"rssi": .., "snr": .., "fcnt": .., "message_id": ..}}

The Datastream id of (device, measurement) comes, in this order, from the registry's [device.datastreams],
from SensorThingsSettings.datastreams (keyed by device id or DevEUI), or from id_template, e.g.
"{device_id}-{measurement}". Measurements without an id are skipped. Creating Things and Datastreams on the
server is not done here: MQTT create gives no answer, so they must exist beforehand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..core.messages import encode
from ..records import Publication

_TEXT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")
# The topic prefix ("v1.1", or a path such as "frost/v1.1"): plain topic levels, no wildcards, no empty level.
_VERSION = re.compile(r"^[A-Za-z0-9_.-]{1,32}(/[A-Za-z0-9_.-]{1,32}){0,3}\Z")


@dataclass(frozen=True)
class SensorThingsSettings:
    version: str = "v1.1"
    datastreams: Mapping[str, Mapping[str, int | str]] = field(default_factory=dict)
    id_template: str | None = None  # "{device_id}-{measurement}", also {dev_eui}, {kind}, {asset_id}
    qos: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not _VERSION.match(self.version):
            raise ValueError(f"version must be a topic prefix such as 'v1.1' (letters, digits, '_.-', up to 4 "
                             f"levels), got {self.version!r}")


def topic_for(version: str, datastream_id: int | str) -> str | None:
    """v1.1/Datastreams(42)/Observations, v1.1/Datastreams('a-b')/Observations; None for an unsafe id."""
    if isinstance(datastream_id, bool):
        return None
    if isinstance(datastream_id, int):
        return f"{version}/Datastreams({datastream_id})/Observations" if datastream_id >= 0 else None
    if isinstance(datastream_id, str) and _TEXT_ID.match(datastream_id):
        return f"{version}/Datastreams('{datastream_id}')/Observations"
    return None


def datastream_id(reading: Mapping, measurement: str, settings: SensorThingsSettings,
                  registry_ids: Mapping[str, int | str] | None = None) -> int | str | None:
    if registry_ids and measurement in registry_ids:
        return registry_ids[measurement]
    for key in (reading.get("device_id"), reading.get("dev_eui")):
        table = settings.datastreams.get(key) if key else None
        if table and measurement in table:
            return table[measurement]
    if settings.id_template:
        try:
            return settings.id_template.format(device_id=reading.get("device_id"), dev_eui=reading.get("dev_eui"),
                                               kind=reading.get("kind"), asset_id=reading.get("asset_id") or "",
                                               measurement=measurement)
        except (KeyError, IndexError, ValueError):
            return None
    return None


def observations(reading: Mapping, settings: SensorThingsSettings,
                 registry_ids: Mapping[str, int | str] | None = None) -> list[Publication]:
    """The Observation publications for one reading message (core.messages.reading)."""
    rf = reading.get("rf") or {}
    out = []
    for measurement, value in (reading.get("measurements") or {}).items():
        if value is None:
            continue
        ds = datastream_id(reading, measurement, settings, registry_ids)
        topic = topic_for(settings.version, ds) if ds is not None else None
        if topic is None:
            continue
        body = {
            "phenomenonTime": reading["time"],
            "resultTime": reading["received_at"],
            "result": value,
            "parameters": {"rssi": rf.get("rssi_dbm"), "snr": rf.get("snr_db"), "fcnt": reading.get("fcnt"),
                           "message_id": reading["message_id"]},
        }
        out.append(Publication(topic, encode(body), retain=False, qos=settings.qos,
                               key=f"{reading['message_id']}:sta:{measurement}"))
    return out
