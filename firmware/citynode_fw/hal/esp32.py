# Hardware layer for ESP32 boards (generic DevKit, RAK11200 WisBlock Core). Pin maps are data, one file per
# board in hal/boards/; the board is named by the config's 'board' key. Only this module imports machine,
# esp32 and the sensor bus modules (onewire, ds18x20, lora).
#
# References: MicroPython ESP32 quickref (ADC.ATTN_11DB with read_uv(), RTC().memory() up to 2048 bytes,
# machine.WDT, machine.deepsleep, time_pulse_us); RAK11200 and RAK13300 datasheets (pins).

import json
import os
import time

import machine


def _causes():
    # machine.reset_cause() constants -> the spec's reset_cause names
    return {machine.PWRON_RESET: 'power_on', machine.HARD_RESET: 'hard_reset', machine.WDT_RESET: 'watchdog',
            machine.DEEPSLEEP_RESET: 'deep_sleep', machine.SOFT_RESET: 'soft_reset'}


class Clock:
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
        return int(time.time())  # the RTC keeps counting through deep sleep


class IdleClock(Clock):
    """For waits with nothing to listen to (a probe settling, a DS18B20 converting): light sleep at 0.8 mA
    instead of an idle CPU at about 20 mA (ESP32 datasheet). Not for UART or echo waits: light sleep gates
    the UART clock and would lose bytes."""

    def sleep_ms(self, ms):
        if ms >= 10:
            machine.lightsleep(int(ms))
        else:
            time.sleep_ms(int(ms))


def _read(name):
    try:
        with open(name) as f:
            return f.read()
    except OSError:
        return None


class SDI12Line:
    """The SDI-12 line contract (drivers/sdi12.py) on a UART behind a level shifter: 1200 baud 7E1, the
    break by driving the TX pin to the spacing level, because UART.sendbreak() on ESP32 gives only ~10.8 ms
    and ignores the invert setting (device_modems.md, UART)."""

    def __init__(self, spec):
        self.spec = spec
        self.uart = None

    def _open(self):
        s = self.spec
        self.uart = machine.UART(s['uart'], baudrate=1200, bits=7, parity=0, stop=1, tx=s['tx'], rx=s['rx'],
                                 timeout=0)

    def send_break(self, ms):
        if self.uart is not None:
            self.uart.deinit()
        pin = machine.Pin(self.spec['tx'], machine.Pin.OUT)
        pin.value(self.spec.get('break_level', 1))
        time.sleep_ms(ms)
        pin.value(1 - self.spec.get('break_level', 1))
        self._open()

    def write(self, buf):
        if self.uart is None:
            self._open()
        self.uart.write(buf)
        self.uart.flush()  # wait until sent: the line turns round to receive
        return len(buf)

    def read_until(self, end, timeout_ms):
        if self.uart is None:
            self._open()
        out = bytearray()
        start = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < timeout_ms:
            b = self.uart.read(1)
            if b:
                out.extend(b)
                if out.endswith(end):
                    break
            else:
                time.sleep_ms(2)
        return bytes(out)


class ESP32HW:
    """The hardware-layer interface app/cycle.py expects, on an ESP32."""

    def __init__(self, board=None):
        if board is None:
            try:
                board = json.loads(_read('config.json') or '{}').get('board', 'esp32_devkit')
            except ValueError:
                board = 'esp32_devkit'
        here = __file__.rsplit('/', 1)[0]
        text = _read(here + '/boards/' + board + '.json') or _read(here + '/boards/esp32_devkit.json')
        self.board = json.loads(text)
        self.clock = Clock()
        self.idle_clock = IdleClock()

    def reset_cause(self):
        return _causes().get(machine.reset_cause(), 'unknown')

    def rtc_load(self):
        return machine.RTC().memory()

    def rtc_save(self, blob):
        machine.RTC().memory(blob)

    def read_file(self, name):
        return _read(name)

    def write_file(self, name, text):
        tmp = name + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.rename(tmp, name)  # atomic on littlefs: the old file or the new one, never half

    def watchdog(self, ms):
        return machine.WDT(timeout=ms)

    def adc(self, role):
        n = self.board.get('adc', {}).get(role)
        if n is None:
            return None
        return machine.ADC(machine.Pin(n), atten=machine.ADC.ATTN_11DB)

    def pin(self, role):
        n = self.board.get('pin', {}).get(role)
        if n is None:
            return None
        if role == 'echo':
            return machine.Pin(n, machine.Pin.IN)
        return machine.Pin(n, machine.Pin.OUT)

    def uart(self, role, baud):
        u = self.board.get('uart', {}).get(role)
        if u is None:
            return None
        return machine.UART(u['id'], baudrate=baud, tx=u['tx'], rx=u['rx'], timeout=0, rxbuf=512)

    def onewire(self, role):
        n = self.board.get('onewire', {}).get(role)
        if n is None:
            return None
        import ds18x20
        import onewire

        return ds18x20.DS18X20(onewire.OneWire(machine.Pin(n)))

    def sdi12_line(self, role):
        s = self.board.get('sdi12', {}).get(role)
        return None if s is None else SDI12Line(s)

    def pulse_us(self, pin, level, timeout_us):
        return machine.time_pulse_us(pin, level, timeout_us)

    def lora_modem(self):
        s = self.board.get('sx1262')
        if s is None:
            return None
        from lora import SX1262  # micropython-lib lora-sx126x, installed with mip at flash time

        Pin = machine.Pin
        for key in ('power_en', 'rf_power'):  # RAK13300: slot power and antenna switch supply
            if key in s:
                Pin(s[key], Pin.OUT).value(1)
        spi = machine.SPI(s['spi'], baudrate=2000000, sck=Pin(s['sck']), mosi=Pin(s['mosi']), miso=Pin(s['miso']))
        return SX1262(spi, cs=Pin(s['cs']), busy=Pin(s['busy']), dio1=Pin(s['dio1']), reset=Pin(s['reset']),
                      dio2_rf_sw=True, dio3_tcxo_millivolts=s.get('tcxo_mv'))

    def log(self, text):
        print('[cn] ' + text)

    def deepsleep(self, ms):
        n = self.board.get('pin', {}).get('sensor_power')
        if n is not None:
            machine.Pin(n, machine.Pin.OUT).value(0)  # sensors unpowered through the sleep
        machine.deepsleep(int(ms))

    def reboot(self):
        machine.reset()
