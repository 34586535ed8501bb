# Fleet runner: several emulated nodes in one MicroPython process, in virtual time, driven by a host
# (gateway/citynode/emulation/fleet.py) over stdin/stdout. The firmware runs unchanged: each node is the real
# app (app/cycle.py), drivers, radio backend and codec on the Unix-port hardware layer (hal/unix.py); only the
# modem UART, the clock and the sleep memory are provided here.
#
#   micropython -c "import sys; sys.path[:0] = ['<repo>/firmware', '<repo>/codecs'];
#                   from citynode_fw.hal import fleet; fleet.main()"
#
# Each node has its own flash folder (a path prefix: config.json, secrets.json, counters.json), its own
# VirtualClock and its own simulated world (hal/sim.py). The app keeps no module-level mutable state, so nodes
# take turns in one interpreter. Sleep memory travels with every wake (host -> node) and comes back with the
# sleep (node -> host): the host holds it, so a power cut, a restarted worker or a node moved to another worker
# is only a matter of which blob the host sends.
#
# Line protocol. Every message is one header line "<op> <fields...> <n>\n" followed by n raw bytes (n is the
# last field, 0 when there is no body). Numbers are decimal; times are virtual epoch milliseconds.
#   host -> node
#     N <id> <n>                    define node <id>; body: JSON {"dir": flash folder + '/', "scenario": {...}}
#     W <id> <t_ms> <cause> <limit_ms> <n>   wake node <id> at t_ms with reset cause <cause>; body: sleep
#                                   memory. A wake running past t_ms + limit_ms resets as by a watchdog
#     D <due_ms|-> <n>              answer to "r": body = what the modem printed by then; <due_ms>: when its
#                                   next output (or the next moment it needs the clock) is due, '-' for never
#     Q 0                           quit
#   node -> host (sent in one write when the node needs an answer or the wake ends)
#     w <t_ms> <n>                  the node wrote the body to the modem UART at t_ms
#     r <t_ms> 0                    the node reads the modem UART at t_ms: the host answers with D
#     l <t_ms> <n>                  one log line (hw.log)
#     s <t_ms> <sleep_ms> <flags> <n>   the wake ended at t_ms; sleep this long; body: sleep memory.
#                                   flags: '-' or comma-separated: watchdog (the watchdog expired: the wake was
#                                   cut short and sleep memory is what was last saved), reboot (hw.reboot()),
#                                   crash (the runner caught an exception outside the app)
# The UART caches the host's "next due" time: until the node's clock reaches it, a poll costs no round trip.

import json
import os
import sys

from citynode_fw.app import cycle

from . import unix


class WatchdogReset(BaseException):
    """The watchdog expired: the board resets. BaseException, so the app's `except Exception` cannot hold it."""


class Link:
    """Framed messages over the process's stdin/stdout."""

    def __init__(self, inp=None, out=None):
        self.inp = inp if inp is not None else sys.stdin.buffer
        self.out = out if out is not None else sys.stdout.buffer
        self.pending = []

    def send(self, head, body=b''):
        self.pending.append(head + b' %d\n' % len(body))
        if body:
            self.pending.append(body)

    def flush(self):
        if self.pending:
            self.out.write(b''.join(self.pending))
            self.pending = []
            if hasattr(self.out, 'flush'):
                self.out.flush()

    def recv(self):
        """(fields, body) of the next message, or None at end of input."""
        line = self.inp.readline()
        if not line:
            return None
        fields = line.split()
        if not fields:
            return [b'?'], b''
        n = int(fields[-1])
        body = b''
        while len(body) < n:
            chunk = self.inp.read(n - len(body))
            if not chunk:
                return None
            body += chunk
        return fields[:-1], body


class Clock(unix.VirtualClock):
    """The node's virtual clock; time passing beyond `deadline` (the armed watchdog's, or the wake's limit)
    resets the node. Polling loops call sleep_ms() hundreds of times per uplink: keep it lean."""

    def __init__(self, epoch_ms):
        unix.VirtualClock.__init__(self, epoch_ms)
        self.limit = 0
        self.deadline = 0

    def sleep_ms(self, ms):
        self.ms += int(ms)
        if self.ms > self.deadline:
            raise WatchdogReset()

    def sleep_us(self, us):
        unix.VirtualClock.sleep_us(self, us)
        if self.ms > self.deadline:
            raise WatchdogReset()


