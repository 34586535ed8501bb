"""Alert rules: thresholds with hysteresis, raised once and cleared once, no repeat storms.

Bridge rules (evaluated on every sample, in time order):
    collection_needed   fill node, fill_pct >= fill_collection_pct; cleared below it minus fill_hysteresis_pct
    irrigation_needed   soil node, vwc_pct <= soil_irrigation_pct; cleared above it plus soil_hysteresis_pct
    battery_low         battery_v <= battery_low_v or the low_battery flag; cleared above it plus
                        battery_hysteresis_v without the flag
    sensor_fault        the sensor_fault flag; cleared by a sample without it
    device_silent       raised by availability (tick) once, cleared when the device is heard again
Node alarms (the `alarm` uplink) become alerts named node_<event> (node_fill_full, node_soil_dry, ...); the
node applies its own thresholds, so they pass through as raised/cleared (an `emptied` event is raised only).

Samples older than the newest one judged are not judged again. A raised alert is not raised again until it has
cleared; a condition that returns within cooldown_s of the
last raise is held back until a later sample still shows it (flapping sensors do not flood the platform).
Thresholds come from AlertSettings, overridden per device by the registry's [device.thresholds].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .messages import number

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class AlertSettings:
    fill_collection_pct: float = 80.0
    soil_irrigation_pct: float = 15.0
    battery_low_v: float = 3.3
    fill_hysteresis_pct: float = 5.0
    soil_hysteresis_pct: float = 2.0
    battery_hysteresis_v: float = 0.1
    cooldown_s: float = 600.0


@dataclass(frozen=True)
class AlertEvent:
    alert: str
    state: str  # "raised" | "cleared"
    severity: str
    origin: str  # "bridge" | "node"
    value: float | None
    threshold: float | None
    unit: str | None
    description: str


@dataclass(frozen=True)
class Rule:
    alert: str
    kinds: tuple[str, ...]
    measurement: str
    direction: str  # "high": raised at >= threshold; "low": raised at <= threshold
    threshold: str  # AlertSettings / registry threshold name
    hysteresis: str
    unit: str
    severity: str
    description: str
    flag: str | None = None  # a node flag that also raises it


RULES = (
    Rule("collection_needed", ("fill",), "fill_pct", "high", "fill_collection_pct", "fill_hysteresis_pct", "%",
         "warning", "container fill level at or above the collection threshold"),
    Rule("irrigation_needed", ("soil",), "vwc_pct", "low", "soil_irrigation_pct", "soil_hysteresis_pct", "%",
         "warning", "soil water content at or below the irrigation threshold"),
    Rule("battery_low", ("soil", "fill"), "battery_v", "low", "battery_low_v", "battery_hysteresis_v", "V",
         "warning", "battery voltage at or below the low-battery threshold", flag="low_battery"),
)

# node alarm event -> (measurement carrying its value, unit, severity, stateful)
NODE_EVENTS: dict[str, tuple[str | None, str | None, str, bool]] = {
    "fill_full": ("fill_pct", "%", "warning", True),
    "emptied": ("fill_pct", "%", "info", False),
    "soil_dry": ("vwc_pct", "%", "warning", True),
    "soil_wet": ("vwc_pct", "%", "info", True),
    "battery_low": ("battery_v", "V", "warning", True),
    "sensor_fault": (None, None, "warning", True),
    "tilt": (None, None, "warning", True),
    "overheat": ("temperature_c", "°C", "critical", True),
}
SILENT = "device_silent"


class AlertEngine:
    """Alert state per (device, alert). In memory: after a restart a condition that still holds is raised once
    more."""

    def __init__(self, settings: AlertSettings | None = None, max_devices: int = 200_000):
        self.settings = settings or AlertSettings()
        self.max_devices = max_devices
        self._active: dict[str, set[str]] = {}
        self._last_raised: dict[tuple[str, str], float] = {}
        self._judged_at: dict[str, float] = {}  # time of the newest sample the rules have seen, per device

    def _threshold(self, name: str, overrides: Mapping[str, float]) -> float:
        value = overrides.get(name) if overrides else None
        return float(value) if number(value) is not None else float(getattr(self.settings, name))

    def active(self, device: str) -> list[str]:
        return sorted(self._active.get(device, ()))

    def is_active(self, device: str, alert: str) -> bool:
        return alert in self._active.get(device, ())

    def _set(self, device: str, alert: str, on: bool, now: float) -> None:
        alerts = self._active.setdefault(device, set())
        if on:
            alerts.add(alert)
            self._last_raised[(device, alert)] = now
        else:
            alerts.discard(alert)
        if len(self._active) > self.max_devices:  # never grow without bound on a flood of fake DevEUIs
            for key in list(self._active)[: len(self._active) // 10]:
                if not self._active[key]:
                    del self._active[key]

    def transition(self, device: str, alert: str, condition: bool, now: float, *, cooldown: bool = True) -> str | None:
        """Apply a condition: "raised", "cleared" or None (no change, or held back by the cooldown)."""
        active = self.is_active(device, alert)
        if condition and not active:
            last = self._last_raised.get((device, alert))
            if cooldown and last is not None and 0 <= now - last < self.settings.cooldown_s:
                return None
            self._set(device, alert, True, now)
            return "raised"
        if not condition and active:
            self._set(device, alert, False, now)
            return "cleared"
        return None

    def evaluate(self, device: str, kind: str, measurements: Mapping, battery_v, flags, now: float,
                 overrides: Mapping[str, float] | None = None) -> list[AlertEvent]:
        """Bridge rules for one sample. A sample older than the newest one already judged changes nothing: a
        late or redelivered uplink must not flip an alert the current condition does not support."""
        if now < self._judged_at.get(device, now):
            return []
        self._judged_at[device] = now
        if len(self._judged_at) > self.max_devices:
            for key in list(self._judged_at)[: len(self._judged_at) // 10]:
                del self._judged_at[key]
        overrides = overrides or {}
        events = []
        values = dict(measurements)
        values["battery_v"] = battery_v
        for rule in RULES:
            if kind not in rule.kinds:
                continue
            value = number(values.get(rule.measurement))
            threshold = self._threshold(rule.threshold, overrides)
            hysteresis = float(getattr(self.settings, rule.hysteresis))
            flagged = rule.flag is not None and rule.flag in flags
            if value is None and not flagged:
                continue  # nothing to judge by (a missing value never raises nor clears)
            if rule.direction == "high":
                raised = value is not None and value >= threshold
                clear = value is not None and value < threshold - hysteresis
            else:
                raised = (value is not None and value <= threshold) or flagged
                clear = value is not None and value > threshold + hysteresis and not flagged
            if self.is_active(device, rule.alert):
                state = self.transition(device, rule.alert, False, now) if clear else None
            else:
                state = self.transition(device, rule.alert, True, now) if raised else None
            if state:
                events.append(AlertEvent(rule.alert, state, rule.severity, "bridge", value, threshold, rule.unit,
                                         rule.description))
        if "sensor_fault" in flags or self.is_active(device, "sensor_fault"):
            state = self.transition(device, "sensor_fault", "sensor_fault" in flags, now)
            if state:
                events.append(AlertEvent("sensor_fault", state, "warning", "bridge", None, None, None,
                                         "the node reports a failed sensor"))
        return events

    def node_alarm(self, device: str, data: Mapping, now: float) -> AlertEvent | None:
        """An `alarm` uplink as an alert event (None for an unknown event or a repeat of the current state)."""
        event = data.get("event")
        if event not in NODE_EVENTS:
            return None
        measurement, unit, severity, stateful = NODE_EVENTS[event]
        name = f"node_{event}"
        cleared = data.get("cleared") is True
        if stateful:
            state = self.transition(device, name, not cleared, now, cooldown=False)
            if state is None:
                return None
        else:
            state = "raised"
        value = number(data.get(measurement)) if measurement else None
        return AlertEvent(name, state, severity, "node", value, None, unit, f"node alarm: {event.replace('_', ' ')}")

    def silent(self, device: str, silent: bool, now: float, silence_s: float,
               timeout_s: float | None = None) -> AlertEvent | None:
        state = self.transition(device, SILENT, silent, now, cooldown=False)
        if state is None:
            return None
        return AlertEvent(SILENT, state, "warning", "bridge", round(silence_s, 1) if silent else None, timeout_s, "s",
                          "no uplink for longer than the expected interval times offline_after_intervals")
