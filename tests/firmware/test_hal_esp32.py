# The ESP32 hardware layer against a stand-in `machine` module: the pins each board file names, the reset
# causes, sleep memory and deep sleep. (On a real board the HIL suite checks the rest.)
import sys


class _Pin:
    OUT = 1
    IN = 0

    def __init__(self, n, mode=None):
        self.n = n
        self.mode = mode
        self.v = None

    def value(self, v=None):
        if v is not None:
            self.v = v
            _log.append(('pin', self.n, v))
        return self.v


class _ADC:
    ATTN_11DB = 3

    def __init__(self, pin, atten=None):
        self.pin = pin
        self.atten = atten


class _UART:
    def __init__(self, id, **kw):
        self.id = id
        self.kw = kw


class _RTCMem:
    mem = b''

    def memory(self, data=None):
        if data is None:
            return _RTCMem.mem
        _RTCMem.mem = bytes(data)


_log = []


class _Machine:
    Pin = _Pin
    ADC = _ADC
    UART = _UART
    PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
    cause = 4

    @staticmethod
    def reset_cause():
        return _Machine.cause

    @staticmethod
    def RTC():
        return _RTCMem()

    @staticmethod
    def deepsleep(ms):
        _log.append(('deepsleep', ms))

    @staticmethod
    def lightsleep(ms):
        _log.append(('lightsleep', ms))

    @staticmethod
    def time_pulse_us(pin, level, timeout):
        return 1234

    @staticmethod
    def WDT(timeout):
        return ('wdt', timeout)


def _esp32(board):
    saved = sys.modules.get('machine')
    sys.modules['machine'] = _Machine
    try:
        sys.modules.pop('citynode_fw.hal.esp32', None)
        from citynode_fw.hal import esp32

        return esp32.ESP32HW(board)
    finally:
        if saved is None:
            sys.modules.pop('machine', None)
        else:
            sys.modules['machine'] = saved


def test_rak11200_roles_map_to_the_wisblock_pins():
    hw = _esp32('rak11200')
    battery, soil = hw.adc('battery'), hw.adc('soil')
    assert (battery.pin.n, soil.pin.n, soil.atten) == (36, 39, _ADC.ATTN_11DB)
    modem = hw.uart('modem', 115200)
    assert modem.id == 1 and (modem.kw['tx'], modem.kw['rx'], modem.kw['baudrate']) == (21, 19, 115200)
    assert hw.adc('nothing') is None and hw.uart('nothing', 9600) is None


def test_reset_causes_use_the_spec_names():
    hw = _esp32('esp32_devkit')
    _Machine.cause = _Machine.WDT_RESET
    assert hw.reset_cause() == 'watchdog'
    _Machine.cause = 99
    assert hw.reset_cause() == 'unknown'


def test_sleep_memory_and_deep_sleep_with_sensors_switched_off():
    hw = _esp32('esp32_devkit')
    hw.rtc_save(b'CN\x01state')
    assert hw.rtc_load() == b'CN\x01state'
    del _log[:]
    hw.deepsleep(900000)
    assert _log == [('pin', 27, 0), ('deepsleep', 900000)]


def test_an_unknown_board_falls_back_to_the_devkit_map():
    hw = _esp32('no_such_board')
    assert hw.board['name'] == 'esp32_devkit'


def test_waits_with_nothing_to_listen_to_light_sleep_but_short_ones_do_not():
    hw = _esp32('esp32_devkit')
    del _log[:]
    hw.idle_clock.sleep_ms(300)
    assert _log == [('lightsleep', 300)]
    from citynode_fw.hal import esp32

    slept = []
    real = esp32.time
    esp32.time = type('T', (), {'sleep_ms': staticmethod(slept.append)})
    try:
        hw.idle_clock.sleep_ms(2)  # too short to be worth a light sleep
    finally:
        esp32.time = real
    assert slept == [2] and _log == [('lightsleep', 300)]
