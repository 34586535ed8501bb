# The simulated world of an emulated node: soil that dries and gets watered, a container that fills and is
# emptied, temperatures with a daily swing, a battery that slowly drains, and sensor faults in time windows.
# The buses below present it exactly as the real sensors would (ADC microvolts, A02YYUW frames, echo times,
# SDI-12 replies, DS18B20 readings), so the real drivers run unchanged in emulation.
#
# Scenario (JSON, all keys optional; hours count from the scenario's start):
#   {"kind": "soil", "seed": 1,
#    "vwc_start": 30, "vwc_min": 6, "dry_per_day": 3.0, "irrigations": [{"at_h": 40, "to": 35}],
#    "irrigate_below": 0,                       # > 0: the city waters automatically below this VWC
#    "probe": {"dry_mv": 2480, "wet_mv": 1210, "wet_vwc": 45},
#    "fill_start": 10, "fill_per_day": 25, "empty_above": 0, "collections_h": [30],
#    "empty_m": 1.2, "full_m": 0.2,
#    "temp_mean": 12, "temp_swing": 5, "soil_temp_mean": 13, "soil_temp_swing": 2,
#    "battery_v": 3.6, "battery_drop_per_day": 0.0005, "noise": 0.2,
#    "faults": [{"sensor": "soil"|"fill"|"temperature"|"battery", "from_h": 10, "to_h": 12,
#                "mode": "absent"|"stuck"|"noisy"|"out_of_range"}]}

import math

_DAY_S = 86400


class World:
    def __init__(self, scenario, clock):
        self.s = scenario or {}
        self.clock = clock
        self.t0 = self.s.get('start', clock.time())
        self.seed = self.s.get('seed', 1)
        self.stuck = {}

    def hours(self):
        return (self.clock.time() - self.t0) / 3600.0

    def _jitter(self, salt):
        # Deterministic noise in [-1, 1] from the time and a salt: the same scenario gives the same run.
        x = (int(self.clock.time()) * 1103515245 + salt * 12345 + self.seed * 2654435761) & 0x7FFFFFFF
        return ((x % 2001) - 1000) / 1000.0

    def fault(self, sensor):
        h = self.hours()
        for f in self.s.get('faults', ()):
            if f.get('sensor') == sensor and f.get('from_h', 0) <= h < f.get('to_h', 1e9):
                return f.get('mode', 'absent')
        return None

    # -- soil -------------------------------------------------------------------------------------------------

    def vwc(self):
        s = self.s
        h = self.hours()
        level = s.get('vwc_start', 30.0)
        last_h = 0.0
        events = sorted(s.get('irrigations', ()), key=lambda e: e.get('at_h', 0))
        for e in events:
            if e.get('at_h', 0) > h:
                break
            level = max(s.get('vwc_min', 6.0), level - s.get('dry_per_day', 3.0) * (e['at_h'] - last_h) / 24.0)
            level = e.get('to', 35.0)
            last_h = e['at_h']
        level = max(s.get('vwc_min', 6.0), level - s.get('dry_per_day', 3.0) * (h - last_h) / 24.0)
        below = s.get('irrigate_below', 0)
        if below and level < below:
            # automatic irrigation: back to 35 %, then drying again
            period = (35.0 - below) / max(0.01, s.get('dry_per_day', 3.0)) * 24.0
            level = 35.0 - ((h - last_h) % period) * s.get('dry_per_day', 3.0) / 24.0
        return level

    def soil_temperature(self):
        s = self.s
        phase = 2 * math.pi * ((self.clock.time() % _DAY_S) / _DAY_S - 0.375)
        return s.get('soil_temp_mean', 13.0) + s.get('soil_temp_swing', 2.0) * math.sin(phase)

    def probe_mv(self):
        p = self.s.get('probe', {})
        dry, wet, wet_vwc = p.get('dry_mv', 2480), p.get('wet_mv', 1210), p.get('wet_vwc', 45.0)
        return dry - self.vwc() / wet_vwc * (dry - wet) + 3.0 * self._jitter(1)

    # -- fill -------------------------------------------------------------------------------------------------

    def fill_pct(self):
        s = self.s
        h = self.hours()
        rate = s.get('fill_per_day', 25.0) / 24.0
        start = s.get('fill_start', 10.0)
        last = 0.0
        for c in sorted(s.get('collections_h', ())):
            if c > h:
                break
            last, start = c, 0.0
        level = start + rate * (h - last)
        above = s.get('empty_above', 0)
        if above and level > above:
            # collected automatically once above the threshold: the waste company's round
            period = above / max(0.001, rate)
            level = ((h - last) - (above - start) / max(0.001, rate)) % period * rate
        return min(110.0, level)

    def distance_m(self):
        s = self.s
        empty, full = s.get('empty_m', 1.2), s.get('full_m', 0.2)
        return empty - self.fill_pct() / 100.0 * (empty - full) + 0.003 * self._jitter(2)

    def air_temperature(self):
        s = self.s
        phase = 2 * math.pi * ((self.clock.time() % _DAY_S) / _DAY_S - 0.375)
        return s.get('temp_mean', 12.0) + s.get('temp_swing', 5.0) * math.sin(phase) + 0.2 * self._jitter(3)

    # -- power ------------------------------------------------------------------------------------------------

    def battery_v(self):
        s = self.s
        return s.get('battery_v', 3.6) - s.get('battery_drop_per_day', 0.0005) * self.hours() / 24.0 \
            + 0.005 * self._jitter(4)

    def faulty(self, sensor, value):
        """Apply a fault mode to a value; None means the sensor does not answer."""
        mode = self.fault(sensor)
        if mode is None:
            self.stuck.pop(sensor, None)
            return value
        if mode == 'absent':
            return None
        if mode == 'stuck':
            return self.stuck.setdefault(sensor, value)
        if mode == 'noisy':
            return value * (1.0 + 0.5 * self._jitter(7))
        return value * 10.0  # out_of_range: far beyond what the sensor can report


