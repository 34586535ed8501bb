"""Readings as FIWARE Smart Data Models entities in NGSI-v2 keyValues form.

    fill node -> WasteContainer    (dataModel.WasteManagement)
        {"id": "urn:ngsi-ld:WasteContainer:<asset or device>", "type": "WasteContainer",
         "fillingLevel": 0..1 (fill_pct / 100, capped at 1), "temperature": °C, "location": GeoJSON,
         "dateObserved", "TimeInstant": sample time, "refDevice": ["urn:ngsi-ld:Device:<device>"]}
    soil node -> GreenspaceRecord  (dataModel.ParksAndGardens)
        {"id": "urn:ngsi-ld:GreenspaceRecord:<device>", "type": "GreenspaceRecord",
         "soilMoistureVwc": 0..1 (vwc_pct / 100), "soilTemperature": °C, "soilMoistureEc": S/m
         (µS/cm x 1e-4), "soilMoisturePressure": kPa, "dateObserved", "TimeInstant", "location",
         "refDevice": "urn:ngsi-ld:Device:<device>"}

Attributes without a value are left out (NGSI keyValues has no "missing"). The topic is a template with
{base}, {type}, {id} and {device_id}; by default "{base}/fiware/{type}/{device_id}".
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.messages import encode, number
from ..core.topics import is_safe_topic, sanitise_id
from ..records import Publication

DEFAULT_TOPIC = "{base}/fiware/{type}/{device_id}"
US_PER_CM_TO_S_PER_M = 1e-4  # 1 µS/cm = 1e-6 S / 1e-2 m


def _ratio(pct, cap: float | None = None) -> float | None:
    value = number(pct)
    if value is None:
        return None
    ratio = max(value / 100.0, 0.0)
    return round(min(ratio, cap) if cap is not None else ratio, 6)


def _entity_key(reading: Mapping) -> str:
    return reading.get("asset_id") or reading["device_id"]


def entity(reading: Mapping) -> dict | None:
    """The NGSI-v2 keyValues entity for one reading message, None for a kind without a model."""
    m = reading.get("measurements") or {}
    device_ref = f"urn:ngsi-ld:Device:{reading['device_id']}"
    if reading.get("kind") == "fill":
        body = {
            "id": f"urn:ngsi-ld:WasteContainer:{_entity_key(reading)}",
            "type": "WasteContainer",
            "fillingLevel": _ratio(m.get("fill_pct"), cap=1.0),
            "temperature": number(m.get("temperature_c")),
            "refDevice": [device_ref],
        }
    elif reading.get("kind") == "soil":
        ec = number(m.get("soil_ec_us_cm"))
        body = {
            "id": f"urn:ngsi-ld:GreenspaceRecord:{reading['device_id']}",
            "type": "GreenspaceRecord",
            "soilMoistureVwc": _ratio(m.get("vwc_pct"), cap=1.0),
            "soilTemperature": number(m.get("soil_temperature_c")),
            "soilMoistureEc": round(ec * US_PER_CM_TO_S_PER_M, 6) if ec is not None else None,
            "soilMoisturePressure": number(m.get("soil_tension_kpa")),
            "refDevice": device_ref,
        }
    else:
        return None
    body["dateObserved"] = reading["time"]
    body["TimeInstant"] = reading["time"]
    body["location"] = reading.get("location")
    return {k: v for k, v in body.items() if v is not None}


def entities(reading: Mapping, base: str, topic_template: str = DEFAULT_TOPIC) -> list[Publication]:
    body = entity(reading)
    if body is None:
        return []
    try:
        topic = topic_template.format(base=base, type=body["type"], id=body["id"],
                                      device_id=sanitise_id(reading["device_id"]))
    except (KeyError, IndexError, ValueError):
        return []
    if not is_safe_topic(topic):
        return []
    return [Publication(topic, encode(body), retain=False, qos=1, key=f"{reading['message_id']}:ngsi")]
