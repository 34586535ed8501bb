# Small pure helpers shared by the sensor drivers: median, outlier rejection, mean, clamp, rounding and
# stuck-value detection. No I/O and no hardware imports, so the same code runs on the board, on the
# MicroPython Unix port and under CPython.
#
# Integer-friendly: given integers (microvolts, microseconds, millimetres) the helpers return integers and
# never go through floats, so a reading is computed bit for bit the same on an ESP32 (single-precision
# floats) as on a PC (double precision). Floats work too.
#
# Outlier rejection follows the usual robust-statistics recipe: take the median, measure the spread with
# the median absolute deviation (MAD), and drop samples farther than k * MAD from the median. A fixed
# tolerance sets a floor on that distance, because with a quiet sensor the MAD is 0 and k * MAD alone
# would throw away every sample that is off by one count. ESPHome's `median` filter (window 5) is the
# same idea without the rejection step (esphome-docs, components/sensor/index.rst).


def median(values):
    """Median of a non-empty sequence. With an even count it is the mean of the two middle values; for
    integers that mean rounds down, so the result stays an integer. None for an empty sequence."""
    n = len(values)
    if n == 0:
        return None
    s = sorted(values)
    mid = n // 2
    if n & 1:
        return s[mid]
    a = s[mid - 1]
    b = s[mid]
    if type(a) is int and type(b) is int:
        return (a + b) // 2
    return (a + b) / 2


def mad(values, centre=None):
    """Median absolute deviation of the values around `centre` (their median when not given)."""
    if not values:
        return None
    if centre is None:
        centre = median(values)
    return median([abs(v - centre) for v in values])


def reject_outliers(values, tolerance=0, k=3):
    """The values within max(k * MAD, tolerance) of the median, in their original order."""
    if not values:
        return []
    m = median(values)
    limit = k * mad(values, m)
    if limit < tolerance:
        limit = tolerance
    return [v for v in values if abs(v - m) <= limit]


def robust_median(values, tolerance=0, k=3, min_valid=1, max_mad=None):
    """Median of the values left after outlier rejection, and how many were left.

    Returns (None, kept) when fewer than `min_valid` samples survive, or when the samples are so scattered
    that their MAD exceeds `max_mad` (a floating input, echoes from several surfaces): samples that do not
    agree give no reading, and the driver turns that into a fault rather than guess. Rejection alone
    cannot catch scatter, because at least half of the samples always lie within one MAD of the median."""
    if not values:
        return None, 0
    m = median(values)
    spread = mad(values, m)
    limit = k * spread
    if limit < tolerance:
        limit = tolerance
    kept = [v for v in values if abs(v - m) <= limit]
    n = len(kept)
    if n < min_valid or (max_mad is not None and spread > max_mad):
        return None, n
    return median(kept), n


def mean(values):
    """Arithmetic mean (true division, so a float). None for an empty sequence."""
    if not values:
        return None
    return sum(values) / len(values)


def div_round(num, den):
    """Integer division rounded to nearest, halves away from zero; den must be positive."""
    if num >= 0:
        return (num + den // 2) // den
    return -((-num + den // 2) // den)


def round_int(x):
    """Round a number to the nearest integer, halves away from zero (the same on every port)."""
    if type(x) is int:
        return x
    if x >= 0:
        return int(x + 0.5)
    return -int(0.5 - x)


def clamp(x, lo, hi):
    """x limited to lo..hi."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def is_stuck(values, tolerance=0):
    """True when at least two values were given and all of them lie within `tolerance` of each other.

    Within one burst of readings this spots a frozen ADC or a sensor repeating one cached value."""
    if len(values) < 2:
        return False
    return max(values) - min(values) <= tolerance


def repeat_count(previous, value, count, tolerance=0):
    """How many times in a row a value has repeated: count + 1 when `value` is within `tolerance` of
    `previous`, else 0. Feed it one reading per measurement to detect a value stuck across wakes."""
    if previous is None or value is None:
        return 0
    if abs(value - previous) <= tolerance:
        return count + 1
    return 0
