# Fake hardware for firmware tests. Runs under MicroPython and CPython: no typing, no dataclasses.
# Each fake records what the code under test did, so a test can assert on the bus traffic.


class FakeClock:
    """Virtual time: sleeping advances it instantly, so timeouts of seconds take microseconds."""

    def __init__(self, start_ms=0, epoch=1_700_000_000):
        self.us = start_ms * 1000
        self.epoch = epoch
        self.slept_ms = 0

    def ticks_ms(self):
        return self.us // 1000

    def ticks_us(self):
        return self.us

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.us += int(ms * 1000)
        self.slept_ms += ms

    def sleep_us(self, us):
        self.us += int(us)

    def time(self):
        return self.epoch + self.us // 1_000_000

    def advance_ms(self, ms):
        self.us += int(ms * 1000)


class FakePin:
    def __init__(self, value=0):
        self._value = value
        self.history = []

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = 1 if v else 0
        self.history.append(self._value)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class FakeADC:
    """Returns the given microvolt readings in turn (the last one repeats)."""

    def __init__(self, readings_uv):
        self.readings = list(readings_uv)
        self.reads = 0

    def read_uv(self):
        i = self.reads if self.reads < len(self.readings) else len(self.readings) - 1
        self.reads += 1
        v = self.readings[i]
        if isinstance(v, Exception):
            raise v
        return v


class FakeUART:
    """A UART whose far end is a function: responder(written_bytes) -> bytes to deliver (or None).

    Delivered bytes become readable at once, or after `delay_ms` of the fake clock when a clock is given,
    which lets tests check timeouts without waiting.
    """

    def __init__(self, responder=None, clock=None, delay_ms=0):
        self.responder = responder
        self.clock = clock
        self.delay_ms = delay_ms
        self.pending = []  # (ready_at_us, bytes)
        self.written = bytearray()
        self.writes = []

    def feed(self, data, after_ms=0):
        at = (self.clock.ticks_us() if self.clock else 0) + int(after_ms * 1000)
        self.pending.append((at, bytes(data)))

    def write(self, buf):
        buf = bytes(buf)
        self.written.extend(buf)
        self.writes.append(buf)
        if self.responder is not None:
            out = self.responder(buf)
            if out:
                self.feed(out, self.delay_ms)
        return len(buf)

    def _ready(self):
        now = self.clock.ticks_us() if self.clock else 0
        out = bytearray()
        keep = []
        for at, data in self.pending:
            if at <= now:
                out.extend(data)
            else:
                keep.append((at, data))
        self.pending = keep
        return out

    def any(self):
        ready = self._ready()
        if ready:
            self.pending.insert(0, (0, bytes(ready)))
        return len(ready)

    def read(self, n=None):
        ready = self._ready()
        if not ready:
            return None
        if n is not None and n < len(ready):
            self.pending.insert(0, (0, bytes(ready[n:])))
            ready = ready[:n]
        return bytes(ready)


def raises(exc_type, fn, *args, **kwargs):
    """Assert that fn(*args) raises exc_type; return the exception (pytest.raises is not on MicroPython)."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError('%s not raised' % exc_type.__name__)
