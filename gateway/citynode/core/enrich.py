"""What the registry adds to an uplink: the device id used in topics, its kind, asset id and location, and the
fill level recomputed from the container geometry.

A device the registry does not know still gets an identity: its id is the network server's device name
(sanitised) or its DevEUI, and `known` is False so the platform can tell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..registry import Device
from .messages import number
from .topics import sanitise_id

MAX_FILL_RATIO = 1.25  # an overfilled container reads above 100 %, up to 125 % (the codec's fill_pct range)


@dataclass(frozen=True)
class Identity:
    device_id: str
    dev_eui: str
    kind: str  # "soil" | "fill" | "unknown"
    known: bool
    asset_id: str | None = None
    location: dict | None = None  # GeoJSON Point
    labels: Mapping[str, str] = field(default_factory=dict)
    device: Device | None = None

    def __hash__(self) -> int:
        return hash((self.device_id, self.dev_eui))


def geojson(location: tuple[float, float] | None) -> dict | None:
    """(lat, lon) -> GeoJSON Point (coordinates are [lon, lat])."""
    if location is None:
        return None
    lat, lon = location
    return {"type": "Point", "coordinates": [lon, lat]}


def identify(dev_eui: str, device: Device | None, *, lns_name: str | None = None,
             payload_kind: str | None = None) -> Identity:
    if device is not None:
        return Identity(device.name, dev_eui, device.kind, True, device.asset_id, geojson(device.location),
                        dict(device.labels), device)
    device_id = sanitise_id(lns_name, dev_eui) if lns_name else dev_eui
    return Identity(device_id, dev_eui, payload_kind or "unknown", False)


def fill_from_distance(distance_m: object, empty_distance_m: float, full_distance_m: float) -> float | None:
    """Fill level in % from the measured distance: clamp((empty - d) / (empty - full), 0, 1.25) x 100, rounded
    to 0.1 %. None when there is no distance or the geometry is unusable."""
    d = number(distance_m)
    if d is None or not empty_distance_m > full_distance_m:
        return None
    ratio = (empty_distance_m - d) / (empty_distance_m - full_distance_m)
    return round(min(max(ratio, 0.0), MAX_FILL_RATIO) * 100, 1)


def derive_fill(measurements: dict, device: Device | None) -> tuple[dict, dict]:
    """(measurements with fill_pct recomputed when the registry has the geometry, the `derived` block)."""
    node_value = measurements.get("fill_pct")
    if device is not None and device.has_geometry:
        computed = fill_from_distance(measurements.get("distance_m"), device.empty_distance_m,
                                      device.full_distance_m)
        if computed is not None:
            return ({**measurements, "fill_pct": computed},
                    {"fill_pct_source": "registry_geometry", "fill_pct_node": node_value})
    return measurements, {"fill_pct_source": "node" if node_value is not None else None,
                          "fill_pct_node": node_value}
