"""Alert rules: raised once, cleared once, hysteresis, per-device thresholds, node alarms, no storms."""

from __future__ import annotations

from citynode.core.alerts import AlertEngine, AlertSettings

DEV = "ac1f09fffe000002"


def fill(engine, pct, t, flags=(), battery=3.6, overrides=None):
    return engine.evaluate(DEV, "fill", {"fill_pct": pct, "distance_m": 0.5, "temperature_c": 10}, battery, flags,
                           t, overrides)


def soil(engine, vwc, t, flags=(), battery=3.6):
    return engine.evaluate(DEV, "soil", {"vwc_pct": vwc}, battery, flags, t)


def names(events):
    return [(e.alert, e.state) for e in events]


def test_collection_needed_is_raised_at_the_threshold_once_and_cleared_below_the_hysteresis_band():
    e = AlertEngine(AlertSettings(fill_collection_pct=80, fill_hysteresis_pct=5, cooldown_s=0))
    assert names(fill(e, 79.9, 0)) == []
    assert names(fill(e, 80, 1)) == [("collection_needed", "raised")]
    assert names(fill(e, 95, 2)) == []  # no repeat while raised
    assert names(fill(e, 76, 3)) == []  # inside the hysteresis band
    assert names(fill(e, 74.9, 4)) == [("collection_needed", "cleared")]
    assert names(fill(e, 70, 5)) == []


def test_irrigation_needed_is_raised_when_the_soil_dries_and_cleared_when_it_is_wet_again():
    e = AlertEngine(AlertSettings(soil_irrigation_pct=15, soil_hysteresis_pct=2, cooldown_s=0))
    events = soil(e, 14.9, 0)
    assert names(events) == [("irrigation_needed", "raised")]
    assert events[0].value == 14.9 and events[0].threshold == 15 and events[0].unit == "%"
    assert names(soil(e, 16.5, 1)) == []
    assert names(soil(e, 17.1, 2)) == [("irrigation_needed", "cleared")]


def test_missing_values_neither_raise_nor_clear():
    e = AlertEngine(AlertSettings(cooldown_s=0))
    assert names(fill(e, 90, 0)) == [("collection_needed", "raised")]
    assert names(fill(e, None, 1)) == []
    assert e.active(DEV) == ["collection_needed"]


def test_per_device_thresholds_from_the_registry_override_the_settings():
    e = AlertEngine(AlertSettings(fill_collection_pct=80, cooldown_s=0))
    assert names(fill(e, 76, 0, overrides={"fill_collection_pct": 75})) == [("collection_needed", "raised")]


def test_battery_low_by_voltage_or_flag_and_cleared_only_above_threshold_plus_hysteresis_without_flag():
    e = AlertEngine(AlertSettings(battery_low_v=3.3, battery_hysteresis_v=0.1, cooldown_s=0))
    assert names(fill(e, 10, 0, battery=3.3)) == [("battery_low", "raised")]
    assert names(fill(e, 10, 1, battery=3.35)) == []
    assert names(fill(e, 10, 2, battery=3.5, flags=("low_battery",))) == []
    assert names(fill(e, 10, 3, battery=3.5)) == [("battery_low", "cleared")]
    e2 = AlertEngine(AlertSettings(cooldown_s=0))
    assert names(fill(e2, 10, 0, battery=None, flags=("low_battery",))) == [("battery_low", "raised")]


def test_sensor_fault_flag_raises_and_a_clean_sample_clears():
    e = AlertEngine(AlertSettings(cooldown_s=0))
    assert names(fill(e, None, 0, flags=("sensor_fault",))) == [("sensor_fault", "raised")]
    assert names(fill(e, None, 1, flags=("sensor_fault",))) == []
    assert names(fill(e, 10, 2)) == [("sensor_fault", "cleared")]


def test_a_flapping_value_does_not_storm_within_the_cooldown():
    e = AlertEngine(AlertSettings(fill_collection_pct=80, fill_hysteresis_pct=5, cooldown_s=600))
    published = []
    for i in range(100):  # oscillates across the whole hysteresis band every sample, one sample a minute
        published += fill(e, 90 if i % 2 == 0 else 60, i * 60.0)
    raises = [ev for ev in published if ev.state == "raised"]
    assert len(raises) <= 100 * 60 / 600 + 1
    assert len(published) < 30


def test_node_alarms_pass_through_as_node_alerts_without_repeats():
    e = AlertEngine()
    raised = e.node_alarm(DEV, {"event": "fill_full", "cleared": False, "fill_pct": 92}, 0)
    assert (raised.alert, raised.state, raised.origin, raised.value) == ("node_fill_full", "raised", "node", 92)
    assert e.node_alarm(DEV, {"event": "fill_full", "cleared": False, "fill_pct": 93}, 1) is None
    assert e.node_alarm(DEV, {"event": "fill_full", "cleared": True, "fill_pct": 20}, 2).state == "cleared"
    emptied = [e.node_alarm(DEV, {"event": "emptied", "cleared": False}, t) for t in (3, 4)]
    assert [ev.state for ev in emptied] == ["raised", "raised"]  # an event, not a condition
    assert e.node_alarm(DEV, {"event": "volcano"}, 5) is None
    assert e.node_alarm(DEV, {"event": "overheat", "temperature_c": 80}, 6).severity == "critical"


def test_device_silent_is_raised_once_and_cleared_once():
    e = AlertEngine()
    assert e.silent(DEV, True, 0, 10800, 10800).state == "raised"
    assert e.silent(DEV, True, 10, 10810) is None
    assert e.silent(DEV, False, 20, 0).state == "cleared"
    assert e.silent(DEV, False, 30, 0) is None
