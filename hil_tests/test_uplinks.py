"""A soil node and a fill node each send a decodable uplink whose values are what the sensors saw."""

import pytest


def test_a_soil_node_sends_a_decodable_reading(board, deploy, run_wake, uplinks):
    deploy("soil")
    wake = run_wake()
    assert [(port, result) for port, _, result in wake.sent][:1] == [(1, "ok")]  # soil_reading goes out first
    up = uplinks.wait(1)[0]
    assert up.message == "soil_reading" and "errors" not in up.decoded
    assert 0 <= up.data["vwc_pct"] <= 100 and up.data["flags"] == []
    assert up.data["vwc_pct"] == wake.sample["vwc_pct"]
    assert up.data["soil_temperature_c"] == wake.sample["soil_temperature_c"]


def test_a_soil_reading_matches_the_simulated_world(board, deploy, run_wake, uplinks, world):
    deploy("soil")
    wake = run_wake()
    expected = world.at(wake.board_time)
    up = uplinks.wait(1, message="soil_reading")[0]
    assert up.data["vwc_pct"] == pytest.approx(expected.vwc(), abs=0.3)
    assert up.data["soil_temperature_c"] == pytest.approx(expected.soil_temperature(), abs=0.1)
    assert up.data["battery_v"] == pytest.approx(expected.battery_v(), abs=0.02)


def test_a_fill_node_sends_a_decodable_reading(board, deploy, run_wake, uplinks):
    deploy("fill")
    wake = run_wake()
    up = uplinks.wait(1)[0]
    assert up.message == "fill_reading" and "errors" not in up.decoded
    assert up.data["fill_pct"] == wake.sample["fill_pct"] and up.data["distance_m"] == wake.sample["distance_m"]


def test_a_fill_reading_matches_the_simulated_world(board, deploy, run_wake, uplinks, world):
    deploy("fill")
    wake = run_wake()
    expected = world.at(wake.board_time)
    up = uplinks.wait(1, message="fill_reading")[0]
    assert up.data["fill_pct"] == pytest.approx(expected.fill_pct(), abs=1.0)
    assert up.data["distance_m"] == pytest.approx(expected.distance_m(), abs=0.01)
    assert up.data["temperature_c"] == pytest.approx(expected.air_temperature(), abs=1.0)


def test_the_second_wake_sends_the_status_the_duty_cycle_held_back(board, deploy, run_wake, uplinks):
    deploy("soil")
    first = run_wake()
    assert [result for _, _, result in first.sent] == ["ok", "duty_cycle"]  # EU868 1 %: one uplink per wake here
    run_wake()
    status = uplinks.wait(1, message="status")[0]
    assert status.data["node_kind"] == "soil" and status.data["wake_count"] == 2
    if board.emulated:  # a bench board's reset cause is whatever its last reset was
        assert status.data["reset_cause"] == "power_on"
