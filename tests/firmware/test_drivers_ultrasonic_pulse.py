# Trigger/echo ultrasonic sensor: trigger pulse, speed of sound, outliers, blind zone, no echo, faults.

from citynode_fw.drivers.ultrasonic_pulse import UltrasonicPulse, speed_x10
from fakes import FakeClock, FakePin
from sensor_fakes import BrokenPin, FakePulse, TimedPin, echo_us


def _sensor(results, **kw):
    clock = FakeClock()
    trigger = TimedPin(clock)
    echo = FakePin()
    pulse = FakePulse(results, clock)
    return UltrasonicPulse(trigger, echo, pulse, clock, **kw), trigger, echo, pulse


def test_echo_time_gives_distance_at_20_c():
    # c = 331.3 + 0.606 * 20 = 343.42 m/s; 343.42 * 5830 us / 2 = 1001.07 mm
    sensor, _, _, _ = _sensor([5830])
    r = sensor.measure(temperature_c=20)
    assert r == {'distance_m': 1.001, 'raw_us': 5830, 'raw_pings': 5, 'flags': [], 'error': None}


def test_unknown_temperature_is_taken_as_20_c():
    sensor, _, _, _ = _sensor([5830])
    assert sensor.measure()['distance_m'] == 1.001
    assert sensor.measure(temperature_c=None)['distance_m'] == 1.001


def test_speed_of_sound_follows_the_container_temperature():
    # 0 C: 331.3 m/s -> 965.74 mm; 30 C: 349.48 m/s -> 1018.73 mm; 21.5 C: 344.329 m/s -> 1003.72 mm
    sensor, _, _, _ = _sensor([5830])
    assert sensor.measure(temperature_c=0)['distance_m'] == 0.966
    assert sensor.measure(temperature_c=30)['distance_m'] == 1.019
    assert sensor.measure(temperature_c=21.5)['distance_m'] == 1.004
    assert sensor.measure(temperature_c=-10)['distance_m'] == 0.948  # 325.24 m/s -> 948.07 mm


def test_speed_of_sound_formula_in_tenths_of_a_millimetre_per_second():
    assert speed_x10(20) == 3434200
    assert speed_x10(0) == 3313000
    assert speed_x10(-40) == 3070600


def test_implausible_temperatures_fall_back_to_20_c():
    assert speed_x10(float('nan')) == 3434200
    assert speed_x10(float('inf')) == 3434200
    assert speed_x10(-55) == 3434200
    assert speed_x10('21') == 3434200


def test_each_ping_is_a_10_us_trigger_pulse_then_an_echo_measurement():
    sensor, trigger, echo, pulse = _sensor([5830], pings=3)
    sensor.measure()
    levels = [lv for _, lv in trigger.events]
    assert levels == [0, 1, 0] * 3
    for k in range(3):
        t_on = trigger.events[3 * k + 1][0]
        t_off = trigger.events[3 * k + 2][0]
        assert t_off - t_on == 10
    assert len(pulse.calls) == 3
    for pin, level, timeout, _at in pulse.calls:
        assert pin is echo
        assert level == 1
        assert timeout == 42995  # 6 m round trip at -40 C, + 10 %


def test_pings_are_spaced_by_the_recovery_pause():
    sensor, _, _, pulse = _sensor([5830], pings=4, ping_gap_ms=60)
    sensor.measure()
    starts = [c[3] for c in pulse.calls]
    for i in range(len(starts) - 1):
        assert starts[i + 1] - starts[i] >= 60_000


def test_outlier_echoes_are_rejected_before_the_median():
    # plain median of the seven would be 5840 us (1.003 m); without the two stray echoes it is 5830 us
    sensor, _, _, _ = _sensor([5830, 5830, 9000, 5840, 9100, 5830, 5840], pings=7)
    r = sensor.measure(temperature_c=20)
    assert r['raw_us'] == 5830
    assert r['distance_m'] == 1.001
    assert r['raw_pings'] == 7


def test_failed_pings_are_skipped_when_enough_echoes_remain():
    sensor, _, _, _ = _sensor([5830, -1, 5830, 5830, -2])
    r = sensor.measure()
    assert r['distance_m'] == 1.001
    assert r['raw_pings'] == 3
    assert r['flags'] == []


def test_no_echo_pulse_at_all_is_a_timeout_fault():
    sensor, _, _, _ = _sensor([-2])
    r = sensor.measure()
    assert r['distance_m'] is None
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'timeout'
    assert r['raw_pings'] == 0


def test_echo_pulses_that_never_end_are_a_no_echo_fault():
    sensor, _, _, _ = _sensor([-1])
    r = sensor.measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'no_echo'


def test_too_few_echoes_are_a_fault():
    sensor, _, _, _ = _sensor([5830, -2, -2, -2, 5830])
    r = sensor.measure()
    assert r['distance_m'] is None
    assert r['raw_pings'] == 2
    assert r['flags'] == ['sensor_fault']


def test_echoes_that_disagree_are_a_noisy_fault():
    sensor, _, _, _ = _sensor([3000, 6000, 9000, 12000, 15000])
    r = sensor.measure()
    assert r['distance_m'] is None
    assert r['error'] == 'noisy'


def test_target_inside_the_blind_zone_is_out_of_range_and_clamped():
    t = echo_us(0.10)  # 582 us
    sensor, _, _, _ = _sensor([t])
    r = sensor.measure(temperature_c=20)
    assert r['raw_us'] == 582
    assert r['distance_m'] == 0.25
    assert r['flags'] == ['out_of_range']


def test_blind_zone_is_configurable():
    sensor, _, _, _ = _sensor([echo_us(0.10)], blind_m=0.02)
    r = sensor.measure(temperature_c=20)
    assert r['distance_m'] == 0.1
    assert r['flags'] == []


def test_target_beyond_max_range_is_out_of_range_and_clamped():
    sensor, _, _, _ = _sensor([38000])  # 6.525 m at 20 C
    r = sensor.measure(temperature_c=20)
    assert r['distance_m'] == 6.0
    assert r['raw_us'] == 38000
    assert r['flags'] == ['out_of_range']


def test_exception_from_the_echo_timer_is_a_fault_not_an_exception():
    sensor, _, _, _ = _sensor([5830, OSError(5)])
    r = sensor.measure()
    assert r['distance_m'] is None
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'bus'


def test_broken_trigger_pin_is_a_fault_not_an_exception():
    clock = FakeClock()
    sensor = UltrasonicPulse(BrokenPin(), FakePin(), FakePulse([5830], clock), clock)
    r = sensor.measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'bus'
