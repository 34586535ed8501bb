"""The calibration logic: when a point counts as stable, and which results are refused."""

from __future__ import annotations

import pytest

from citynode.tools.calibration import Point, fill_settings, measure_point, soil_settings, stable_run
from citynode.tools.errors import CalibrationError


def reader_of(values):
    """A board whose driver returns `values` in order, in batches as the routine would."""
    it = iter(values)

    def read(n):
        for _ in range(n):
            v = next(it)
            yield {"raw_mv": v} if v is not None else {"raw_mv": None, "error": "short"}

    return read


def test_a_run_counts_only_when_the_last_n_readings_agree_within_the_tolerance():
    assert stable_run([2000, 2480, 2482, 2479], 3, 5) == [2480, 2482, 2479]
    assert stable_run([2480, 2482, 2490], 3, 5) is None
    assert stable_run([2480, 2482], 3, 5) is None


def test_a_point_is_the_median_of_the_first_stable_run_and_reading_stops_there():
    seen = []
    p = measure_point("dry", reader_of([2300, 2420, 2478, 2484, 2480, 2481, 9999]), "raw_mv", count=3, tolerance=10,
                      max_readings=20, on_reading=lambda v, ok: seen.append(ok))
    assert (p.value, p.readings) == (2480, [2300, 2420, 2478, 2484, 2480])  # the batch's rest is not counted
    assert seen == [False, False, False, False, True]


def test_readings_that_never_settle_fail_the_point_with_the_readings():
    with pytest.raises(CalibrationError) as e:
        measure_point("wet", reader_of([1200 + 40 * (i % 2) for i in range(30)]), "raw_mv", count=3, tolerance=10,
                      max_readings=12)
    assert e.value.point == "wet" and len(e.value.readings) == 12


def test_a_missing_reading_fails_at_once_with_a_hint_to_check_the_cable():
    with pytest.raises(CalibrationError) as e:
        measure_point("dry", reader_of([2480, None]), "raw_mv", count=3, tolerance=10, max_readings=12)
    assert "short" in e.value.reason and "cable" in e.value.hint


def test_dry_and_wet_points_too_close_are_refused():
    with pytest.raises(CalibrationError):
        soil_settings(Point("dry", 1500, []), Point("wet", 1450, []), 100)
    assert soil_settings(Point("dry", 2480.4, []), Point("wet", 1210, []), 45) == \
        {"soil_dry_mv": 2480, "soil_wet_mv": 1210, "soil_wet_vwc_pct": 45}


def test_full_distance_defaults_to_the_sensors_blind_zone_margin_and_must_leave_room():
    assert fill_settings(Point("empty", 1.3504, []), "a02yyuw", None) == \
        {"empty_distance_m": 1.35, "full_distance_m": 0.1}
    assert fill_settings(Point("empty", 1.2, []), "jsn_sr04t_pulse", None)["full_distance_m"] == 0.32
    with pytest.raises(CalibrationError):
        fill_settings(Point("empty", 0.35, []), "jsn_sr04t_uart", None)
