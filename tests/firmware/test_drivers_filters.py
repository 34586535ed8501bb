# Shared driver filters: median, MAD outlier rejection, mean, clamp, rounding, stuck detection.

from citynode_fw.drivers import filters


def test_median_of_an_odd_count_is_the_middle_value():
    assert filters.median([5, 1, 9, 3, 7]) == 5


def test_median_of_even_integers_stays_an_integer_rounded_down():
    m = filters.median([10, 1, 4, 7])  # middle values 4 and 7
    assert m == 5
    assert type(m) is int


def test_median_of_even_floats_is_the_mean_of_the_middle_pair():
    assert filters.median([1.0, 2.0, 3.0, 10.0]) == 2.5


def test_median_of_nothing_is_none():
    assert filters.median([]) is None


def test_median_leaves_the_input_unsorted():
    values = [3, 1, 2]
    filters.median(values)
    assert values == [3, 1, 2]


def test_mad_measures_spread_around_the_median():
    # deviations from 10: 0, 1, 1, 2, 30 -> median deviation 1
    assert filters.mad([10, 11, 9, 12, 40]) == 1


def test_outliers_beyond_k_times_mad_are_dropped_in_order():
    kept = filters.reject_outliers([1000, 1002, 998, 5000, 1001, 999, 1], tolerance=0, k=3)
    assert kept == [1000, 1002, 998, 1001, 999]


def test_tolerance_keeps_close_samples_when_mad_is_zero():
    # MAD is 0 (most samples identical): without a tolerance the 101 would go
    assert filters.reject_outliers([100, 100, 100, 101, 100], tolerance=0) == [100, 100, 100, 100]
    assert filters.reject_outliers([100, 100, 100, 101, 100], tolerance=2) == [100, 100, 100, 101, 100]


def test_robust_median_ignores_a_spike():
    # median of all six is 1501 either way; the spike must not be among the samples kept
    value, kept = filters.robust_median([1500, 1502, 2900, 1498, 1501, 1503], tolerance=20)
    assert value == 1501
    assert kept == 5


def test_robust_median_drops_spike_that_would_shift_an_even_median():
    # without rejection the median of the four would be (1500 + 1502) // 2 = 1501; with it, 1500
    value, kept = filters.robust_median([1500, 1502, 2900, 1498], tolerance=20)
    assert value == 1500
    assert kept == 3


def test_robust_median_refuses_when_too_few_samples_agree():
    value, kept = filters.robust_median([100, 101, 900], tolerance=10, k=3, min_valid=3)
    assert value is None
    assert kept == 2


def test_robust_median_refuses_scattered_samples():
    value, _ = filters.robust_median([300, 900, 1500, 2100, 2700], tolerance=20, max_mad=50)
    assert value is None
    value, _ = filters.robust_median([1500, 1510, 1490, 1505, 1495], tolerance=20, max_mad=50)
    assert value == 1500


def test_robust_median_of_nothing_is_none():
    assert filters.robust_median([]) == (None, 0)


def test_mean_is_a_true_division():
    assert filters.mean([1, 2]) == 1.5
    assert filters.mean([]) is None


def test_div_round_rounds_halves_away_from_zero():
    assert filters.div_round(15, 10) == 2
    assert filters.div_round(14, 10) == 1
    assert filters.div_round(-15, 10) == -2
    assert filters.div_round(-14, 10) == -1


def test_round_int_is_the_same_for_both_signs():
    assert filters.round_int(2.5) == 3
    assert filters.round_int(-2.5) == -3
    assert filters.round_int(-2.4) == -2
    assert filters.round_int(7) == 7


def test_clamp_limits_both_ends():
    assert filters.clamp(-1, 0, 100) == 0
    assert filters.clamp(101, 0, 100) == 100
    assert filters.clamp(42, 0, 100) == 42


def test_identical_values_are_stuck_and_varying_ones_are_not():
    assert filters.is_stuck([1234, 1234, 1234])
    assert not filters.is_stuck([1234, 1235, 1234])
    assert filters.is_stuck([1234, 1235, 1234], tolerance=1)
    assert not filters.is_stuck([1234])


def test_repeat_count_counts_repeats_and_resets_on_change():
    count = 0
    prev = None
    for v in (500, 500, 500, 501, 501):
        count = filters.repeat_count(prev, v, count)
        prev = v
    assert count == 1  # 501 repeated once after the change
    assert filters.repeat_count(500, 500, 2) == 3
    assert filters.repeat_count(None, 500, 5) == 0
