# Fake sensors for the driver tests: a simulated SDI-12 bus and probe, a fake ds18x20 object, A02YYUW /
# JSN-SR04T frame streams and a fake time_pulse_us. They run under MicroPython and CPython (no typing, no
# dataclasses, no f-string format specs) and record the traffic so tests can assert on it.

from fakes import FakePin, FakeUART


class TimedPin(FakePin):
    """A FakePin that also records when (clock.ticks_us()) each level was set."""

    def __init__(self, clock, value=0):
        FakePin.__init__(self, value)
        self.clock = clock
        self.events = []  # (ticks_us, level)

    def value(self, v=None):
        if v is not None:
            self.events.append((self.clock.ticks_us(), 1 if v else 0))
        return FakePin.value(self, v)


class BrokenPin:
    """A pin whose every call raises, as a pin on a dead GPIO expander would."""

    def value(self, v=None):
        raise OSError(5)

    def on(self):
        raise OSError(5)

    def off(self):
        raise OSError(5)


# --- trigger/echo ---------------------------------------------------------------------------------------

class FakePulse:
    """machine.time_pulse_us stand-in: returns the given results in turn (the last one repeats); an
    Exception in the list is raised. With a clock, a positive result also advances it by that many us."""

    def __init__(self, results, clock=None):
        self.results = list(results)
        self.clock = clock
        self.calls = []  # (pin, level, timeout_us, ticks_us at the call)

    def __call__(self, pin, level, timeout_us):
        i = len(self.calls)
        self.calls.append((pin, level, timeout_us, self.clock.ticks_us() if self.clock else None))
        r = self.results[i] if i < len(self.results) else self.results[-1]
        if isinstance(r, Exception):
            raise r
        if self.clock is not None and r > 0:
            self.clock.sleep_us(r)
        return r


def echo_us(distance_m, temperature_c=20.0):
    """Round-trip echo time in whole us for a distance, with c = 331.3 + 0.606 * T."""
    c = 331.3 + 0.606 * temperature_c
    return int(2 * distance_m / c * 1_000_000 + 0.5)


# --- UART ultrasonic ------------------------------------------------------------------------------------

def a02_frame(mm):
    """A02YYUW / JSN-SR04T frame: FF H L SUM, SUM = (0xFF + H + L) & 0xFF."""
    h = (mm >> 8) & 0xFF
    lo = mm & 0xFF
    return bytes((0xFF, h, lo, (0xFF + h + lo) & 0xFF))


def bad_sum(frame):
    """The same frame with its checksum broken."""
    return frame[:3] + bytes(((frame[3] + 1) & 0xFF,))


def frame_stream(clock, chunks, period_ms=100):
    """A free-running sensor: chunk i (bytes) arrives at (i + 1) * period_ms on the fake clock."""
    uart = FakeUART(clock=clock)
    for i in range(len(chunks)):
        uart.feed(chunks[i], after_ms=(i + 1) * period_ms)
    return uart


class TriggeredSensor:
    """JSN-SR04T mode 2: each trigger byte gets the next reply (bytes, or None for silence)."""

    def __init__(self, replies, trigger=0x55):
        self.replies = list(replies)
        self.trigger = trigger
        self.triggers = 0

    def __call__(self, written):
        if written != bytes((self.trigger,)):
            return None
        i = self.triggers
        self.triggers += 1
        return self.replies[i] if i < len(self.replies) else None


class ExplodingUART(FakeUART):
    """A UART whose reads raise, as after a driver fault."""

    def read(self, n=None):
        raise OSError(110)

    def any(self):
        raise OSError(110)


# --- DS18B20 --------------------------------------------------------------------------------------------

class OneWireError(Exception):
    """Same name as onewire.OneWireError, raised when no device answers the reset pulse."""


class FakeDS:
    """ds18x20.DS18X20 stand-in: scan() -> roms; read_temp() returns `temps` in turn (the last repeats);
    an Exception in temps (or as scan_error) is raised."""

    def __init__(self, clock, roms=(b'\x28\x01\x02\x03\x04\x05\x06\x07',), temps=(21.5,), scan_error=None):
        self.clock = clock
        self.roms = list(roms)
        self.temps = list(temps)
        self.scan_error = scan_error
        self.converts = []  # ticks_ms of each convert_temp()
        self.reads = []  # (rom, ticks_ms)

    def scan(self):
        if self.scan_error is not None:
            raise self.scan_error
        return list(self.roms)

    def convert_temp(self):
        self.converts.append(self.clock.ticks_ms())

    def read_temp(self, rom):
        i = len(self.reads)
        self.reads.append((rom, self.clock.ticks_ms()))
        t = self.temps[i] if i < len(self.temps) else self.temps[-1]
        if isinstance(t, Exception):
            raise t
        return t


# --- SDI-12 ---------------------------------------------------------------------------------------------

def sdi12_crc(text):
    """SDI-12 CRC characters of a str, written independently of the driver (CRC-16/ARC, bit by bit)."""
    crc = 0
    for ch in text:
        crc ^= ord(ch)
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return chr(64 | (crc >> 12)) + chr(64 | ((crc >> 6) & 63)) + chr(64 | (crc & 63))


