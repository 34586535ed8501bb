# A fake hardware layer for the wake-cycle tests: in-memory flash and sleep memory, a virtual clock, live
# fake sensors whose values a test can change between wakes, and the RUI3 modem model from modem_fakes.
# MicroPython-compatible.

from fakes import FakeClock
from modem_fakes import FakeRAK3172
from sensor_fakes import FakeDS

from citynode_codec import decode_uplink


class LiveADC:
    """An ADC reading `mv` millivolts (a test changes it between wakes); mv None raises like a dead bus."""

    def __init__(self, mv):
        self.mv = mv

    def read_uv(self):
        if self.mv is None:
            raise OSError(5, 'EIO')
        return int(self.mv * 1000)


class LiveA02:
    """A free-running A02YYUW: a frame every 100 ms of the clock for the current `mm` (None: silent)."""

    def __init__(self, clock, mm):
        self.clock = clock
        self.mm = mm
        self.t0 = clock.ticks_ms()
        self.sent = 0

    def _due(self):
        frames = (self.clock.ticks_ms() - self.t0) // 100 - self.sent
        return 0 if self.mm is None else max(0, frames)

    def any(self):
        return 4 * self._due()

    def read(self, n=None):
        due = self._due()
        if not due:
            return None
        self.sent += due
        hi, lo = self.mm >> 8, self.mm & 0xFF
        return bytes([0xFF, hi, lo, (0xFF + hi + lo) & 0xFF]) * due

    def write(self, buf):
        return len(buf)


class FakeWDT:
    def __init__(self, ms):
        self.ms = ms
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class FakeHW:
    """The hardware-layer interface app/cycle.py expects, in memory."""

    def __init__(self, kind='soil', config=None, secrets=None, joined=True):
        self.clock = FakeClock(epoch=1_760_000_000)
        self.files = {}
        cfg = {'kind': kind, 'sample_interval_s': 900, 'batch_size': 4, 'dev_eui': '70b3d57ed0001234'}
        if config:
            cfg.update(config)
        import json

        self.files['config.json'] = json.dumps(cfg)
        self.files['secrets.json'] = json.dumps(secrets or {'join_eui': '70b3d57ed0000000',
                                                            'app_key': '00112233445566778899aabbccddeeff'})
        self.rtc = None
        self.cause = 'power_on'
        self.logs = []
        self.reboots = 0
        self.fail_writes = False
        self.wdt = None
        self.rak = FakeRAK3172(self.clock, values={'NJS': '1' if joined else '0', 'DEVEUI': '70B3D57ED0001234',
                                                   'APPEUI': '70B3D57ED0000000',
                                                   'APPKEY': '00112233445566778899AABBCCDDEEFF', 'ADR': '1'})
        self.soil = LiveADC(1800)  # about 45 % of the way from the default dry (2200) to wet (1000) points
        self.battery = LiveADC(1800)  # 3.6 V behind a 1:2 divider
        self.ds = FakeDS(self.clock, temps=(12.5,))
        self.a02 = LiveA02(self.clock, 800)

    # -- the interface ---------------------------------------------------------------------------------------

    def reset_cause(self):
        return self.cause

    def rtc_load(self):
        return self.rtc

    def rtc_save(self, blob):
        self.rtc = bytes(blob)

    def read_file(self, name):
        return self.files.get(name)

    def write_file(self, name, text):
        if self.fail_writes:
            raise OSError(28, 'ENOSPC')
        self.files[name] = text

    def watchdog(self, ms):
        self.wdt = FakeWDT(ms)
        return self.wdt

    def adc(self, role):
        return {'soil': self.soil, 'battery': self.battery}.get(role)

    def pin(self, role):
        return None

    def uart(self, role, baud):
        if role == 'modem':
            return self.rak.uart
        if role == 'sensor':
            return self.a02
        return None

    def onewire(self, role):
        return self.ds

    def sdi12_line(self, role):
        return None

    def pulse_us(self, pin, level, timeout_us):
        return -2

    def lora_modem(self):
        return None

    def log(self, text):
        self.logs.append(text)

    def reboot(self):
        self.reboots += 1

    # -- test helpers ----------------------------------------------------------------------------------------

    def wake(self):
        """One wake cycle, then deep sleep for as long as the node asked (the virtual clock jumps)."""
        from citynode_fw.app import cycle

        ms = cycle.run(self)
        self.cause = 'deep_sleep'
        self.clock.advance_ms(ms)
        return ms

    def uplinks(self):
        """Everything the node sent so far, decoded: [(fport, data or errors)]."""
        out = []
        for port, payload in self.rak.sent:
            r = decode_uplink(port, payload)
            out.append((port, r.get('data', r)))
        self.rak.sent = []
        return out

    def downlink(self, port, payload):
        """Deliver a downlink in the RX1 window of the node's next uplink."""
        h = ''.join('%02x' % b for b in payload)
        self.rak.downlinks.append('RX_1:-80:7:UNICAST:%d:%s' % (port, h))
