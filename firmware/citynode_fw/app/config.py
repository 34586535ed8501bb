# The node's configuration: a flat JSON object in /config.json, written by `citynode provision` and changed
# by downlinks. Every key is validated at boot against SCHEMA; a missing, mistyped or out-of-range value is
# replaced by its safe default and reported (config_error flag), so a bad file never bricks a node.
# Secrets (LoRaWAN AppKey, P2P key) live in /secrets.json and never in this file.

from citynode_codec.crc import crc16

# key: (type, default, a, b)
#   'int'/'float': a..b is the valid range      'bool'
#   'enum': a is the tuple of choices           'str': a is the maximum length
#   'hex': a is the number of bytes ('' allowed: not set)
# Keys marked informative below are kept for people and the registry but do not change behaviour and
# are left out of the config checksum.
SCHEMA = {
    'kind': ('enum', 'soil', ('soil', 'fill'), None),
    'board': ('str', 'esp32_devkit', 32, None),
    'dev_eui': ('hex', '', 8, None),
    # schedule
    'sample_interval_s': ('int', 900, 60, 15300),
    'batch_size': ('int', 4, 1, 16),
    'status_interval_s': ('int', 86400, 3600, 604800),
    'wdt_ms': ('int', 60000, 10000, 120000),
    # radio
    'radio': ('enum', 'rak3172_lorawan', ('rak3172_lorawan', 'rak3172_p2p', 'sx126x_p2p'), None),
    'confirmed': ('bool', False, None, None),
    'band': ('int', 4, 0, 12),
    'adr': ('bool', True, None, None),
    'dr': ('int', 3, 0, 7),
    'join_backoff_s': ('int', 60, 10, 3600),
    # Failed joins back off exponentially up to this cap: long enough to spare the battery and the network
    # during an outage, short enough to be back within the hour once the network answers again.
    'join_backoff_cap_s': ('int', 3600, 600, 86400),
    'p2p_freq_hz': ('int', 868100000, 150000000, 960000000),
    'p2p_sf': ('int', 9, 5, 12),
    'p2p_bw_khz': ('enum', 125, (125, 250, 500), None),
    'p2p_txp_dbm': ('int', 14, 2, 22),
    'p2p_rx_ms': ('int', 1000, 0, 10000),
    # thresholds
    'fill_alarm_pct': ('float', 90.0, 0, 125),
    'fill_hysteresis_pct': ('float', 10.0, 0, 50),
    'emptied_drop_pct': ('float', 30.0, 5, 100),
    'overheat_c': ('float', 60.0, -40, 85),
    'soil_dry_pct': ('float', 12.0, 0, 100),
    'soil_wet_pct': ('float', 101.0, 0, 101),  # 101: the soil_wet alarm is off
    'soil_hysteresis_pct': ('float', 3.0, 0, 20),
    'battery_low_v': ('float', 3.3, 2.0, 4.5),
    # fill geometry (distances from the sensor)
    'empty_distance_m': ('float', 1.2, 0.05, 10.0),
    'full_distance_m': ('float', 0.2, 0.0, 10.0),
    # sensors
    'soil_sensor': ('enum', 'capacitive', ('capacitive', 'sdi12'), None),
    'soil_temperature_sensor': ('enum', 'ds18b20', ('ds18b20', 'sdi12', 'none'), None),
    'soil_dry_mv': ('int', 0, 0, 4000),  # 0: factory calibration ('uncalibrated' flag)
    'soil_wet_mv': ('int', 0, 0, 4000),
    'soil_wet_vwc_pct': ('float', 100.0, 1, 100),
    'sdi12_model': ('enum', 'smt100', ('smt100', 'teros12', 'cs650'), None),
    'sdi12_address': ('str', '0', 1, None),
    'fill_sensor': ('enum', 'a02yyuw', ('a02yyuw', 'jsn_sr04t_uart', 'jsn_sr04t_pulse'), None),
    'temperature_sensor': ('enum', 'ds18b20', ('ds18b20', 'none'), None),
    'battery_divider': ('float', 2.0, 1.0, 10.0),
    # informative
    'asset_id': ('str', '', 64, None),
    'latitude': ('float', 0.0, -90, 90),
    'longitude': ('float', 0.0, -180, 180),
}
INFORMATIVE = ('asset_id', 'latitude', 'longitude', 'board')


