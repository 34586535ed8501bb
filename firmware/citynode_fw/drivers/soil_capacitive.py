# Capacitive soil-moisture probe on the ADC (the common "capacitive soil moisture sensor v1.2 / v2.0"
# class: an oscillator drives the probe's buried plates and the output is rectified to a DC voltage that
# FALLS as the soil gets wetter, because water raises the plates' capacitance).
#
#   power_pin (optional) --> probe VCC     switched on only while measuring
#   probe AOUT           --> ADC pin       ESP32 ADC1 (GPIO 32..39): ADC2 fails while Wi-Fi is on
#
# ADC: the hardware layer opens the channel with ADC.ATTN_11DB and this driver reads calibrated microvolts
# with read_uv(). At 11 dB the ESP32 ADC is linear from about 150 to 2450 mV and read_uv() applies the
# eFuse calibration (MicroPython docs/esp32/quickref.rst, "ADC"). Probe outputs must lie in that span;
# powered from 3.3 V the typical probe reads about 2.2 V in air and about 1 V in water (inference).
#
# One measurement:
#   1. power the probe and wait `settle_ms` for the oscillator and rectifier to settle (TRUEBNER's SMT50
#      needs ~0.3 s after power-up, top-gun/SMT50-ESP README; the same practice applies here, inference);
#   2. read `samples` values, reject outliers (filters.robust_median) and keep the median, in mV;
#   3. open or shorted probe: a reading near 0 mV (output shorted, probe unpowered) or near full scale
#      (output at the supply rail) is a fault, not a moisture value;
#   4. two-point linear calibration, dry point dry_mv -> 0 %, wet point wet_mv -> wet_vwc_pct:
#         vwc = (dry_mv - mv) * wet_vwc_pct / (dry_mv - wet_mv)      clamped to 0..100 %
#      computed in integer tenths of a percent (the spec's vwc_pct resolution is 0.1 %).
#
# Flags: 'out_of_range' when mv lies outside wet_mv..dry_mv (the value is then extrapolated and clamped),
# 'uncalibrated' while the factory default points are in use, 'sensor_fault' with error 'short' / 'open'
# (reading near 0 mV / near full scale), 'adc' (exception or non-integer from the ADC), 'power' (the
# power pin raised) or 'noisy' (the samples' MAD is above max_spread_mv: they do not agree). 'raw_mv' is
# returned for the calibration tool.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from .filters import clamp, div_round, robust_median, round_int

# Factory default calibration: probe in air (0 %) and in water (100 %) at a 3.3 V supply (inference from
# typical v1.2 probes). Good enough to see trends; 'uncalibrated' says so in every reading.
_DEFAULT_DRY_MV = const(2200)
_DEFAULT_WET_MV = const(1000)
_DEFAULT_WET_VWC_X10 = const(1000)

# Open/short detection (mV). Below the 11 dB linear range start (150 mV) nothing but a shorted output
# reads; a healthy probe never reaches the rail.
_FAULT_LOW_MV = const(200)
_FAULT_HIGH_MV = const(3000)

_SETTLE_MS = const(300)
_SAMPLES = const(9)
_SAMPLE_GAP_MS = const(2)
_TOLERANCE_MV = const(20)  # samples within 20 mV of the median are never outliers
_MAX_SPREAD_MV = const(100)  # MAD above this: the samples do not agree (floating input)
_MAD_K = const(3)
_VWC_MAX_X10 = const(1000)