class Watchdog:
    """hw.watchdog(ms): the Unix port has none, so the node's clock enforces it (see Clock)."""

    def __init__(self, clock, ms):
        self.clock = clock
        self.ms = ms
        self.feed()

    def feed(self):
        c = self.clock
        d = c.ms + self.ms
        c.deadline = d if d < c.limit else c.limit
        self.deadline = d


class HostUART:
    """The modem UART: writes go to the host's emulated RAK3172, reads ask it what it printed by now."""

    def __init__(self, link, clock):
        self.link = link
        self.clock = clock
        self.buf = b''
        self.due = -1  # -1: unknown, ask; None: nothing will come until we write

    def write(self, buf):
        data = bytes(buf)
        self.link.send(b'w %d' % self.clock.ms, data)
        self.due = -1
        return len(data)

    def _fetch(self):
        now = self.clock.ms
        due = self.due
        if due is None or (due >= 0 and now < due):
            return
        link = self.link
        link.send(b'r %d' % now)
        link.flush()
        msg = link.recv()
        if msg is None:
            raise SystemExit(0)  # the host went away
        fields, body = msg
        if fields[0] != b'D' or len(fields) < 2:
            raise ValueError('expected D, got %s' % fields[0])
        self.due = None if fields[1] == b'-' else int(fields[1])
        if body:
            self.buf += body

    def any(self):
        if self.buf:
            return len(self.buf)
        due = self.due
        if due is None or (due >= 0 and self.clock.ms < due):
            return 0
        self._fetch()
        return len(self.buf)

    def read(self, n=None):
        if not self.buf:
            self._fetch()
        if not self.buf:
            return None
        if n is None or n >= len(self.buf):
            out, self.buf = self.buf, b''
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


class RTC:
    """Sleep memory and reset cause of one node, as hal/unix.py's `rtc` object."""

    def __init__(self):
        self.blob = None
        self.cause = 'power_on'


class FleetHW(unix.UnixHW):
    """The Unix hardware layer with the node's flash in its own folder (a path prefix) and a host UART."""

    def __init__(self, root, env, clock, rtc, log):
        unix.UnixHW.__init__(self, env=env, clock=clock, modem=None, rtc=rtc, log=log)
        self.root = root

    def reset_cause(self):
        return self._rtc.cause or 'power_on'

    def read_file(self, name):
        try:
            with open(self.root + name) as f:
                return f.read()
        except OSError:
            return None

    def write_file(self, name, text):
        # Atomic, as on the board: a temp file and a rename.
        path = self.root + name
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.rename(tmp, path)

    def watchdog(self, ms):
        return Watchdog(self.clock, ms)


class Node:
    def __init__(self, link, spec):
        self.link = link
        self.clock = Clock(0)
        self.rtc = RTC()
        self.hw = FleetHW(spec['dir'], {'scenario': spec.get('scenario') or {}}, self.clock, self.rtc, self._log)

    def _log(self, text):
        self.link.send(b'l %d' % self.clock.ms, str(text).replace('\n', ' ').encode())

    def wake(self, t_ms, cause, limit_ms, blob):
        clock, hw, rtc, link = self.clock, self.hw, self.rtc, self.link
        clock.ms = t_ms
        clock.us = 0
        clock.limit = clock.deadline = t_ms + limit_ms
        rtc.blob = blob or None
        rtc.cause = cause
        hw._modem = HostUART(link, clock)
        hw.slept_ms = None
        hw.rebooted = False
        flags = []
        sleep_ms = 0
        try:
            sleep_ms = int(cycle.run(hw))
        except WatchdogReset:
            flags.append('watchdog')
        except Exception as e:  # noqa: BLE001 - cycle.run never raises; if it does, the host hears of it
            flags.append('crash')
            self._log('runner: %s %s' % (type(e).__name__, e))
        if hw.rebooted:
            flags.append('reboot')
        link.send(b's %d %d %s' % (clock.ms, sleep_ms, ','.join(flags).encode() if flags else b'-'),
                  bytes(rtc.blob or b''))
        link.flush()


def main(link=None):
    link = link if link is not None else Link()
    nodes = {}
    while True:
        msg = link.recv()
        if msg is None:
            return
        fields, body = msg
        op = fields[0]
        if op == b'W':
            nodes[int(fields[1])].wake(int(fields[2]), fields[3].decode(), int(fields[4]), body)
        elif op == b'N':
            nodes[int(fields[1])] = Node(link, json.loads(body))
        elif op == b'Q':
            return
        else:
            link.send(b'l 0', ('runner: unknown message %s' % op).encode())
            link.flush()
