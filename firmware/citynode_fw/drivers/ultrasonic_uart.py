# UART ultrasonic rangefinders that send the distance as a 4-byte frame:
#   DFRobot A02YYUW (SEN0311; same protocol as SEN0312/SEN0313): free-running, one frame every 100..300 ms
#   JSN-SR04T v3 in UART mode: "mode 2" = a frame per 0x55 trigger byte, or free-running ("mode 1")
#   (mode numbers as in ESPHome's jsn_sr04t docs: M1 pad / 47 kOhm = auto, M2 pad / 120 kOhm = triggered)
#
# 9600 baud, 8N1, TTL levels. Frame (DFRobot SEN0311 / SEN0312 wiki):
#
#   byte 0     1       2       3
#       0xFF   DATA_H  DATA_L  SUM        distance_mm = DATA_H * 256 + DATA_L
#                                         SUM = (0xFF + DATA_H + DATA_L) & 0xFF
#   e.g. FF 07 A1 A7 = 0x07A1 = 1953 mm
#
# Parsing: hunt for the 0xFF header, collect four bytes, check the sum. A frame with a bad sum is counted
# and dropped, and the parser resynchronises on the next 0xFF inside that frame (a noise byte before a
# real header would otherwise swallow the good frame behind it). The driver never reads more bytes than
# the frame still needs, so nothing is left over between frames.
#
# Temperature: these sensors time the echo and convert it to millimetres themselves, compensating for the
# air temperature internally, so the node has no echo time to correct and measure(temperature_c=...)
# ignores the temperature; it is accepted only so that the app can call both ultrasonic drivers the same
# way. (DFRobot documents on-board temperature compensation for its waterproof rangefinders, e.g. the
# SEN0300 wiki; for the A02YYUW and JSN-SR04T this follows the project's device notes, not a datasheet
# line.) Leave the A02YYUW RX pin high (or floating) for the steadier "processed" value; pulled low it
# streams unfiltered real-time values every 100 ms (DFRobot SEN0311 wiki).
#
# One measurement: discard bytes already waiting (they predate the measurement), read `frames` frames
# (free-running: within timeout_ms; triggered: write the trigger byte, wait up to reply_ms per frame), reject
# outliers (filters.robust_median: farther than max(3 * MAD, tolerance_mm) from the median; a MAD above
# tolerance_mm means the frames disagree) and report the median, rounded to 1 mm.
#
# Flags: 'out_of_range' inside the blind zone (A02YYUW ~3 cm: ESPHome a02yyuw drops <= 30 mm; JSN-SR04T
# ~25 cm: ESPHome jsn_sr04t drops <= 250 mm) or beyond the maximum range, the distance being clamped to
# that limit; 'sensor_fault' with error 'timeout' (too few frames), 'checksum' (too few good frames
# and bad sums seen), 'noisy' (frames disagree), 'stuck' (the same distance `stuck_limit` measurements
# in a row, optional), 'bus' (exception from the UART) or 'config' (unknown model).

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from .filters import repeat_count, robust_median, round_int

_HEADER = const(0xFF)
_FRAME_LEN = const(4)
_TRIGGER_JSN = const(0x55)  # JSN-SR04T mode 2 (AJ-SR04M uses 0x01: pass trigger_byte=0x01)
_FRAME_PERIOD_MS = const(300)  # A02YYUW processed output: one frame every 100..300 ms
_REPLY_MS = const(150)  # triggered mode: wait for the reply to one trigger byte
_TRIGGER_GAP_MS = const(60)  # pause between triggers, as for trigger/echo sensors (inference)
_POLL_MS = const(5)  # ~5 byte times at 9600 baud
_FLUSH_MAX = const(8)
_FRAMES = const(5)
_TOLERANCE_MM = const(50)
_MAD_K = const(3)
_NO_TRIGGER = const(-1)
_INCOMPLETE = const(-1)
_BAD_SUM = const(-2)

# Sensor models as data: (trigger byte or _NO_TRIGGER for free-running, blind zone mm, max range mm).
# Ranges: A02YYUW 30..4500 mm (DFRobot wiki, ~4.5 m); JSN-SR04T 250..6000 mm (ESPHome jsn_sr04t docs).
_MODELS = {
    'a02yyuw': (_NO_TRIGGER, 30, 4500),
    'jsn_sr04t_mode2': (_TRIGGER_JSN, 250, 6000),
    'jsn_sr04t_auto': (_NO_TRIGGER, 250, 6000),
}


