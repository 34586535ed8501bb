# Capacitive soil probe: calibration maths, flags, outlier rejection, power switching, failures.

from citynode_fw.drivers.soil_capacitive import SoilCapacitive
from fakes import FakeADC, FakeClock, FakePin
from sensor_fakes import BrokenPin, TimedADC, TimedPin


def _probe(readings_mv, **kw):
    clock = FakeClock()
    adc = FakeADC([mv * 1000 if isinstance(mv, int) else mv for mv in readings_mv])
    kw.setdefault('dry_mv', 2400)
    kw.setdefault('wet_mv', 1200)
    kw.setdefault('wet_vwc_pct', 40)
    return SoilCapacitive(adc, clock, **kw), adc, clock


def test_reading_is_interpolated_between_the_dry_and_wet_points():
    # (2400 - 1234) * 40 / (2400 - 1200) = 38.87 -> 38.9 %
    probe, _, _ = _probe([1234])
    r = probe.measure()
    assert r == {'vwc_pct': 38.9, 'raw_mv': 1234, 'flags': [], 'error': None}


def test_dry_point_reads_zero_and_wet_point_reads_its_calibrated_value():
    probe, _, _ = _probe([2400])
    assert probe.measure()['vwc_pct'] == 0.0
    probe, _, _ = _probe([1200])
    r = probe.measure()
    assert r['vwc_pct'] == 40.0
    assert r['flags'] == []


def test_microvolts_are_rounded_to_the_nearest_millivolt():
    probe = SoilCapacitive(FakeADC([1_799_500]), FakeClock(), dry_mv=2400, wet_mv=1200, wet_vwc_pct=40)
    r = probe.measure()
    assert r['raw_mv'] == 1800
    assert r['vwc_pct'] == 20.0


def test_factory_default_calibration_is_flagged_uncalibrated():
    clock = FakeClock()
    probe = SoilCapacitive(FakeADC([1_600_000]), clock)
    r = probe.measure()
    # defaults: 2200 mV in air -> 0 %, 1000 mV in water -> 100 %: (2200 - 1600) / 1200 = 50 %
    assert r['vwc_pct'] == 50.0
    assert r['flags'] == ['uncalibrated']
    assert r['error'] is None
    assert not probe.calibrated


def test_new_calibration_clears_the_uncalibrated_flag():
    probe = SoilCapacitive(FakeADC([1_800_000]), FakeClock())
    probe.set_calibration(2400, 1200, 40)
    r = probe.measure()
    assert r['flags'] == []
    assert r['vwc_pct'] == 20.0


def test_probe_drier_than_the_dry_point_reads_zero_and_is_out_of_range():
    probe, _, _ = _probe([2500])
    r = probe.measure()
    assert r['vwc_pct'] == 0.0
    assert r['flags'] == ['out_of_range']
    assert r['raw_mv'] == 2500


def test_probe_wetter_than_the_wet_point_is_extrapolated_and_out_of_range():
    # (2400 - 1000) * 40 / 1200 = 46.67 -> 46.7 %, beyond the calibrated span
    probe, _, _ = _probe([1000])
    r = probe.measure()
    assert r['vwc_pct'] == 46.7
    assert r['flags'] == ['out_of_range']


def test_extrapolation_is_clamped_to_100_percent():
    probe = SoilCapacitive(FakeADC([900_000]), FakeClock())
    r = probe.measure()  # defaults: (2200 - 900) / 1200 = 108 % -> 100 %
    assert r['vwc_pct'] == 100.0
    assert 'out_of_range' in r['flags']
    assert 'uncalibrated' in r['flags']


def test_outliers_are_rejected_before_the_median():
    # The plain median of the nine samples is 1810 mV; without the two spikes it is 1805 mV.
    readings = [1790, 1795, 1800, 1805, 1810, 1815, 1820, 2900, 2950]
    probe, adc, _ = _probe(readings)
    r = probe.measure()
    assert r['raw_mv'] == 1805
    assert r['vwc_pct'] == 19.8  # (2400 - 1805) * 40 / 1200 = 19.83
    assert adc.reads == 9


def test_scattered_samples_are_a_noisy_fault():
    probe, _, _ = _probe([300, 900, 1500, 2100, 2700, 600, 1200, 1800, 2400])
    r = probe.measure()
    assert r['vwc_pct'] is None
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'noisy'


def test_shorted_probe_near_zero_millivolts_is_a_fault():
    probe, _, _ = _probe([40])
    r = probe.measure()
    assert r['vwc_pct'] is None
    assert r['raw_mv'] == 40
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'short'


def test_output_at_the_supply_rail_is_a_fault():
    probe, _, _ = _probe([3150])
    r = probe.measure()
    assert r['vwc_pct'] is None
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'open'


def test_adc_exception_becomes_sensor_fault_and_the_probe_is_switched_off():
    clock = FakeClock()
    power = FakePin()
    probe = SoilCapacitive(FakeADC([1_800_000, OSError(5)]), clock, power_pin=power, dry_mv=2400, wet_mv=1200)
    r = probe.measure()
    assert r['vwc_pct'] is None
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'adc'
    assert power.history == [1, 0]


def test_adc_returning_a_non_integer_is_a_fault():
    probe, _, _ = _probe([None])
    r = probe.measure()
    assert r['error'] == 'adc'
    assert 'sensor_fault' in r['flags']


def test_power_pin_failure_is_a_fault_not_an_exception():
    probe = SoilCapacitive(FakeADC([1_800_000]), FakeClock(), power_pin=BrokenPin(), dry_mv=2400, wet_mv=1200)
    r = probe.measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'power'


def test_probe_is_powered_for_the_settle_time_before_sampling_and_off_after():
    clock = FakeClock()
    power = TimedPin(clock)
    adc = TimedADC(clock, [1_800_000])
    probe = SoilCapacitive(adc, clock, power_pin=power, settle_ms=300, samples=5, sample_gap_ms=2,
                           dry_mv=2400, wet_mv=1200, wet_vwc_pct=40)
    r = probe.measure()
    assert r['vwc_pct'] == 20.0
    assert [lv for _, lv in power.events] == [1, 0]
    on_ms = power.events[0][0] // 1000
    off_ms = power.events[1][0] // 1000
    assert adc.times == [300, 302, 304, 306, 308]
    assert adc.times[0] - on_ms >= 300
    assert off_ms >= adc.times[-1]


def test_reversed_calibration_is_refused_and_defaults_are_used():
    clock = FakeClock()
    probe = SoilCapacitive(FakeADC([1_600_000]), clock, dry_mv=1200, wet_mv=2400)
    r = probe.measure()
    assert r['vwc_pct'] == 50.0  # factory default points
    assert r['flags'] == ['uncalibrated']
    assert r['error'] == 'calibration'


def test_repeated_measurements_give_the_same_result():
    probe, adc, _ = _probe([1234])
    first = probe.measure()
    second = probe.measure()
    assert first == second
    assert adc.reads == 18