class FakeSDI12Sensor:
    """An SDI-12 probe answering ?!, a!, aI!, aM!, aMn!, aMC!, aMCn! and aD0!..aD9!.

    values: the value tokens exactly as sent, e.g. ['+23.45', '+18.20'];
    ttt: seconds announced in the atttn reply; sr_ms: when the service request follows (None: never);
    per_page: values per aDx! page; silent: number of commands to ignore; garbage: number of replies to
    replace with `garbage_reply`; bad_crc: number of aDx! replies with a wrong CRC; foreign: number of
    replies sent from address '9' instead; n: override the announced value count."""

    def __init__(self, address='0', values=('+23.45', '+18.20'), ttt=1, sr_ms=200, per_page=9,
                 ident='14TRUEBNERSMT100038SN12345', silent=0, garbage=0, garbage_reply=b'\x00#?%\r\n',
                 bad_crc=0, foreign=0, n=None):
        self.address = address
        self.values = list(values)
        self.ttt = ttt
        self.sr_ms = sr_ms
        self.per_page = per_page
        self.ident = ident
        self.silent = silent
        self.garbage = garbage
        self.garbage_reply = garbage_reply
        self.bad_crc = bad_crc
        self.foreign = foreign
        self.n = n
        self.crc_mode = False
        self.commands = []

    def _reply(self, text, crc=False):
        if crc:
            c = sdi12_crc(text)
            if self.bad_crc:
                self.bad_crc -= 1
                c = c[:2] + ('A' if c[2] != 'A' else 'B')
            text = text + c
        if self.foreign:
            self.foreign -= 1
            text = '9' + text[1:]
        return (text + '\r\n').encode()

    def handle(self, cmd):
        """-> list of (delay_ms, bytes) to send."""
        text = cmd.decode()
        self.commands.append(text)
        if self.silent:
            self.silent -= 1
            return []
        if not text.endswith('!') or len(text) < 2:
            return []
        addr = text[0]
        body = text[1:-1]
        if addr != '?' and addr != self.address:
            return []
        if self.garbage:
            self.garbage -= 1
            return [(30, self.garbage_reply)]
        a = self.address
        if body == '':
            return [(30, self._reply(a))]
        if body == 'I':
            return [(30, self._reply(a + self.ident))]
        if body.startswith('M'):
            self.crc_mode = body.startswith('MC')
            n = len(self.values) if self.n is None else self.n
            ttt = str(self.ttt)
            out = [(30, self._reply(a + '000'[len(ttt):] + ttt + str(n)))]
            if self.ttt and self.sr_ms is not None:
                out.append((self.sr_ms, self._reply(a)))
            return out
        if body.startswith('D') and len(body) == 2:
            page = int(body[1])
            chunk = self.values[page * self.per_page:(page + 1) * self.per_page]
            return [(30, self._reply(a + ''.join(chunk), self.crc_mode))]
        return []


class FakeSDI12Line:
    """The SDI-12 line contract (send_break, write, read_until) over simulated probes on a fake clock.

    events: ('break', ms, ticks_ms at its end), ('write', bytes, ticks_ms), ('read', timeout_ms, reply);
    written: the commands in order. A break drops replies not yet read (SDI-12: a break aborts).
    echo=True prepends the command's echo to the next reply, as a one-wire bus without echo cancelling
    would. fail_on_write raises that exception from write()."""

    def __init__(self, clock, sensors=(), echo=False, fail_on_write=None):
        self.clock = clock
        self.sensors = list(sensors)
        self.echo = echo
        self.fail_on_write = fail_on_write
        self.pending = []  # (ready_ms, bytes)
        self.events = []
        self.written = []

    def send_break(self, ms):
        self.clock.sleep_ms(ms)
        self.pending = []
        self.events.append(('break', ms, self.clock.ticks_ms()))

    def write(self, buf):
        buf = bytes(buf)
        if self.fail_on_write is not None:
            raise self.fail_on_write
        now = self.clock.ticks_ms()
        self.events.append(('write', buf, now))
        self.written.append(buf)
        first = True
        for s in self.sensors:
            for delay, data in s.handle(buf):
                if self.echo and first:
                    data = buf + data
                first = False
                self.pending.append((now + delay, data))
        self.pending.sort(key=lambda p: p[0])
        return len(buf)

    def read_until(self, end, timeout_ms):
        now = self.clock.ticks_ms()
        if self.pending and self.pending[0][0] <= now + timeout_ms:
            ready, data = self.pending.pop(0)
            if ready > now:
                self.clock.sleep_ms(ready - now)
            self.events.append(('read', timeout_ms, data))
            return data
        self.clock.sleep_ms(timeout_ms)
        self.events.append(('read', timeout_ms, b''))
        return b''

    def writes_at(self):
        """[(command, ticks_ms)] of every write."""
        return [(e[1], e[2]) for e in self.events if e[0] == 'write']


# --- ADC ------------------------------------------------------------------------------------------------

class TimedADC:
    """read_uv() returns the readings in turn (the last repeats; Exceptions are raised) and records the
    clock.ticks_ms() of every read."""

    def __init__(self, clock, readings_uv):
        self.clock = clock
        self.readings = list(readings_uv)
        self.times = []

    def read_uv(self):
        i = len(self.times)
        self.times.append(self.clock.ticks_ms())
        v = self.readings[i] if i < len(self.readings) else self.readings[-1]
        if isinstance(v, Exception):
            raise v
        return v
