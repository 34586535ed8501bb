# Alarm decisions: which alarm events a new sample raises or clears. Pure: values in, events out.
#
# Thresholds have hysteresis, so a value wobbling around a threshold raises one alarm and clears it once,
# instead of one uplink per wake. 'emptied' is an instant event (a sudden large drop of the fill level),
# it has no cleared state.

FILL_EVENTS = ('fill_full', 'battery_low', 'sensor_fault', 'tilt', 'overheat')
SOIL_EVENTS = ('soil_dry', 'soil_wet', 'battery_low', 'sensor_fault')

_BATTERY_HYSTERESIS_V = 0.1
_OVERHEAT_HYSTERESIS_C = 5.0
# A drop only counts as an emptying when the container was at least this full before.
_EMPTIED_MIN_BEFORE_PCT = 20.0


def _level(active, name, raise_when, clear_when):
    """Next state of a hysteresis alarm: True raised, False clear, None unknown value (keep as is)."""
    if raise_when is None:
        return name in active
    if name in active:
        return not clear_when
    return raise_when


def evaluate(kind, sample, cfg, active, last_fill):
    """Return (events, active): events is a list of (event, cleared) to send, active the raised alarms."""
    flags = sample.get('flags', ())
    battery = sample.get('battery_v')
    want = {}
    if battery is not None:
        low = cfg['battery_low_v']
        want['battery_low'] = _level(active, 'battery_low', battery <= low, battery >= low + _BATTERY_HYSTERESIS_V)
    want['sensor_fault'] = 'sensor_fault' in flags
    events = []
    if kind == 'fill':
        fill = sample.get('fill_pct')
        if fill is not None:
            full = cfg['fill_alarm_pct']
            want['fill_full'] = _level(active, 'fill_full', fill >= full, fill < full - cfg['fill_hysteresis_pct'])
            if last_fill is not None and last_fill >= _EMPTIED_MIN_BEFORE_PCT \
                    and last_fill - fill >= cfg['emptied_drop_pct']:
                events.append(('emptied', False))
        want['tilt'] = 'tilt' in flags
        temp = sample.get('temperature_c')
        if temp is not None:
            hot = cfg['overheat_c']
            want['overheat'] = _level(active, 'overheat', temp >= hot, temp < hot - _OVERHEAT_HYSTERESIS_C)
        names = FILL_EVENTS
    else:
        vwc = sample.get('vwc_pct')
        if vwc is not None:
            dry = cfg['soil_dry_pct']
            hyst = cfg['soil_hysteresis_pct']
            want['soil_dry'] = _level(active, 'soil_dry', vwc <= dry, vwc > dry + hyst)
            wet = cfg['soil_wet_pct']
            if wet <= 100:
                want['soil_wet'] = _level(active, 'soil_wet', vwc >= wet, vwc < wet - hyst)
            else:
                want['soil_wet'] = False
        names = SOIL_EVENTS
    now_active = []
    for name in names:
        was = name in active
        on = want.get(name, was)
        if on:
            now_active.append(name)
        if on != was:
            events.append((name, not on))
    return events, now_active
