# Battery voltage through a divider: averaging, divider ratio, rounding, failures.

from citynode_fw.drivers.battery import Battery
from fakes import FakeADC, FakeClock


def test_voltage_is_the_adc_reading_times_the_divider_ratio():
    adc = FakeADC([1_850_000])
    r = Battery(adc, ratio=2.0).measure()
    assert r == {'battery_v': 3.7, 'raw_uv': 1_850_000, 'flags': [], 'error': None}
    assert adc.reads == 8


def test_samples_are_averaged():
    adc = FakeADC([1_800_000, 1_900_000, 1_800_000, 1_900_000])
    r = Battery(adc, ratio=2.0, samples=4).measure()
    assert r['raw_uv'] == 1_850_000
    assert r['battery_v'] == 3.7
    assert adc.reads == 4


def test_voltage_is_rounded_half_up_to_hundredths():
    # mean 1_852_500 uV * 2 = 3.705 V -> 3.71 V; mean 1_852_400 uV * 2 = 3.7048 V -> 3.70 V
    r = Battery(FakeADC([1_852_000, 1_853_000]), ratio=2.0, samples=2).measure()
    assert r['battery_v'] == 3.71
    r = Battery(FakeADC([1_852_400]), ratio=2.0, samples=2).measure()
    assert r['battery_v'] == 3.7


def test_other_divider_ratios_scale_the_reading():
    # 100k over 200k: ratio (100 + 200) / 200 = 1.5
    r = Battery(FakeADC([2_400_000]), ratio=1.5).measure()
    assert r['battery_v'] == 3.6
    r = Battery(FakeADC([1_000_000]), ratio=3.2).measure()
    assert r['battery_v'] == 3.2


def test_adc_exception_becomes_sensor_fault():
    r = Battery(FakeADC([1_850_000, OSError(5)]), ratio=2.0).measure()
    assert r['battery_v'] is None
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'adc'


def test_adc_returning_a_non_integer_is_a_fault():
    r = Battery(FakeADC([None]), ratio=2.0).measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'adc'


def test_a_reading_no_working_battery_could_give_is_a_fault():
    # 60 mV at the pin: a broken divider or no battery, not a 0.12 V battery powering the node
    r = Battery(FakeADC([60_000]), ratio=2.0).measure()
    assert r['battery_v'] is None
    assert r['raw_uv'] == 60_000
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'implausible'


def test_low_but_real_battery_is_reported_without_a_flag():
    # the low-battery decision belongs to the app
    r = Battery(FakeADC([1_500_000]), ratio=2.0).measure()
    assert r['battery_v'] == 3.0
    assert r['flags'] == []


def test_samples_are_spaced_by_the_gap_when_a_clock_is_given():
    clock = FakeClock()
    Battery(FakeADC([1_850_000]), ratio=2.0, samples=4, clock=clock, sample_gap_ms=5).measure()
    assert clock.ticks_ms() == 15
