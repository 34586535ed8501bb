"""Calibration at the site: readings from the node's own drivers on the board, a stability check, and the
result written into the board's config.json (validated by the node's schema).

Soil (capacitive probe, firmware/citynode_fw/drivers/soil_capacitive.py): the probe's voltage FALLS as the soil
gets wetter. Two points: dry (probe in air or dry soil) -> soil_dry_mv = 0 % VWC, wet (probe in water or
saturated soil) -> soil_wet_mv = soil_wet_vwc_pct. A point is accepted once `count` consecutive readings lie
within `tolerance` of each other; its value is their median.
Fill (ultrasonic sensor under the lid): the empty container's distance is the median of a stable run of
readings -> empty_distance_m; full_distance_m is given or the sensor's blind zone plus a margin.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import deploy
from .board_link import BoardLink
from .errors import BoardNotAnswering, CalibrationError, ConfigInvalid
from .firmware import config_text, node_config, validate_config
from .identity import write_private

CAL_MARK = "CN-CAL "
# Runs on the board: the node's own drivers (app/sensors.py), configured from its config.json, measured
# `count` times; no radio, no watchdog, nothing written.
_ROUTINE = """
import sys, json
from citynode_fw.app import config, sensors
if sys.platform == 'linux':
    from citynode_fw.hal.unix import UnixHW
    _hw = UnixHW()
else:
    from citynode_fw.hal.esp32 import ESP32HW
    _hw = ESP32HW()
try:
    with open('config.json') as _f:
        _c = config.parse(_f.read())[0]
except OSError:
    _c = config.defaults()
_c['kind'] = %(kind)r
_d = sensors.make(%(kind)r, _c, _hw)
for _i in range(%(count)d):
    _r = sensors.measure(%(kind)r, {%(kind)r: _d.get(%(kind)r)})
    print(%(mark)r + json.dumps(_r.get(%(kind)r) or {}))
"""
# Closest distance each ultrasonic sensor can measure (datasheets: A02YYUW 3 cm, JSN-SR04T 25 cm), plus 7 cm so
# "full" is reported before the waste reaches the sensor's blind zone.
FULL_MARGIN_M = {"a02yyuw": 0.10, "jsn_sr04t_uart": 0.32, "jsn_sr04t_pulse": 0.32}
MIN_SPAN_MV = 100  # a dry and a wet point closer than this: the probe is not in the soil or not wired
MIN_DEPTH_M = 0.05


@dataclass
class Point:
    """An accepted calibration point: the median of the stable run and every reading taken."""

    name: str
    value: float
    readings: list[float]


def stable_run(values: list[float], count: int, tolerance: float) -> list[float] | None:
    """The last `count` values when they all lie within `tolerance` of each other, else None."""
    if len(values) < count:
        return None
    window = values[-count:]
    return window if max(window) - min(window) <= tolerance else None


def read_values(link: BoardLink, kind: str, count: int) -> Iterator[dict[str, Any]]:
    """`count` readings from the board's driver for `kind`, as they come."""
    code = _ROUTINE % {"kind": kind, "count": count, "mark": CAL_MARK}
    seen = False
    for line in link.exec_lines(code, timeout=60 + 5 * count):
        if line.startswith(CAL_MARK):
            seen = True
            yield json.loads(line[len(CAL_MARK):])
    if not seen:
        raise BoardNotAnswering(link.port, "the calibration routine printed no reading; is the firmware on it?")


Reader = Callable[[int], Iterator[dict[str, Any]]]


def measure_point(name: str, reader: Reader, field: str, *, count: int, tolerance: float, max_readings: int,
                  on_reading: Callable[[float, bool], None] = lambda v, ok: None) -> Point:
    """Read until `count` consecutive readings agree within `tolerance` (at most `max_readings`)."""
    values: list[float] = []
    while len(values) < max_readings:
        window = None
        for r in reader(min(count, max_readings - len(values))):
            if window is not None:
                continue  # the rest of this batch: let the board finish its loop
            value = r.get(field)
            if value is None:
                raise CalibrationError(name, f"the sensor gave no reading ({r.get('error') or 'no value'})", values,
                                       "Check the sensor's cable and plug, then try again.")
            values.append(float(value))
            window = stable_run(values, count, tolerance)
            on_reading(float(value), window is not None)
        if window is not None:
            return Point(name, statistics.median(window), values)
    raise CalibrationError(name, f"the readings did not settle: no {count} in a row within {tolerance:g}", values)


def soil_settings(dry: Point, wet: Point, wet_vwc_pct: float) -> dict[str, Any]:
    if dry.value - wet.value < MIN_SPAN_MV:
        raise CalibrationError("wet", f"dry ({dry.value:g} mV) and wet ({wet.value:g} mV) are too close: a "
                                      "capacitive probe reads lower when wet", wet.readings,
                               "Check the probe went into water or wet soil for the wet point, and into air or dry "
                               "soil for the dry point.")
    return {"soil_dry_mv": round(dry.value), "soil_wet_mv": round(wet.value), "soil_wet_vwc_pct": wet_vwc_pct}


def fill_settings(empty: Point, sensor: str, full_distance_m: float | None) -> dict[str, Any]:
    empty_m = round(empty.value, 3)
    full_m = round(full_distance_m if full_distance_m is not None else FULL_MARGIN_M.get(sensor, 0.25), 3)
    if full_m > empty_m - MIN_DEPTH_M:
        raise CalibrationError("empty", f"the full distance {full_m:g} m leaves no room below the empty distance "
                                        f"{empty_m:g} m", empty.readings,
                               "Measure with the container empty and the lid closed, or give --full-distance-m.")
    return {"empty_distance_m": empty_m, "full_distance_m": full_m}


def board_config(link: BoardLink) -> dict[str, Any]:
    """The board's config.json, validated; a board without one gets the defaults."""
    state = deploy.read_state(link, ["config.json"])
    if state.config_text is None:
        return node_config().defaults()
    cfg, errors = node_config().parse(state.config_text)
    if errors:
        raise ConfigInvalid("the board's config.json", errors)
    return cfg


def write_config(link: BoardLink, current: dict[str, Any], changes: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Apply `changes` to the board's config (validated first); (new config, whether the file changed)."""
    new = validate_config({**current, **changes}, "the calibration")
    if config_text(new) == config_text(current):
        return new, False
    folder = Path(tempfile.mkdtemp(prefix="citynode-cal-"))
    try:
        path = write_private(folder / "config.json", config_text(new))
        p = deploy.Plan([deploy.Wanted("config.json", path, deploy.sha256_file(path), atomic=True)], [], [])
        deploy.apply(link, p)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return new, True
