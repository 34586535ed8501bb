# Samples waiting to be sent, and the messages that carry them. Pure.
#
# Every wake appends its sample to state['pending']; once batch_size samples wait, they go out as one
# `batch` uplink (or a single reading when batch_size is 1). If the radio fails, the samples stay and the
# next batch carries them too (up to 16; the oldest are dropped and counted beyond that).

from citynode_codec import encode

from .sample import series_fields

MAX_PENDING = 16
MAX_PAYLOAD = 51  # EU868 DR0..DR2 application payload (RP002): a batch that fits goes out at any data rate
_OPTIONAL = ('soil_tension_kpa', 'soil_ec_us_cm')


def add(state, kind, sample, now, interval):
    entry = [now]
    for name in series_fields(kind):
        entry.append(sample.get(name))
    pending = state['pending']
    pending.append(entry)
    while len(pending) > MAX_PENDING:
        pending.pop(0)
        state['lost_samples'] += 1
    flags = state['pend_flags']
    for f in sample['flags']:
        if f not in flags:
            flags.append(f)
    state['pend_iv'] = interval


def due(state, cfg):
    return len(state['pending']) >= cfg['batch_size']


def reading(kind, sample):
    """The single-sample message: soil_reading or fill_reading."""
    data = {'flags': sample['flags'], 'battery_v': sample.get('battery_v')}
    for name in series_fields(kind):
        if name in sample:
            data[name] = sample[name]
    return ('soil_reading' if kind == 'soil' else 'fill_reading'), data


def _offsets(entries, now, interval):
    """Sample offsets: snapped to the even spacing when every wake was on time (small wake jitter is not
    unevenness), else the true ages in whole minutes (the codec then writes them out)."""
    n = len(entries)
    tolerance = interval // 4 if interval // 4 < 60 else 60
    snapped = []
    for i in range(n):
        expected = (i - n + 1) * interval
        actual = entries[i][0] - now
        if actual - expected > tolerance or expected - actual > tolerance:
            return [-((now - e[0] + 30) // 60) * 60 for e in entries]
        snapped.append(expected)
    return snapped


def batch(kind, entries, now, interval, flags, battery):
    fields = series_fields(kind)
    offsets = _offsets(entries, now, interval)
    samples = []
    for i in range(len(entries)):
        s = {'offset_s': offsets[i]}
        for j in range(len(fields)):
            s[fields[j]] = entries[i][j + 1]
        samples.append(s)
    for j in range(len(fields)):
        # Optional series (tension, EC) only when the probe delivered them at least once.
        if fields[j] in _OPTIONAL and all(e[j + 1] is None for e in entries):
            for s in samples:
                del s[fields[j]]
    return 'batch', {'node_kind': kind, 'sample_interval_s': interval, 'flags': list(flags),
                     'battery_v': battery, 'samples': samples}


def pending_messages(state, kind, now, battery, last_sample):
    """Encoded messages for everything pending: [(fport, payload, count)], each at most MAX_PAYLOAD bytes."""
    entries = state['pending']
    if not entries:
        return []
    if len(entries) == 1 and last_sample is not None and entries[0][0] == now:
        name, data = reading(kind, last_sample)
        fport, payload = encode(name, data)
        return [(fport, payload, 1)]
    return _split(kind, entries, now, state['pend_iv'] or 900, state['pend_flags'], battery)


def _split(kind, entries, now, interval, flags, battery):
    name, data = batch(kind, entries, now, interval, flags, battery)
    fport, payload = encode(name, data)
    if len(payload) <= MAX_PAYLOAD or len(entries) == 1:
        return [(fport, payload, len(entries))]
    half = len(entries) // 2
    return _split(kind, entries[:half], now, interval, flags, battery) + \
        _split(kind, entries[half:], now, interval, flags, battery)


def sent(state, count):
    """The oldest `count` pending samples went out."""
    del state['pending'][:count]
    if not state['pending']:
        state['pend_flags'] = []
