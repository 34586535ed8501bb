# Turning driver results into one sample: the spec's field names, flags, and the values derived on the node
# (fill level from distance and container geometry, low battery). Pure.

SOIL_FIELDS = ('vwc_pct', 'soil_temperature_c', 'soil_tension_kpa', 'soil_ec_us_cm')
FILL_FIELDS = ('fill_pct', 'distance_m', 'temperature_c')
_OPTIONAL = ('soil_tension_kpa', 'soil_ec_us_cm')
_MAX_FILL_PCT = 125


def fill_from_distance(distance_m, empty_m, full_m):
    """(fill_pct rounded to 1 %, out_of_range): 0 % at the empty distance, 100 % at the full distance.

    A distance beyond the empty distance reads 0 % and is out of range; an overfilled container (surface
    above the full mark) reads above 100 %, up to 125 %, beyond that it is out of range too.
    """
    if distance_m is None:
        return None, False
    span = empty_m - full_m
    if span <= 0:
        return None, True
    pct = (empty_m - distance_m) * 100.0 / span
    if pct < -2.0:  # 2 %: the echo's own jitter on an empty container is not an error
        return 0, True
    if pct > _MAX_FILL_PCT:
        return _MAX_FILL_PCT, True
    return max(0, int(pct + 0.5)), False


def build(kind, readings, cfg, config_error=False):
    """One sample from driver results {role: measure() dict}; failed values are None.

    Flags come from the main sensor (soil probe or distance sensor) and from what the node derives; a
    failed helper sensor (container temperature, battery ADC) shows as a null value, not as sensor_fault.
    """
    main = readings.get(kind) or {}
    flags = list(main.get('flags') or ())
    battery = (readings.get('battery') or {}).get('battery_v')
    sample = {'battery_v': battery}
    if battery is not None and battery <= cfg['battery_low_v']:
        flags.append('low_battery')
    if kind == 'fill':
        distance = main.get('distance_m')
        sample['temperature_c'] = _round((readings.get('temperature') or {}).get('temperature_c'), 0)
        fill, out = fill_from_distance(distance, cfg['empty_distance_m'], cfg['full_distance_m'])
        sample['fill_pct'] = fill
        sample['distance_m'] = None if distance is None else _round(distance, 2)
        if out:
            flags.append('out_of_range')
    else:
        sample['vwc_pct'] = _round(main.get('vwc_pct'), 1)
        t = main.get('soil_temperature_c')
        if t is None:
            t = (readings.get('soil_temperature') or {}).get('soil_temperature_c')
        sample['soil_temperature_c'] = _round(t, 1)
        for key in _OPTIONAL:
            if main.get(key) is not None:
                sample[key] = main[key]
    if config_error:
        flags.append('config_error')
    if _clamp_to_spec(sample):
        flags.append('out_of_range')
    sample['flags'] = _payload_flags(kind, flags)
    return sample


def _payload_flags(kind, flags):
    """The flags the payload can carry for this kind, in the spec's order, each once."""
    allowed = ('sensor_fault', 'out_of_range', 'uncalibrated' if kind == 'soil' else 'tilt', 'low_battery',
               'config_error')
    return [f for f in allowed if f in flags]


# Spec ranges (codecs/spec/citynode.json): a value outside them is clamped and flagged, never sent out of
# range (the codec would refuse the whole message).
_RANGES = {
    'vwc_pct': (0, 100), 'soil_temperature_c': (-40, 60), 'soil_tension_kpa': (0, 2500),
    'soil_ec_us_cm': (0, 20000), 'fill_pct': (0, 125), 'distance_m': (0, 10), 'temperature_c': (-40, 85),
    'battery_v': (2.0, 4.5),
}


def _clamp_to_spec(sample):
    """Clamp values into the payload's ranges; True when a measured value (not the battery) was clamped."""
    clamped = False
    for key in sample:
        r = _RANGES.get(key)
        v = sample[key]
        if r is None or v is None:
            continue
        if v < r[0] or v > r[1]:
            sample[key] = r[0] if v < r[0] else r[1]
            clamped = clamped or key != 'battery_v'  # a flat battery is low_battery, not out_of_range
    return clamped


def _round(v, digits):
    if v is None:
        return None
    if digits == 0:
        return int(v + 0.5) if v >= 0 else -int(-v + 0.5)
    scale = 10 ** digits
    return (int(v * scale + 0.5) if v >= 0 else -int(-v * scale + 0.5)) / scale


def series_fields(kind):
    return SOIL_FIELDS if kind == 'soil' else FILL_FIELDS
