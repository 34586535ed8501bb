# Alarm decisions with hysteresis: one raise, one clear, no storm of uplinks around a threshold.
from citynode_fw.app import alarms, config

CFG = config.defaults()


def _run(kind, values, key, active=None, last_fill=None):
    active = active or []
    seen = []
    for v in values:
        events, active = alarms.evaluate(kind, {key: v, 'battery_v': 3.6, 'flags': []}, CFG, active, last_fill)
        seen.append(events)
        if kind == 'fill':
            last_fill = v
    return seen, active


def test_a_filling_container_raises_fill_full_once_and_clears_below_the_hysteresis():
    seen, active = _run('fill', [70, 89, 90, 95, 85, 81, 79], 'fill_pct')
    assert seen == [[], [], [('fill_full', False)], [], [], [], [('fill_full', True)]]
    assert 'fill_full' not in active


def test_a_sudden_drop_of_a_fuller_container_is_an_emptying():
    seen, _ = _run('fill', [60, 10], 'fill_pct')
    assert seen[1] == [('emptied', False)]
    seen, _ = _run('fill', [15, 0], 'fill_pct')  # was barely filled: noise, not an emptying
    assert seen[1] == []


def test_drying_soil_raises_soil_dry_and_irrigation_clears_it():
    seen, _ = _run('soil', [20.0, 12.1, 12.0, 13.5, 15.1], 'vwc_pct')
    assert seen == [[], [], [('soil_dry', False)], [], [('soil_dry', True)]]


def test_an_unknown_value_keeps_the_alarm_as_it_was():
    events, active = alarms.evaluate('soil', {'vwc_pct': None, 'flags': ['sensor_fault']}, CFG, ['soil_dry'], None)
    assert ('soil_dry', True) not in events and 'soil_dry' in active and ('sensor_fault', False) in events


def test_low_battery_has_its_own_hysteresis():
    active = []
    out = []
    for v in (3.4, 3.3, 3.35, 3.41):
        events, active = alarms.evaluate('soil', {'vwc_pct': 30, 'battery_v': v, 'flags': []}, CFG, active, None)
        out.append(events)
    assert out == [[], [('battery_low', False)], [], [('battery_low', True)]]


def test_a_hot_container_raises_overheat():
    events, active = alarms.evaluate('fill', {'fill_pct': 50, 'temperature_c': 70, 'battery_v': 3.6, 'flags': []},
                                     CFG, [], 50)
    assert ('overheat', False) in events and 'overheat' in active
