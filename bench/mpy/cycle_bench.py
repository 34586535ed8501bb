# Runs full wake cycles of the real firmware on the MicroPython Unix port with a virtual clock, the simulated
# world and the RUI3 modem model, and prints one JSON line of measurements.
#   micropython cycle_bench.py <repo root> <lib dir or 'src'> <kind> <wakes> <mode: measure|run>
# mode run: just the wakes (the host searches the smallest -X heapsize that still completes them).
import gc
import json
import sys
import time

root, lib, kind, wakes, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
if lib == 'src':
    sys.path[:0] = [root + '/firmware', root + '/codecs']
else:
    sys.path[:0] = [lib]
gc.collect()
heap0 = gc.mem_alloc()
from citynode_fw.app import cycle, sensors  # noqa: E402
from citynode_fw.hal import unix  # noqa: E402


class LeanModem:
    """A joined RAK3172 answering the commands of a normal wake with RUI3's replies and timing, whose polling
    allocates nothing (as machine.UART.any() on a board), so the heap measured is the firmware's own."""

    VALUES = {b'NJS': b'1', b'DR': b'3', b'NWM': b'1', b'NJM': b'1', b'CLASS': b'A', b'BAND': b'4', b'ADR': b'1',
              b'CFM': b'0', b'DEVEUI': b'70B3D57ED0001234', b'APPEUI': b'70B3D57ED0000000', b'APPKEY': b'00' * 16}

    def __init__(self, clock, tx_ms):
        self.clock = clock
        self.tx_ms = tx_ms
        self.chunks = []  # [(ready at ms, bytes)]
        self.line = bytearray()
        self.sent = []

    def _emit(self, data, delay_ms):
        self.chunks.append((self.clock.ticks_ms() + delay_ms, data))

    def write(self, buf):
        for b in buf:
            if b == 10:
                self._command(bytes(self.line).strip())
                self.line = bytearray()
            elif b != 13:
                self.line.append(b)
        return len(buf)

    def _command(self, cmd):
        if cmd.startswith(b'AT+SEND='):
            from binascii import unhexlify

            port, data = cmd[8:].split(b':')
            self.sent.append((int(port), unhexlify(data)))
            self._emit(b'OK\r\n', 5)
            self._emit(b'+EVT:TX_DONE\r\n', self.tx_ms)
        elif cmd.endswith(b'=?'):
            name = cmd[3:-2]
            self._emit(b'AT+' + name + b'=' + self.VALUES.get(name, b'0') + b'\r\nOK\r\n', 5)
        elif cmd == b'AT+SLEEP':
            pass  # RUI3 prints this OK only when the next byte wakes it
        else:
            self._emit(b'OK\r\n', 5)

    def any(self):
        now = self.clock.ticks_ms()
        n = 0
        for t, d in self.chunks:
            if t > now:
                break
            n += len(d)
        return n

    def read(self, n=None):
        now = self.clock.ticks_ms()
        out = b''
        while self.chunks and self.chunks[0][0] <= now and (n is None or len(out) < n):
            out += self.chunks.pop(0)[1]
        if n is not None and len(out) > n:
            self.chunks.insert(0, (now, out[n:]))
            out = out[:n]
        return out or None


CONFIG = {'kind': kind, 'sample_interval_s': 900, 'batch_size': 4, 'dev_eui': '70b3d57ed0001234'}
SCENARIO = {'kind': kind, 'vwc_start': 28, 'dry_per_day': 3, 'fill_start': 20, 'fill_per_day': 30}


class _RTC:
    blob = None
    cause = 'power_on'


clock = unix.VirtualClock(1_760_000_000_000)
rak = LeanModem(clock, 2200)  # RUI3 prints TX_DONE after the RX2 window: ~ToA (SF9) + 2 s
files = {'config.json': json.dumps(CONFIG),
         'secrets.json': json.dumps({'join_eui': '70b3d57ed0000000', 'app_key': '00' * 16})}
rtc = _RTC()
phases = {'sensors': 0, 'radio': 0}
_measure = sensors.measure
_send = cycle._send


def timed_measure(kind_, drivers):
    t = clock.ticks_ms()
    out = _measure(kind_, drivers)
    phases['sensors'] += clock.ticks_ms() - t
    return out


def timed_send(*args):
    t = clock.ticks_ms()
    out = _send(*args)
    phases['radio'] += clock.ticks_ms() - t
    return out


sensors.measure = timed_measure
cycle._send = timed_send


def wake():
    hw = unix.UnixHW(env={'scenario': SCENARIO}, clock=clock, modem=rak, rtc=rtc, log=lambda t: None)
    hw.read_file = files.get
    hw.write_file = files.__setitem__
    ms = cycle.run(hw)
    rtc.cause = 'deep_sleep'
    return ms


wake()  # first wake: boot status, lazy imports of drivers and radio
gc.collect()
resident = gc.mem_alloc() - heap0
if mode == 'run':
    for _ in range(wakes):
        clock.sleep_ms(wake())
    print(json.dumps({'ok': True}))
    sys.exit(0)
phases['sensors'] = phases['radio'] = 0
rak.sent = []
alloc = []
cpu_us = 0
awake_ms = 0
for _ in range(wakes):
    gc.collect()
    before = gc.mem_alloc()
    gc.disable()
    t_virtual = clock.ticks_ms()
    t_real = time.ticks_us()
    ms = wake()
    cpu_us += time.ticks_diff(time.ticks_us(), t_real)
    awake_ms += clock.ticks_ms() - t_virtual
    alloc.append(gc.mem_alloc() - before)
    gc.enable()
    clock.sleep_ms(ms)
order = list(alloc)
alloc.sort()
print(json.dumps({
    'kind': kind, 'wakes': wakes, 'uplinks': len(rak.sent), 'resident_bytes': resident,
    'alloc_per_wake_max': alloc[-1], 'alloc_per_wake_median': alloc[len(alloc) // 2],
    'cpu_us_per_wake': cpu_us // wakes, 'awake_ms_per_wake': awake_ms // wakes,
    'sensor_ms_per_wake': phases['sensors'] // wakes, 'radio_ms_per_wake': phases['radio'] // wakes,
    'uplink_bytes': [len(p) for _, p in rak.sent][:8], 'order': order[:12]}))
