# Trigger/echo ultrasonic rangefinder: JSN-SR04T in its default trigger/echo mode (no mode resistor;
# "mode 0" in the v3.0 board's documentation, "mode 1" in older ones) and the HC-SR04 class.
#
#   trigger pin --> TRIG     a >= 10 us high pulse starts one ping (HC-SR04 datasheet, "Timing diagram")
#   echo pin    <-- ECHO     high for the round-trip time of the sound (through a 5 V -> 3.3 V divider)
#
#     TRIG  __|~~10us~~|__________________________________
#     ECHO  ____________________|~~~~~~ t_echo ~~~~~~|____
#
# The echo is timed by the injected pulse_us(pin, 1, timeout_us), with machine.time_pulse_us semantics
# (MicroPython docs/library/machine.rst): -2 when the pulse did not start within the timeout (no sensor,
# no echo line), -1 when it lasted longer (no echo came back before the timeout).
#
# Distance (speed of sound in air, c = 331.3 + 0.606 * T m/s, good to at least +-30 C; Sverre Holm, via
# dangerousprototypes.com 2014; distance = c * t / 2 for the round trip):
#
#   c   = 3313000 + 606 * T10        in 0.1 mm/s, T10 = container temperature in 0.1 C
#   d   = c * t_echo / 2e7           in mm, t_echo in us
#
# all in integers, so a board and a PC give the same millimetre. The container temperature comes from
# measure(temperature_c=...) (e.g. a DS18B20 inside the bin); 20 C is assumed when it is unknown. Without
# compensation the error is about 1.8 % per 10 C away from 20 C.
#
# One measurement: `pings` pings, `ping_gap_ms` apart (the HC-SR04 datasheet asks for a measurement cycle
# over 60 ms so an echo of the previous ping is not taken for the next one), echo times that failed are
# dropped, outliers are rejected (filters.robust_median: farther than max(3 * MAD, tolerance_us) from the
# median; a MAD above tolerance_us means the echoes disagree) and the median of the rest gives the
# distance, rounded to 1 mm.
#
# Flags: 'out_of_range' inside the blind zone (JSN-SR04T: readings below ~25 cm are invalid; ESPHome
# jsn_sr04t rejects <= 250 mm) or beyond max_m (JSN-SR04T 6 m), the distance being clamped to that limit;
# 'sensor_fault' when too few pings echoed or they disagree, with error 'timeout' (no pulse), 'no_echo'
# (pulse too long), 'noisy' (echoes disagree) or 'bus' (exception from the pins).

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from .filters import div_round, robust_median, round_int

_C0_X10 = const(3313000)  # 331.3 m/s in 0.1 mm/s
_C_PER_C_X10 = const(606)  # 0.606 m/s per C = 606 (0.1 mm/s) per 0.1 C
_D_DIV = const(20000000)  # 0.1 mm/s * us / 2 -> mm
_C_SLOWEST_MM_PER_MS = const(307)  # c at -40 C, for the echo timeout
_T_DEFAULT_X10 = const(200)  # 20.0 C when the temperature is unknown
_T_MIN_X10 = const(-400)  # outside -40..+85 C (the spec's temperature_c range) a value is not believed
_T_MAX_X10 = const(850)
_TRIGGER_US = const(10)
_PINGS = const(5)
_PING_GAP_MS = const(60)
_TOLERANCE_US = const(300)  # ~5 cm at 20 C
_MAD_K = const(3)
_PULSE_NOT_STARTED = const(-2)


class UltrasonicPulse:
    """Trigger/echo ultrasonic sensor: measure(temperature_c=None) -> {'distance_m', 'raw_us', 'raw_pings',
    'flags', 'error'}."""

    def __init__(self, trigger, echo, pulse_us, clock, pings=_PINGS, ping_gap_ms=_PING_GAP_MS, blind_m=0.25,
                 max_m=6.0, trigger_us=_TRIGGER_US, tolerance_us=_TOLERANCE_US, timeout_us=None, min_valid=None):
        self._trigger = trigger
        self._echo = echo
        self._pulse_us = pulse_us
        self._clock = clock
        self._pings = pings if pings > 0 else 1
        self._gap_ms = ping_gap_ms
        self._blind_mm = round_int(blind_m * 1000)
        self._max_mm = round_int(max_m * 1000)
        self._trigger_us = trigger_us
        self._tol_us = tolerance_us
        if timeout_us is None:
            # round trip to max range at the slowest plausible speed (-40 C), plus 10 %
            timeout_us = self._max_mm * 2000 // _C_SLOWEST_MM_PER_MS * 11 // 10
        self._timeout_us = timeout_us
        self._min_valid = min_valid if min_valid else (self._pings + 1) // 2
        self._buf = [0] * self._pings  # echo times, reused by every measure()

    def _ping(self):
        """One trigger pulse and its echo time in us (negative: no echo, time_pulse_us codes)."""
        trig = self._trigger
        trig.off()
        self._clock.sleep_us(2)
        trig.on()
        self._clock.sleep_us(self._trigger_us)
        trig.off()
        return self._pulse_us(self._echo, 1, self._timeout_us)

    def measure(self, temperature_c=None):
        flags = []
        out = {'distance_m': None, 'raw_us': None, 'raw_pings': 0, 'flags': flags, 'error': None}
        buf = self._buf
        n = 0
        not_started = 0
        too_long = 0
        try:
            for i in range(self._pings):
                if i:
                    self._clock.sleep_ms(self._gap_ms)
                t = self._ping()
                if type(t) is not int:
                    too_long += 1
                elif t == _PULSE_NOT_STARTED:
                    not_started += 1
                elif t <= 0:
                    too_long += 1
                else:
                    buf[n] = t
                    n += 1
        except Exception:  # noqa: BLE001 - driver contract: bus exceptions become flags
            flags.append('sensor_fault')
            out['error'] = 'bus'
            return out
        out['raw_pings'] = n
        if n < self._min_valid:
            flags.append('sensor_fault')
            out['error'] = 'timeout' if not_started >= too_long else 'no_echo'
            return out
        t_us, _ = robust_median(buf[:n], self._tol_us, _MAD_K, self._min_valid, self._tol_us)
        if t_us is None:
            flags.append('sensor_fault')
            out['error'] = 'noisy'
            return out
        out['raw_us'] = t_us
        mm = div_round(speed_x10(temperature_c) * t_us, _D_DIV)
        if mm < self._blind_mm:
            flags.append('out_of_range')
            mm = self._blind_mm
        elif mm > self._max_mm:
            flags.append('out_of_range')
            mm = self._max_mm
        out['distance_m'] = mm / 1000
        return out


def speed_x10(temperature_c=None):
    """Speed of sound in 0.1 mm/s at temperature_c (20 C when None or implausible)."""
    t10 = _T_DEFAULT_X10
    if type(temperature_c) is int or type(temperature_c) is float:
        x10 = temperature_c * 10
        if _T_MIN_X10 <= x10 <= _T_MAX_X10:  # False for NaN and infinities too
            t10 = round_int(x10)
    return _C0_X10 + _C_PER_C_X10 * t10
