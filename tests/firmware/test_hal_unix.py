# The Unix-port hardware layer: a simulated world behind simulated buses, driven by real drivers.
import json

from citynode_fw.app import cycle
from citynode_fw.hal import sim, unix
from fakes import FakeClock
from modem_fakes import FakeRAK3172

from citynode_codec import decode_uplink


def _world(scenario, hours=0):
    clock = FakeClock(epoch=1_760_000_000)
    w = sim.World(scenario, clock)
    clock.advance_ms(hours * 3600 * 1000)
    return w


def test_soil_dries_at_the_scenario_rate_and_jumps_back_after_watering():
    s = {'kind': 'soil', 'vwc_start': 30, 'dry_per_day': 4, 'irrigations': [{'at_h': 48, 'to': 35}]}
    assert abs(_world(s, 0).vwc() - 30) < 1e-9
    assert abs(_world(s, 24).vwc() - 26) < 1e-9
    assert abs(_world(s, 47).vwc() - (30 - 4 * 47 / 24)) < 1e-9
    assert abs(_world(s, 48).vwc() - 35) < 1e-9


def test_a_container_fills_and_is_emptied_on_collection():
    s = {'kind': 'fill', 'fill_start': 10, 'fill_per_day': 24, 'collections_h': [30]}
    assert abs(_world(s, 20).fill_pct() - 30) < 1e-9
    assert abs(_world(s, 31).fill_pct() - 1) < 1e-9


def test_faults_apply_only_inside_their_window():
    s = {'kind': 'fill', 'faults': [{'sensor': 'fill', 'from_h': 2, 'to_h': 3, 'mode': 'absent'}]}
    assert _world(s, 1).faulty('fill', 1.0) == 1.0
    assert _world(s, 2).faulty('fill', 1.0) is None


def test_the_probe_voltage_follows_the_scenario_calibration():
    w = _world({'kind': 'soil', 'vwc_start': 45, 'probe': {'dry_mv': 2400, 'wet_mv': 1200, 'wet_vwc': 45}})
    assert abs(w.probe_mv() - 1200) <= 3


def test_a_virtual_clock_moves_only_when_someone_sleeps():
    c = unix.VirtualClock(1_760_000_000_000)
    t = c.ticks_ms()
    c.sleep_ms(1500)
    c.sleep_us(600)
    c.sleep_us(600)
    assert c.ticks_diff(c.ticks_ms(), t) == 1501 and c.time() == 1_760_000_001


class _RTC:
    blob = None
    cause = 'power_on'


def test_an_emulated_fill_node_reports_the_simulated_container():
    clock = unix.VirtualClock(1_760_000_000_000)
    rak = FakeRAK3172(clock, values={'NJS': '1'})
    files = {}
    env = {'scenario': {'kind': 'fill', 'fill_start': 40, 'empty_m': 1.2, 'full_m': 0.2, 'temp_mean': 12,
                        'temp_swing': 0}}
    hw = unix.UnixHW(env=env, clock=clock, modem=rak.uart, rtc=_RTC(), log=lambda t: None)
    files['config.json'] = json.dumps({'kind': 'fill', 'batch_size': 1})
    hw.read_file = files.get
    hw.write_file = files.__setitem__
    cycle.run(hw)
    sent = [decode_uplink(p, b)['data'] for p, b in rak.sent]
    reading = [d for d in sent if d['message'] == 'fill_reading'][0]
    assert reading['fill_pct'] == 40 and reading['distance_m'] == 0.8 and reading['temperature_c'] == 12
