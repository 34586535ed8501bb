# Hardware layer for the MicroPython Unix port: the same firmware as on a board, run as an emulated node.
#
# The board's flash is the current directory (the emulated board mounts its folder at '/'). The emulator
# describes the node's surroundings in /hal.json:
#   {"modem": "/dev/pts/7",              the emulated RAK3172's pseudo-terminal (real time)
#    "clock": "real" | "virtual",        virtual: a fleet runner drives time (see fleet.py)
#    "scenario": {...}}                  the simulated world (hal/sim.py)
# Deep sleep is "save sleep memory and return to the runner": main.py returns, the emulator starts the
# next wake. Sleep memory lives in /.rtc (kept across deep sleep, removed by a power cut) and the runner
# leaves the reset cause in /.reset_cause.

import json
import os
import time

from . import sim

_RTC_FILE = '.rtc'
_CAUSE_FILE = '.reset_cause'


class RealClock:
    """The clock contract on the Unix port's own clock."""

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_us(self):
        return time.ticks_us()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def sleep_ms(self, ms):
        time.sleep_ms(int(ms))

    def sleep_us(self, us):
        time.sleep_us(int(us))

    def time(self):
        return int(time.time())


class VirtualClock:
    """Time that moves only when someone sleeps or the runner says so: a day of wakes takes milliseconds."""

    def __init__(self, epoch_ms):
        self.ms = epoch_ms
        self.us = 0

    def ticks_ms(self):
        return self.ms

    def ticks_us(self):
        return self.ms * 1000 + self.us

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.ms += int(ms)

    def sleep_us(self, us):
        self.us += int(us)
        self.ms += self.us // 1000
        self.us %= 1000

    def time(self):
        return self.ms // 1000


class PtyUART:
    """A UART on a pseudo-terminal (the emulated modem): non-blocking reads via VMIN=0."""

    def __init__(self, path):
        import termios

        self.f = open(path, 'r+b')
        fd = self.f.fileno()
        attrs = termios.tcgetattr(fd)
        attrs[6][6] = 0  # VMIN: a read returns what is there, even nothing (Linux cc indexes)
        attrs[6][5] = 0  # VTIME
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self.pending = b''

    def any(self):
        if not self.pending:
            data = self.f.read(256)
            if data:
                self.pending = data
        return len(self.pending)

    def read(self, n=None):
        self.any()
        if not self.pending:
            return None
        n = len(self.pending) if n is None else n
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def write(self, buf):
        return self.f.write(bytes(buf))

    def close(self):
        self.f.close()


class _Watchdog:
    """The Unix port has no hardware watchdog: remember the deadline, the runner enforces it."""

    def __init__(self, clock, ms):
        self.clock = clock
        self.ms = ms
        self.feed()

    def feed(self):
        self.deadline = self.clock.ticks_ms() + self.ms


def _read(name):
    try:
        with open(name) as f:
            return f.read()
    except OSError:
        return None


class UnixHW:
    """The hardware-layer interface app/cycle.py expects, for emulated nodes."""

    def __init__(self, env=None, clock=None, modem=None, rtc=None, log=None):
        self.env = env if env is not None else json.loads(_read('hal.json') or '{}')
        self.clock = clock or RealClock()
        self.world = sim.World(self.env.get('scenario'), self.clock)
        self._modem = modem
        self._rtc = rtc  # an object with .blob (fleet runner) or None for the /.rtc file
        self._log = log
        self._uarts = {}
        self.slept_ms = None
        self.rebooted = False

    # -- lifecycle ---------------------------------------------------------------------------------------

    def reset_cause(self):
        cause = (_read(_CAUSE_FILE) or '').strip()
        if self._rtc is not None:
            cause = self._rtc.cause
        return cause or 'power_on'

    def rtc_load(self):
        if self._rtc is not None:
            return self._rtc.blob
        try:
            with open(_RTC_FILE, 'rb') as f:
                return f.read()
        except OSError:
            return None

    def rtc_save(self, blob):
        if self._rtc is not None:
            self._rtc.blob = bytes(blob)
            return
        with open(_RTC_FILE, 'wb') as f:
            f.write(blob)

    def read_file(self, name):
        return _read(name)

    def write_file(self, name, text):
        # Atomic: a power cut leaves the old file or the new one, never half of one (rename is atomic).
        tmp = name + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.rename(tmp, name)

    def watchdog(self, ms):
        return _Watchdog(self.clock, ms)

    def deepsleep(self, ms):
        """Sleep memory is already saved; tell the runner when to wake us."""
        self.slept_ms = ms
        if self._rtc is None:
            with open(_CAUSE_FILE, 'w') as f:
                f.write('deep_sleep')

    def reboot(self):
        self.rebooted = True
        if self._rtc is None:
            with open(_CAUSE_FILE, 'w') as f:
                f.write('soft_reset')

    def log(self, text):
        if self._log is not None:
            self._log(text)
        else:
            print('[cn] ' + text)

    # -- buses by role -------------------------------------------------------------------------------------

    def adc(self, role):
        if role == 'soil' and self.world.s.get('kind', 'soil') == 'soil':
            return sim.SimADC(self.world, 'soil')
        if role == 'battery':
            return sim.SimADC(self.world, 'battery', ratio=2.0)
        return None

    def pin(self, role):
        return None

    def uart(self, role, baud):
        if role == 'modem':
            if self._modem is not None:
                return self._modem
            path = self.env.get('modem')
            if not path:
                return None
            if path not in self._uarts:
                self._uarts[path] = PtyUART(path)
            return self._uarts[path]
        if role == 'sensor' and self.world.s.get('kind') == 'fill':
            return sim.SimA02UART(self.world)
        return None

    def onewire(self, role):
        return sim.SimDS18X20(self.world, 'soil' if self.world.s.get('kind', 'soil') == 'soil' else 'air')

    def sdi12_line(self, role):
        return None

    def pulse_us(self, pin, level, timeout_us):
        return sim.sim_pulse(self.world)(pin, level, timeout_us)

    def lora_modem(self):
        return None

    def close(self):
        for u in self._uarts.values():
            u.close()
        self._uarts = {}
