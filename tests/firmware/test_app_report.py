# Pending samples become batches: evenly spaced when the wakes were on time, with ages when not, and
# always small enough for the slowest data rate.
from citynode_fw.app import report, state

from citynode_codec import decode_uplink

T0 = 1_760_000_000


def _pending(kind, values, times):
    st = state.fresh()
    for v, t in zip(values, times):
        s = {'flags': [], 'battery_v': 3.6}
        if kind == 'soil':
            s.update(vwc_pct=v, soil_temperature_c=11.0)
        else:
            s.update(fill_pct=v, distance_m=1.0, temperature_c=10)
        report.add(st, kind, s, t, 900)
    return st


def _decoded(messages):
    return [decode_uplink(p, payload)['data'] for p, payload, _ in messages]


def test_small_wake_jitter_still_gives_an_evenly_spaced_batch():
    st = _pending('soil', [25.0, 24.8, 24.5, 24.1], [T0, T0 + 903, T0 + 1797, T0 + 2702])
    (batch,) = _decoded(report.pending_messages(st, 'soil', T0 + 2702, 3.6, None))
    assert [s['offset_s'] for s in batch['samples']] == [-2700, -1800, -900, 0]
    assert [s['vwc_pct'] for s in batch['samples']] == [25.0, 24.8, 24.5, 24.1]


def test_unevenly_spaced_samples_keep_their_true_ages():
    st = _pending('fill', [10, 12, 15], [T0, T0 + 900, T0 + 1500])
    (batch,) = _decoded(report.pending_messages(st, 'fill', T0 + 1500, 3.6, None))
    assert [s['offset_s'] for s in batch['samples']] == [-1500, -600, 0]


def test_a_batch_that_would_not_fit_the_slowest_data_rate_is_split_in_order():
    values = [(i * 37) % 100 for i in range(16)]  # jumpy values compress badly
    st = state.fresh()
    for i in range(16):
        s = {'flags': [], 'battery_v': 3.6, 'fill_pct': values[i], 'distance_m': (i * 531 % 900) / 100,
             'temperature_c': (i * 29) % 60 - 20}
        report.add(st, 'fill', s, T0 + 900 * i, 900)
    messages = report.pending_messages(st, 'fill', T0 + 900 * 15, 3.6, None)
    assert len(messages) > 1 and all(len(p) <= report.MAX_PAYLOAD for _, p, _ in messages)
    samples = [s for b in _decoded(messages) for s in b['samples']]
    assert [s['fill_pct'] for s in samples] == values and samples[-1]['offset_s'] == 0


def test_more_than_sixteen_waiting_samples_drop_the_oldest_and_count_it():
    st = _pending('soil', [20.0] * 18, [T0 + 900 * i for i in range(18)])
    assert len(st['pending']) == 16 and st['lost_samples'] == 2


def test_eight_soil_samples_fit_in_twenty_bytes():
    st = _pending('soil', [24.8, 24.7, 24.5, 24.4, 24.3, 24.1, 24.0, 23.8], [T0 + 900 * i for i in range(8)])
    ((_, payload, count),) = report.pending_messages(st, 'soil', T0 + 900 * 7, 3.6, None)
    assert count == 8 and len(payload) <= 20