def defaults():
    out = {}
    for key in SCHEMA:
        out[key] = SCHEMA[key][1]
    return out


def _is_hex(s, nbytes):
    if len(s) != 2 * nbytes:
        return False
    for ch in s:
        if ch not in '0123456789abcdefABCDEF':
            return False
    return True


def check_value(key, value):
    """Return (ok, normalised value or reason)."""
    spec = SCHEMA.get(key)
    if spec is None:
        return False, 'unknown key'
    kind, _, a, b = spec
    if kind == 'bool':
        return (True, value) if isinstance(value, bool) else (False, 'must be true or false')
    if kind in ('int', 'float'):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return False, 'must be a number'
        if kind == 'int':
            if value != int(value):
                return False, 'must be a whole number'
            value = int(value)
        else:
            value = float(value)
        if value < a or value > b:
            return False, 'must be %s..%s' % (a, b)
        return True, value
    if kind == 'enum':
        return (True, value) if value in a and not isinstance(value, bool) else (False, 'must be one of %s' % (a,))
    if kind == 'str':
        if not isinstance(value, str) or len(value) > a:
            return False, 'must be text of at most %d characters' % a
        return True, value
    if not isinstance(value, str) or not (value == '' or _is_hex(value, a)):
        return False, 'must be %d bytes of hex' % a
    return True, value.lower()


def validate(raw):
    """(config, errors): every key valid or its default; errors list 'key: reason' for what was replaced."""
    cfg = defaults()
    errors = []
    if not isinstance(raw, dict):
        return cfg, ['config: not a JSON object']
    for key in raw:
        ok, value = check_value(key, raw[key])
        if ok:
            cfg[key] = value
        elif key in SCHEMA:
            errors.append('%s: %s' % (key, value))
        else:
            errors.append('%s: unknown key' % key)
    # Cross-field rules: an impossible pair falls back to both defaults.
    if cfg['full_distance_m'] >= cfg['empty_distance_m']:
        errors.append('full_distance_m: must be below empty_distance_m')
        cfg['full_distance_m'] = SCHEMA['full_distance_m'][1]
        cfg['empty_distance_m'] = SCHEMA['empty_distance_m'][1]
    if (cfg['soil_dry_mv'] or cfg['soil_wet_mv']) and cfg['soil_dry_mv'] <= cfg['soil_wet_mv']:
        # Capacitive probes read a higher voltage in dry soil than in wet soil.
        errors.append('soil_dry_mv: must be above soil_wet_mv')
        cfg['soil_dry_mv'] = cfg['soil_wet_mv'] = 0
    if cfg['sample_interval_s'] % 60:
        cfg['sample_interval_s'] -= cfg['sample_interval_s'] % 60  # the payload carries whole minutes
    return cfg, errors


def parse(text):
    """Config from the file's text (None: no file). Returns (config, errors)."""
    if text is None:
        return defaults(), ['config: no config file, defaults in use']
    try:
        import json

        raw = json.loads(text)
    except ValueError:
        return defaults(), ['config: not valid JSON']
    return validate(raw)


def dumps(cfg):
    """Canonical JSON text (sorted keys) for the config file."""
    import json

    parts = []
    for key in sorted(cfg):
        parts.append('%s: %s' % (json.dumps(key), json.dumps(cfg[key])))
    return '{' + ', '.join(parts) + '}\n'


def checksum(cfg):
    """CRC-16 of the operational keys: the config_crc the node reports, equal on board and host."""
    buf = bytearray()
    for key in sorted(cfg):
        if key in INFORMATIVE or key not in SCHEMA:
            continue
        v = cfg[key]
        if isinstance(v, bool):
            text = 'true' if v else 'false'
        elif isinstance(v, float):
            # Milli-units: identical on single-precision boards and double-precision hosts.
            text = str(int(v * 1000 + (0.5 if v >= 0 else -0.5)))
        else:
            text = str(v)
        buf.extend(('%s=%s;' % (key, text)).encode())
    return crc16(buf)