class UltrasonicUART:
    """UART ultrasonic sensor: measure(temperature_c=None) -> {'distance_m', 'raw_mm', 'raw_frames',
    'raw_checksum_errors', 'flags', 'error'}.

    Stuck detection (stuck_limit > 0) compares each measurement's distance with the previous one kept in
    `last_mm` / `same_count`; a node that deep-sleeps between measurements can keep these two attributes
    in its sleep memory and restore them."""

    def __init__(self, uart, clock, model='a02yyuw', frames=_FRAMES, blind_m=None, max_m=None, trigger_byte=None,
                 timeout_ms=None, reply_ms=_REPLY_MS, tolerance_mm=_TOLERANCE_MM, min_valid=None, stuck_limit=0,
                 stuck_tolerance_mm=0):
        self._uart = uart
        self._clock = clock
        spec = _MODELS.get(model)
        self._model_ok = spec is not None
        if spec is None:
            spec = _MODELS['a02yyuw']
        trig = spec[0] if trigger_byte is None else trigger_byte
        self._trigger = None if trig == _NO_TRIGGER else bytes((trig,))
        self._blind_mm = spec[1] if blind_m is None else round_int(blind_m * 1000)
        self._max_mm = spec[2] if max_m is None else round_int(max_m * 1000)
        self._frames = frames if frames > 0 else 1
        self._timeout_ms = timeout_ms if timeout_ms is not None else _FRAME_PERIOD_MS * (self._frames + 1)
        self._reply_ms = reply_ms
        self._tol_mm = tolerance_mm
        self._min_valid = min_valid if min_valid else (self._frames + 1) // 2
        self._stuck_limit = stuck_limit
        self._stuck_tol = stuck_tolerance_mm
        self.last_mm = None
        self.same_count = 0
        self._buf = [0] * self._frames  # distances, reused by every measure()
        self._frame = bytearray(_FRAME_LEN)  # the frame being assembled
        self._idx = 0
        self._bad = 0

    def _feed(self, b):
        """Add one byte to the frame: the distance in mm when it completes a good frame, else _INCOMPLETE
        or _BAD_SUM."""
        f = self._frame
        i = self._idx
        if i == 0:
            if b == _HEADER:
                f[0] = b
                self._idx = 1
            return _INCOMPLETE  # not a header: noise between frames, skipped
        f[i] = b
        i += 1
        if i < _FRAME_LEN:
            self._idx = i
            return _INCOMPLETE
        if (f[0] + f[1] + f[2]) & 0xFF == f[3]:  # SUM = (0xFF + H + L) & 0xFF
            self._idx = 0
            return f[1] << 8 | f[2]
        # Bad sum: restart from the next 0xFF inside this frame, if there is one.
        j = 1
        while j < _FRAME_LEN and f[j] != _HEADER:
            j += 1
        k = 0
        while j < _FRAME_LEN:
            f[k] = f[j]
            k += 1
            j += 1
        self._idx = k
        return _BAD_SUM

    def _read_frame(self, start, timeout_ms):
        """The next good frame's distance in mm, or None once timeout_ms have passed since `start`
        (a clock.ticks_ms() value; compared with ticks_diff, so the tick counter may wrap)."""
        uart = self._uart
        clock = self._clock
        while True:
            chunk = uart.read(_FRAME_LEN - self._idx)  # never more than this frame still needs
            if chunk:
                for b in chunk:
                    r = self._feed(b)
                    if r >= 0:
                        return r
                    if r == _BAD_SUM:
                        self._bad += 1
                continue
            if clock.ticks_diff(clock.ticks_ms(), start) >= timeout_ms:
                return None
            clock.sleep_ms(_POLL_MS)

    def _flush(self):
        uart = self._uart
        for _ in range(_FLUSH_MAX):
            if not uart.any():
                break
            uart.read()
        self._idx = 0

    def _collect(self):
        """Read frames into self._buf; returns how many."""
        buf = self._buf
        clock = self._clock
        n = 0
        self._flush()
        if self._trigger is None:
            start = clock.ticks_ms()
            while n < self._frames:
                mm = self._read_frame(start, self._timeout_ms)
                if mm is None:
                    break
                buf[n] = mm
                n += 1
            return n
        for i in range(self._frames):
            if i:
                clock.sleep_ms(_TRIGGER_GAP_MS)
                self._idx = 0  # a late reply to the last trigger starts over
            self._uart.write(self._trigger)
            mm = self._read_frame(clock.ticks_ms(), self._reply_ms)
            if mm is not None:
                buf[n] = mm
                n += 1
        return n

    def measure(self, temperature_c=None):
        flags = []
        out = {'distance_m': None, 'raw_mm': None, 'raw_frames': 0, 'raw_checksum_errors': 0, 'flags': flags,
               'error': None}
        if not self._model_ok:
            flags.append('sensor_fault')
            out['error'] = 'config'
            return out
        self._bad = 0
        try:
            n = self._collect()
        except Exception:  # noqa: BLE001 - driver contract: bus exceptions become flags
            flags.append('sensor_fault')
            out['error'] = 'bus'
            return out
        out['raw_frames'] = n
        out['raw_checksum_errors'] = self._bad
        if n < self._min_valid:
            flags.append('sensor_fault')
            out['error'] = 'checksum' if self._bad else 'timeout'
            return out
        mm, _ = robust_median(self._buf[:n], self._tol_mm, _MAD_K, self._min_valid, self._tol_mm)
        if mm is None:
            flags.append('sensor_fault')
            out['error'] = 'noisy'
            return out
        out['raw_mm'] = mm
        if self._stuck_limit > 0:
            self.same_count = repeat_count(self.last_mm, mm, self.same_count, self._stuck_tol)
            self.last_mm = mm
            if self.same_count >= self._stuck_limit:
                flags.append('sensor_fault')
                out['error'] = 'stuck'
                return out
        if mm < self._blind_mm:
            flags.append('out_of_range')
            mm = self._blind_mm
        elif mm > self._max_mm:
            flags.append('out_of_range')
            mm = self._max_mm
        out['distance_m'] = mm / 1000
        return out
