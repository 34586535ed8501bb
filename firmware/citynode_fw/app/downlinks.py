# Applying downlinks: decode with the shared codec, validate against the config schema and the node's kind,
# and return the new config and the acknowledgement (seq, command, result) for the next uplink. Pure: the
# cycle writes the config file (atomically) and sends the ack.

from citynode_codec import decode_downlink

from . import config

_COMMANDS = ('none', 'set_interval', 'set_thresholds', 'set_batch_size', 'set_geometry', 'set_calibration',
             'request_status', 'reboot')
_FIELDS = {
    'set_interval': ('sample_interval_s',),
    'set_thresholds': ('fill_alarm_pct', 'soil_dry_pct', 'battery_low_v'),
    'set_batch_size': ('batch_size',),
    'set_geometry': ('empty_distance_m', 'full_distance_m'),
    'set_calibration': ('soil_dry_mv', 'soil_wet_mv', 'soil_wet_vwc_pct'),
}
_ONLY_FOR = {'set_geometry': 'fill', 'set_calibration': 'soil'}


def apply(cfg, fport, payload):
    """(new_cfg or None, (seq, command, result), action): action is None, 'status' or 'reboot'."""
    out = decode_downlink(fport, payload)
    if 'errors' in out:
        seq = payload[0] & 0x0F if payload else 0
        known = out['errors'][0].startswith('unknown fPort')
        return None, (seq, 'none', 'unsupported' if known else 'invalid'), None
    data = out['data']
    name = data['message']
    seq = data.get('seq', 0)
    if name == 'request_status':
        return None, (seq, name, 'applied'), 'status'
    if name == 'reboot':
        return None, (seq, name, 'applied'), 'reboot'
    only = _ONLY_FOR.get(name)
    if only is not None and cfg['kind'] != only:
        return None, (seq, name, 'not_applicable'), None
    new = dict(cfg)
    for key in _FIELDS[name]:
        value = data.get(key)
        if value is None:
            continue  # null: leave unchanged
        ok, value = config.check_value(key, value)
        if not ok:
            return None, (seq, name, 'invalid'), None
        new[key] = value
    checked, errors = config.validate(new)
    if errors or checked != new:
        return None, (seq, name, 'invalid'), None
    return new, (seq, name, 'applied'), None


def command_code(name):
    for i in range(len(_COMMANDS)):
        if _COMMANDS[i] == name:
            return i
    return 0