class SimADC:
    """ADC on a soil probe or a 1:ratio battery divider: calibrated microvolts."""

    def __init__(self, world, what, ratio=2.0):
        self.world = world
        self.what = what
        self.ratio = ratio

    def read_uv(self):
        w = self.world
        if self.what == 'soil':
            mv = w.faulty('soil', w.probe_mv())
        else:
            v = w.faulty('battery', w.battery_v())
            mv = None if v is None else v * 1000.0 / self.ratio
        if mv is None:
            raise OSError(5, 'EIO')
        return int(mv * 1000)


class SimDS18X20:
    """ds18x20.DS18X20 stand-in for the container or soil thermometer."""

    def __init__(self, world, what):
        self.world = world
        self.what = what

    def _value(self):
        w = self.world
        if self.what == 'soil':
            return w.faulty('temperature', w.soil_temperature())
        return w.faulty('temperature', w.air_temperature())

    def scan(self):
        return [] if self._value() is None else [b'\x28\xc1\x7e\x00\x00\x00\x00\x5a']

    def convert_temp(self):
        pass

    def read_temp(self, rom):
        v = self._value()
        if v is None:
            raise OSError(5, 'no device')
        return int(v * 16) / 16.0  # 12-bit resolution: 1/16 °C


class SimA02UART:
    """A free-running A02YYUW: a frame every 100 ms for the current distance (mm)."""

    def __init__(self, world):
        self.world = world
        self.clock = world.clock
        self.t0 = self.clock.ticks_ms()
        self.sent = 0

    def _frames(self):
        due = (self.clock.ticks_ms() - self.t0) // 100 - self.sent
        if due <= 0:
            return b''
        self.sent += due
        d = self.world.faulty('fill', self.world.distance_m())
        if d is None:
            return b''
        mm = max(0, min(65535, int(d * 1000)))
        hi, lo = mm >> 8, mm & 0xFF
        return bytes([0xFF, hi, lo, (0xFF + hi + lo) & 0xFF]) * (due if due < 8 else 8)

    def any(self):
        self._buf = getattr(self, '_buf', b'') + self._frames()
        return len(self._buf)

    def read(self, n=None):
        self.any()
        if not self._buf:
            return None
        n = len(self._buf) if n is None else n
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def write(self, buf):
        return len(buf)


def sim_pulse(world):
    """time_pulse_us for a trigger/echo sensor looking at the simulated surface (343 m/s at 20 °C)."""

    def pulse_us(pin, level, timeout_us):
        d = world.faulty('fill', world.distance_m())
        if d is None:
            return -2
        c = 331.3 + 0.606 * world.air_temperature()
        us = int(2 * d / c * 1e6)
        return -1 if us > timeout_us else us

    return pulse_us
