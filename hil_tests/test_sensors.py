"""Each sensor driver against its simulated sensor, and what the node does while a sensor is gone.

The node's own log line "[cn] sample {...}" shows what it measured; these tests need no radio (no_radio: the
emulated board has no modem, so a wake takes a fraction of a second). A real board cannot be given a simulated
world, so these tests skip there.
"""

import pytest

pytestmark = pytest.mark.no_radio


def test_capacitive_soil_probe_reads_the_simulated_moisture(board, deploy, run_wake, world):
    deploy("soil", world={"vwc_start": 22.0})
    wake = run_wake()
    expected = world.at(wake.board_time)
    assert wake.sample["vwc_pct"] == pytest.approx(expected.vwc(), abs=0.3)
    # The simulated probe jitters by up to 3 mV, changing every second, and wake.board_time is read when the
    # wake has ended (seconds later on a loaded machine): the ADC must agree with one of the last seconds.
    seconds = [world.at(wake.board_time - dt).probe_mv() for dt in range(4)]
    assert min(seconds) - 2 <= wake.raw_mv <= max(seconds) + 2  # the ADC, in millivolts
    assert "uncalibrated" not in wake.sample["flags"]


def test_a02yyuw_reads_the_simulated_distance_over_its_uart(board, deploy, run_wake, world):
    deploy("fill", world={"fill_start": 65.0})
    wake = run_wake()
    expected = world.at(wake.board_time)
    assert wake.sample["distance_m"] == pytest.approx(expected.distance_m(), abs=0.01)
    assert wake.sample["fill_pct"] == pytest.approx(expected.fill_pct(), abs=1.0)


@pytest.mark.parametrize("kind,field,world_value", [
    ("soil", "soil_temperature_c", "soil_temperature"),
    ("fill", "temperature_c", "air_temperature"),
])
def test_ds18b20_reads_the_simulated_temperature(board, deploy, run_wake, world, kind, field, world_value):
    deploy(kind, world={"soil_temp_mean": 8.5, "temp_mean": 21.0})
    wake = run_wake()
    expected = getattr(world.at(wake.board_time), world_value)()
    assert wake.sample[field] == pytest.approx(expected, abs=1.0 if kind == "fill" else 0.1)  # fill: whole °C


def test_battery_adc_reads_the_simulated_voltage_through_its_divider(board, deploy, run_wake, world):
    deploy("soil", world={"battery_v": 3.41})
    wake = run_wake()
    assert wake.sample["battery_v"] == pytest.approx(world.at(wake.board_time).battery_v(), abs=0.02)


def test_a_low_battery_is_flagged(board, deploy, run_wake):
    board.require_emulation("run the battery down")
    deploy("soil", world={"battery_v": 3.2})
    assert "low_battery" in run_wake().sample["flags"]  # battery_low_v 3.3 V by default


# A fault window from 0.2 h to 0.6 h of board time: with 15-minute wakes, the 2nd and 3rd wake fall inside it.
FAULT = {"from_h": 0.2, "to_h": 0.6, "mode": "absent"}


@pytest.mark.parametrize("kind,sensor,field,flagged", [
    ("soil", "soil", "vwc_pct", True),  # the main sensor: null and sensor_fault
    ("fill", "fill", "fill_pct", True),
    ("soil", "temperature", "soil_temperature_c", False),  # helpers: null only (app/sample.py)
    ("fill", "temperature", "temperature_c", False),
    ("soil", "battery", "battery_v", False),
])
def test_an_absent_sensor_reads_null_and_the_node_keeps_its_schedule(board, deploy, run_wake, kind, sensor, field,
                                                                     flagged):
    board.require_emulation("take a sensor away")
    deploy(kind, world={"faults": [dict(FAULT, sensor=sensor)]})
    wakes = [run_wake() for _ in range(4)]  # at about 0, 0.25, 0.5 and 0.75 h
    values = [w.sample[field] for w in wakes]
    assert values[0] is not None and values[1] is None and values[2] is None and values[3] is not None
    assert ["sensor_fault" in w.sample["flags"] for w in wakes] == [False, flagged, flagged, False]
    assert all(w.lines("sensor ") for w in wakes[1:3])  # the node logs the failing driver
    assert [round(w.sleep_ms / 60000) for w in wakes] == [15, 15, 15, 15]  # the schedule holds
