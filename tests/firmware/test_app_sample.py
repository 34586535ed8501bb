# From driver results to one sample: fill level from geometry, flags, clamping into the payload's ranges.
from citynode_fw.app import config, sample

CFG = config.defaults()


def test_fill_level_runs_from_the_empty_to_the_full_distance():
    assert sample.fill_from_distance(1.2, 1.2, 0.2) == (0, False)
    assert sample.fill_from_distance(0.7, 1.2, 0.2) == (50, False)
    assert sample.fill_from_distance(0.2, 1.2, 0.2) == (100, False)
    assert sample.fill_from_distance(0.05, 1.2, 0.2) == (115, False)  # overfilled
    assert sample.fill_from_distance(1.5, 1.2, 0.2) == (0, True)  # beyond the bottom: out of range
    assert sample.fill_from_distance(None, 1.2, 0.2) == (None, False)


def test_a_fill_sample_takes_its_flags_from_the_distance_sensor_not_the_thermometer():
    s = sample.build('fill', {'fill': {'distance_m': 0.7, 'flags': []},
                              'temperature': {'temperature_c': None, 'flags': ['sensor_fault'], 'error': 'absent'},
                              'battery': {'battery_v': 3.61, 'flags': []}}, CFG)
    assert s == {'battery_v': 3.61, 'temperature_c': None, 'fill_pct': 50, 'distance_m': 0.7, 'flags': []}


def test_low_battery_and_config_errors_become_flags():
    s = sample.build('soil', {'soil': {'vwc_pct': 23.44, 'flags': ['uncalibrated']},
                              'battery': {'battery_v': 3.2}}, CFG, config_error=True)
    assert s['flags'] == ['uncalibrated', 'low_battery', 'config_error'] and s['vwc_pct'] == 23.4


def test_values_beyond_the_payload_range_are_clamped_and_flagged():
    s = sample.build('soil', {'soil': {'vwc_pct': 30, 'soil_temperature_c': 71.0, 'flags': []},
                              'battery': {'battery_v': 5.1}}, CFG)
    assert s['soil_temperature_c'] == 60 and s['battery_v'] == 4.5 and s['flags'] == ['out_of_range']


def test_an_sdi12_probe_s_tension_and_ec_are_kept_only_when_measured():
    s = sample.build('soil', {'soil': {'vwc_pct': 30, 'soil_temperature_c': 10, 'soil_ec_us_cm': 410,
                                       'flags': []}}, CFG)
    assert s['soil_ec_us_cm'] == 410 and 'soil_tension_kpa' not in s