class SoilCapacitive:
    """Capacitive soil probe: measure() -> {'vwc_pct', 'raw_mv', 'flags', 'error'}."""

    def __init__(self, adc, clock, power_pin=None, settle_ms=_SETTLE_MS, samples=_SAMPLES,
                 sample_gap_ms=_SAMPLE_GAP_MS, dry_mv=None, wet_mv=None, wet_vwc_pct=100,
                 fault_low_mv=_FAULT_LOW_MV, fault_high_mv=_FAULT_HIGH_MV, tolerance_mv=_TOLERANCE_MV,
                 max_spread_mv=_MAX_SPREAD_MV):
        self._adc = adc
        self._clock = clock
        self._power = power_pin
        self._settle_ms = settle_ms
        self._samples = samples if samples > 0 else 1
        self._gap_ms = sample_gap_ms
        self._buf = [0] * self._samples  # reused by every measure()
        self._min_valid = (self._samples + 1) // 2  # a majority of the samples must agree
        self._tol_uv = tolerance_mv * 1000
        self._max_mad_uv = max_spread_mv * 1000
        self._fault_low = fault_low_mv
        self._fault_high = fault_high_mv
        self._bad_cal = False
        self.calibrated = False
        self.set_calibration(dry_mv, wet_mv, wet_vwc_pct)

    def set_calibration(self, dry_mv, wet_mv, wet_vwc_pct=100):
        """Use a new two-point calibration; None for dry_mv or wet_mv restores the factory default.

        A calibration that cannot be right (dry not above wet: capacitive probes read higher when dry;
        a wet point outside 0..100 %) is refused, the default is used and readings carry 'uncalibrated'
        with error 'calibration'."""
        self._bad_cal = False
        if dry_mv is None or wet_mv is None:
            ok = False
        else:
            ok = dry_mv > wet_mv and 0 < wet_vwc_pct <= 100
            self._bad_cal = not ok
        if ok:
            self._dry = round_int(dry_mv)
            self._wet = round_int(wet_mv)
            self._wet_x10 = round_int(wet_vwc_pct * 10)
        else:
            self._dry = _DEFAULT_DRY_MV
            self._wet = _DEFAULT_WET_MV
            self._wet_x10 = _DEFAULT_WET_VWC_X10
        self.calibrated = ok

    def _power_off(self):
        if self._power is not None:
            try:
                self._power.off()
            except Exception:  # noqa: BLE001 - a failing pin must not turn a reading into an exception
                pass

    def _sample(self):
        """Fill self._buf with microvolt readings; the error name, or None."""
        buf = self._buf
        try:
            if self._power is not None:
                try:
                    self._power.on()
                except Exception:  # noqa: BLE001 - driver contract: bus exceptions become flags
                    return 'power'
                self._clock.sleep_ms(self._settle_ms)
            for i in range(self._samples):
                if i and self._gap_ms:
                    self._clock.sleep_ms(self._gap_ms)
                try:
                    uv = self._adc.read_uv()
                except Exception:  # noqa: BLE001 - driver contract: bus exceptions become flags
                    return 'adc'
                if type(uv) is not int:
                    return 'adc'
                buf[i] = uv
        finally:
            self._power_off()
        return None

    def measure(self):
        flags = []
        out = {'vwc_pct': None, 'raw_mv': None, 'flags': flags, 'error': None}
        if not self.calibrated:
            flags.append('uncalibrated')
            if self._bad_cal:
                out['error'] = 'calibration'
        error = self._sample()
        if error is None:
            uv, _ = robust_median(self._buf, self._tol_uv, _MAD_K, self._min_valid, self._max_mad_uv)
            if uv is None:
                error = 'noisy'
            else:
                mv = div_round(uv, 1000)
                out['raw_mv'] = mv
                if mv < self._fault_low:
                    error = 'short'  # output at ground: shorted or unpowered probe
                elif mv > self._fault_high:
                    error = 'open'  # output at the rail: broken probe or open input
                else:
                    dry = self._dry
                    if mv > dry or mv < self._wet:
                        flags.append('out_of_range')
                    vwc_x10 = div_round((dry - mv) * self._wet_x10, dry - self._wet)
                    out['vwc_pct'] = clamp(vwc_x10, 0, _VWC_MAX_X10) / 10
        if error is not None:
            flags.append('sensor_fault')
            out['error'] = error
        return out
