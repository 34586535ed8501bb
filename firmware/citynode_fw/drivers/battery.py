# Battery voltage through a resistor divider on the ADC.
#
#   VBAT --[R1]--+--[R2]-- GND        ratio = (R1 + R2) / R2, e.g. 2.0 for two equal resistors
#                |
#               ADC pin               (RAK11200: VBAT sense on WB_A0 = GPIO36, ADC1; RAK11200 pin table)
#
# The hardware layer opens the channel with ADC.ATTN_11DB (linear 150..2450 mV) and the driver reads
# calibrated microvolts with read_uv() (MicroPython docs/esp32/quickref.rst, "ADC"). A divider of 2 maps a
# 4.2 V Li-ion cell to 2.1 V, inside that range.
#
#   battery_v = mean(read_uv) * ratio / 1e6, rounded to 0.01 V
#
# computed with integers (ratio kept to 1e-4) so the board and the Unix port agree to the last digit. The
# divider draws current all the time; high resistor values (>= 100 kOhm each) with a 100 nF capacitor at
# the ADC pin keep that small and the reading steady (inference).
#
# Deciding what is "low" belongs to the app (it has the configured threshold), not to this driver. A
# reading below `min_v` cannot be a battery that is powering the node: it means a broken divider or a
# missing battery, and is reported as 'sensor_fault'.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from .filters import div_round, round_int

_SAMPLES = const(8)
_RATIO_SCALE = const(10000)  # ratio in units of 1e-4
_UV_PER_CV = const(10000)  # microvolts per centivolt


class Battery:
    """Battery voltage: measure() -> {'battery_v', 'raw_uv', 'flags', 'error'}."""

    def __init__(self, adc, ratio=2.0, samples=_SAMPLES, clock=None, sample_gap_ms=0, min_v=1.0):
        self._adc = adc
        self._ratio_e4 = round_int(ratio * _RATIO_SCALE)
        self._samples = samples if samples > 0 else 1
        self._clock = clock
        self._gap_ms = sample_gap_ms
        self._min_cv = round_int(min_v * 100)

    def measure(self):
        out = {'battery_v': None, 'raw_uv': None, 'flags': [], 'error': None}
        n = self._samples
        total = 0
        try:
            for i in range(n):
                if i and self._gap_ms and self._clock is not None:
                    self._clock.sleep_ms(self._gap_ms)
                uv = self._adc.read_uv()
                if type(uv) is not int:
                    raise ValueError('read_uv')
                total += uv
        except Exception:  # noqa: BLE001 - driver contract: bus exceptions become flags
            out['flags'].append('sensor_fault')
            out['error'] = 'adc'
            return out
        out['raw_uv'] = div_round(total, n)
        # battery_v = (total / n) uV * (ratio_e4 / 1e4) / 1e6, in centivolts: / (n * 1e4 * 1e4)
        cv = div_round(total * self._ratio_e4, n * _RATIO_SCALE * _UV_PER_CV)
        if cv < self._min_cv:
            out['flags'].append('sensor_fault')
            out['error'] = 'implausible'
            return out
        out['battery_v'] = cv / 100
        return out
