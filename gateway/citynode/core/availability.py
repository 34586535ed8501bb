"""Which devices are online: online after any uplink, offline after `offline_after_intervals` times the
device's expected interval without one.

Devices the registry lists but the bridge has not heard since it started count from the start: a node that
stays silent for that long is reported offline once. Times are epoch seconds from the pipeline's clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DeviceLiveness:
    interval_s: float
    last_seen: float | None  # None: not heard since the bridge started
    since: float  # when we started watching
    online: bool | None  # None: nothing published yet


class Availability:
    def __init__(self, default_interval_s: float = 3600.0, offline_after_intervals: float = 3.0,
                 max_devices: int = 200_000):
        if default_interval_s <= 0 or offline_after_intervals <= 0:
            raise ValueError("intervals must be positive")
        self.default_interval_s = default_interval_s
        self.offline_after_intervals = offline_after_intervals
        self.max_devices = max_devices
        self._devices: dict[str, DeviceLiveness] = {}

    def timeout_s(self, interval_s: float | None) -> float:
        return (interval_s or self.default_interval_s) * self.offline_after_intervals

    def watch(self, device: str, interval_s: float | None, now: float) -> None:
        """Start watching a device that has not been heard yet (a registry device)."""
        if device not in self._devices and len(self._devices) < self.max_devices:
            self._devices[device] = DeviceLiveness(interval_s or self.default_interval_s, None, now, None)

    def heard(self, device: str, interval_s: float | None, now: float) -> bool:
        """Record an uplink. True when the device has just become online (publish "online")."""
        entry = self._devices.get(device)
        if entry is None:
            if len(self._devices) >= self.max_devices:
                self._evict()
            entry = self._devices[device] = DeviceLiveness(interval_s or self.default_interval_s, now, now, None)
        entry.interval_s = interval_s or self.default_interval_s
        entry.last_seen = now if entry.last_seen is None else max(entry.last_seen, now)
        changed = entry.online is not True
        entry.online = True
        return changed

    def due(self, now: float) -> list[tuple[str, float | None, float]]:
        """Devices that have just gone offline: (device, last_seen or None, seconds of silence). Each is reported
        once, until it is heard again."""
        out = []
        for device, entry in self._devices.items():
            if entry.online is False:
                continue
            reference = entry.last_seen if entry.last_seen is not None else entry.since
            silence = now - reference
            if silence >= entry.interval_s * self.offline_after_intervals:
                entry.online = False
                out.append((device, entry.last_seen, silence))
        return out

    def is_online(self, device: str) -> bool | None:
        entry = self._devices.get(device)
        return entry.online if entry else None

    def last_seen(self, device: str) -> float | None:
        entry = self._devices.get(device)
        return entry.last_seen if entry else None

    def interval(self, device: str) -> float:
        entry = self._devices.get(device)
        return entry.interval_s if entry else self.default_interval_s

    def _evict(self) -> None:
        # drop the longest-silent tenth: a flood of fake DevEUIs must not grow memory without bound
        ordered = sorted(self._devices.items(), key=lambda kv: kv[1].last_seen or kv[1].since)
        for device, _ in ordered[: max(1, len(ordered) // 10)]:
            del self._devices[device]
