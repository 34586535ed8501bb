# DS18B20 one-wire digital thermometer (soil temperature at the probe, or air temperature inside a
# container for the ultrasonic speed-of-sound correction).
#
# Bus: 1-Wire on one GPIO with a 4.7 kOhm pull-up. The driver wraps an injected `ds` object with the
# MicroPython ds18x20.DS18X20 API (micropython-lib micropython/drivers/sensor/ds18x20), frozen into the
# ESP32_GENERIC firmware:
#   ds.scan()          -> list of 8-byte ROM codes (family 0x28 for the DS18B20)
#   ds.convert_temp()  -> starts a conversion on every sensor (SKIP ROM + CONVERT T, 0x44)
#   ds.read_temp(rom)  -> degrees C from the 9-byte scratchpad; raises on a scratchpad CRC error
#                        ("CRC error"), onewire.OneWireError when nobody answers the reset pulse
#
# Timing: a 12-bit conversion (the power-on default resolution) takes up to 750 ms (DS18B20 datasheet,
# tCONV in the AC electrical characteristics and the configuration-register resolution table); the driver
# sleeps that long through the injected clock.
#
# Values that are errors, not temperatures:
#   +85.0 C  the power-on reset value of the temperature register (datasheet, "Operation - Measuring
#            Temperature"): the sensor browned out or the conversion never ran. A real 85 C is possible
#            (a fire in a bin), so the driver converts once more before it calls it a fault;
#   -127 C   the "disconnected" value of the Arduino DallasTemperature library, returned by some ports;
#   outside the datasheet range of -55..+125 C, or not a number.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from .filters import round_int

_CONVERSION_MS = const(750)  # 12-bit conversion time, datasheet maximum
_POWER_ON_C = const(85)
_DISCONNECTED_C = const(-127)
_MIN_C = const(-55)
_MAX_C = const(125)
_ATTEMPTS = const(2)  # first conversion + one retry after a read error or the power-on value


class DS18B20:
    """DS18B20: measure() -> {<field>, 'raw_c', 'flags', 'error'}; field e.g. 'soil_temperature_c'."""

    def __init__(self, ds, clock, field='temperature_c', rom=None, conversion_ms=_CONVERSION_MS):
        self._ds = ds
        self._clock = clock
        self.field = field
        self._rom = rom
        self._conversion_ms = conversion_ms

    def _read_once(self, rom):
        """One conversion and read: (temperature, None) or (None, error name)."""
        try:
            self._ds.convert_temp()
            self._clock.sleep_ms(self._conversion_ms)
            t = self._ds.read_temp(rom)
        except Exception as e:  # noqa: BLE001 - driver contract: bus exceptions become flags
            if type(e).__name__ == 'OneWireError':
                return None, 'absent'
            if 'CRC' in str(e) or 'crc' in str(e):
                return None, 'crc'
            return None, 'read'
        if t is None or not (type(t) is float or type(t) is int):
            return None, 'read'
        if t == _POWER_ON_C:
            return t, 'power_on_value'
        if t == _DISCONNECTED_C:
            return t, 'disconnected'
        if t < _MIN_C or t > _MAX_C:
            return t, 'range'
        return t, None

    def measure(self):
        flags = []
        out = {self.field: None, 'raw_c': None, 'flags': flags, 'error': None}
        rom = self._rom
        if rom is None:
            try:
                roms = self._ds.scan()
            except Exception:  # noqa: BLE001 - driver contract: bus exceptions become flags
                roms = None
            if not roms:
                flags.append('sensor_fault')
                out['error'] = 'absent'
                return out
            rom = roms[0]
        error = None
        for _ in range(_ATTEMPTS):
            t, error = self._read_once(rom)
            out['raw_c'] = t
            if error is None or error == 'absent':
                break
        if error is not None:
            flags.append('sensor_fault')
            out['error'] = error
            return out
        # 0.1 C, the finest resolution of a temperature field in the spec (DS18B20 steps are 0.0625 C)
        out[self.field] = round_int(t * 10) / 10
        return out
