# The whole wake cycle with a fake hardware layer: real drivers, real radio backend, the RUI3 modem model,
# the codec. Each test is a short story of wakes.
import json

from app_fakes import FakeHW

from citynode_codec import encode


def _messages(uplinks, name):
    return [d for _, d in uplinks if d.get('message') == name]


def test_first_boot_sends_a_status_and_a_batch_once_four_samples_wait():
    hw = FakeHW('soil')
    hw.wake()
    first = hw.uplinks()
    assert [d['message'] for _, d in first] == ['status']
    assert first[0][1]['reset_cause'] == 'power_on' and first[0][1]['node_kind'] == 'soil'
    assert 'state_lost' not in first[0][1]['flags']  # empty sleep memory is normal after power-on
    for _ in range(3):
        hw.wake()
    sent = hw.uplinks()
    batches = _messages(sent, 'batch')
    assert len(batches) == 1 and batches[0]['sample_count'] == 4
    assert [s['offset_s'] for s in batches[0]['samples']] == [-2700, -1800, -900, 0]
    assert batches[0]['samples'][0]['soil_temperature_c'] == 12.5
    assert batches[0]['battery_v'] == 3.6


def test_wakes_stay_on_a_fixed_grid():
    hw = FakeHW('soil')
    start = hw.clock.time()
    for _ in range(5):
        hw.wake()
    st = json.loads(hw.rtc[7:])
    assert st['next_t'] == start + 5 * 900


def test_a_single_sample_batch_goes_out_as_a_reading_before_the_status():
    hw = FakeHW('fill', config={'batch_size': 1, 'empty_distance_m': 1.2, 'full_distance_m': 0.2})
    hw.wake()
    sent = hw.uplinks()
    assert [d['message'] for _, d in sent][0] == 'fill_reading'
    readings = _messages(sent, 'fill_reading')
    assert readings == [{'message': 'fill_reading', 'flags': [], 'fill_pct': 40, 'distance_m': 0.8,
                         'temperature_c': 13, 'battery_v': 3.6}]


def test_a_full_container_raises_an_alarm_at_once_and_clears_it_after_emptying():
    hw = FakeHW('fill', config={'fill_alarm_pct': 85, 'empty_distance_m': 1.2, 'full_distance_m': 0.2})
    hw.wake()
    hw.uplinks()
    hw.a02.mm = 300  # 90 % full
    hw.wake()
    alarms = _messages(hw.uplinks(), 'alarm')
    assert [(a['event'], a['cleared']) for a in alarms] == [('fill_full', False)]
    assert alarms[0]['fill_pct'] == 90
    hw.wake()
    assert _messages(hw.uplinks(), 'alarm') == []  # no repeat while it stays full
    hw.a02.mm = 1150  # emptied
    hw.wake()
    first = [(a['event'], a['cleared']) for a in _messages(hw.uplinks(), 'alarm')]
    hw.wake()  # the 1 % duty cycle lets one uplink out per wake: the second alarm waited, encoded
    later = [(a['event'], a['cleared']) for a in _messages(hw.uplinks(), 'alarm')]
    assert first == [('emptied', False)] and later == [('fill_full', True)]


def test_dry_soil_raises_soil_dry_with_the_reading():
    hw = FakeHW('soil', config={'soil_dry_pct': 15, 'soil_dry_mv': 2400, 'soil_wet_mv': 1200,
                                'soil_wet_vwc_pct': 45})
    hw.wake()
    hw.uplinks()
    hw.soil.mv = 2300  # 45 * 100 / 1200 = 3.75 % VWC
    hw.wake()
    alarms = _messages(hw.uplinks(), 'alarm')
    assert len(alarms) == 1 and alarms[0]['event'] == 'soil_dry' and alarms[0]['vwc_pct'] == 3.8


def test_a_failed_probe_is_null_and_flagged_never_a_crash():
    hw = FakeHW('soil', config={'batch_size': 1})
    hw.soil.mv = None
    hw.wake()
    sent = hw.uplinks()
    assert [(a['event'], a['cleared']) for a in _messages(sent, 'alarm')] == [('sensor_fault', False)]
    assert _messages(sent, 'alarm')[0]['vwc_pct'] is None
    hw.wake()  # the boot status, which already waited a wake, goes next
    assert [d['message'] for _, d in hw.uplinks()] == ['status']
    hw.wake()  # then the samples that waited go out together as a batch
    batch = _messages(hw.uplinks(), 'batch')[0]
    assert [s['vwc_pct'] for s in batch['samples']] == [None, None, None] and 'sensor_fault' in batch['flags']


def test_set_interval_downlink_is_applied_persisted_and_acknowledged_next_wake():
    hw = FakeHW('soil', config={'batch_size': 1})
    fport, payload = encode('set_interval', {'seq': 9, 'sample_interval_s': 600})
    hw.downlink(fport, payload)
    ms = hw.wake()
    assert json.loads(hw.files['config.json'])['sample_interval_s'] == 600
    assert 590 * 1000 <= ms <= 600 * 1000  # the new interval, less the time this wake took
    hw.uplinks()
    hw.wake()
    acks = _messages(hw.uplinks(), 'downlink_ack')
    assert acks and acks[0]['seq'] == 9 and acks[0]['command'] == 'set_interval' and acks[0]['result'] == 'applied'


def test_a_geometry_downlink_to_a_soil_node_is_refused_as_not_applicable():
    hw = FakeHW('soil')
    hw.downlink(*encode('set_geometry', {'seq': 2, 'empty_distance_m': 1.3, 'full_distance_m': 0.2}))
    before = hw.files['config.json']
    hw.wake()
    hw.wake()
    acks = _messages(hw.uplinks(), 'downlink_ack')
    assert acks[0]['result'] == 'not_applicable' and hw.files['config.json'] == before


def test_a_config_write_that_fails_keeps_the_old_config_and_says_storage_error():
    hw = FakeHW('soil')
    hw.downlink(*encode('set_batch_size', {'seq': 3, 'batch_size': 8}))
    hw.fail_writes = True
    hw.wake()
    hw.fail_writes = False
    hw.wake()
    acks = _messages(hw.uplinks(), 'downlink_ack')
    assert acks[0]['result'] == 'storage_error'
    assert json.loads(hw.files['config.json'])['batch_size'] == 4


def test_corrupt_sleep_memory_restarts_cleanly_and_reports_state_lost():
    hw = FakeHW('soil')
    hw.wake()
    hw.uplinks()
    hw.rtc = hw.rtc[:-3] + b'xyz'
    hw.wake()
    status = _messages(hw.uplinks(), 'status')
    assert status and 'state_lost' in status[0]['flags'] and status[0]['reset_cause'] == 'unknown'


def test_a_broken_config_file_falls_back_to_defaults_and_flags_config_error():
    hw = FakeHW('soil')
    hw.files['config.json'] = '{"kind": "soil", "sample_interval_s": "often", "batch_size": 1'
    ms = hw.wake()
    sent = hw.uplinks()
    assert 'config_error' in _messages(sent, 'status')[0]['flags']
    assert 890 * 1000 <= ms <= 900 * 1000  # the default interval


def test_samples_survive_a_radio_that_cannot_send_and_go_out_later_with_their_ages():
    hw = FakeHW('soil', config={'batch_size': 2})
    hw.wake()
    hw.uplinks()
    hw.rak.values['NJS'] = '0'
    hw.rak.join_result = 'JOIN_FAILED_RX_TIMEOUT'
    for _ in range(3):
        hw.wake()
    assert hw.uplinks() == []
    hw.rak.join_result = 'JOINED'
    hw.clock.advance_ms(3600 * 1000)  # join backoff
    hw.wake()
    batches = _messages(hw.uplinks(), 'batch')
    assert sum(b['sample_count'] for b in batches) == 5
    offsets = [s['offset_s'] for b in batches for s in b['samples']]
    assert offsets[-1] == 0 and offsets == sorted(offsets)


def test_a_silent_modem_costs_a_wake_not_the_node():
    hw = FakeHW('fill', config={'batch_size': 1})
    hw.rak.silent = True
    ms = hw.wake()
    assert ms > 0 and hw.rtc is not None
    st = json.loads(hw.rtc[7:])
    assert st['radio_errors'] >= 1 and len(st['pending']) == 1


def test_reboot_downlink_acknowledges_first_then_reboots():
    hw = FakeHW('soil', config={'batch_size': 1})
    hw.downlink(*encode('reboot', {'seq': 5}))
    hw.wake()
    assert hw.reboots == 0
    hw.wake()
    assert _messages(hw.uplinks(), 'downlink_ack')[0]['command'] == 'reboot'
    assert hw.reboots == 1


def test_request_status_brings_a_status_that_does_not_starve_behind_readings():
    hw = FakeHW('soil', config={'batch_size': 1})
    for _ in range(3):
        hw.wake()
    hw.uplinks()
    hw.downlink(*encode('request_status', {'seq': 1}))
    hw.wake()
    hw.uplinks()
    sent = []
    for _ in range(3):
        hw.wake()
        sent += hw.uplinks()
    assert [d['message'] for _, d in sent].count('status') == 1


def test_the_watchdog_is_armed_and_fed_every_wake():
    hw = FakeHW('soil', config={'wdt_ms': 30000})
    hw.wake()
    assert hw.wdt.ms == 30000 and hw.wdt.feeds >= 2


def test_an_unscheduled_wake_keeps_the_next_slot_instead_of_skipping_it():
    hw = FakeHW('soil')
    hw.wake()
    slot = json.loads(hw.rtc[7:])['next_t']
    hw.clock.advance_ms(-600 * 1000)  # woken 10 minutes early, e.g. by a reset
    hw.cause = 'hard_reset'
    ms = hw.wake()
    assert json.loads(hw.rtc[7:])['next_t'] == slot and ms <= 600 * 1000


def test_a_batch_in_flight_when_a_wake_died_is_not_sent_again():
    hw = FakeHW('soil', config={'batch_size': 2})
    hw.wake()
    hw.uplinks()

    class Crash(Exception):
        pass

    def dying_send(*args):
        raise Crash()

    hw.wake()  # the second sample makes a batch due
    sent = [d for _, d in hw.uplinks() if d['message'] == 'batch']
    assert len(sent) == 1  # control: a normal wake sends its batch
    hw.wake()
    # The next batch: the wake dies after the state was saved with the batch in flight.
    import citynode_fw.app.cycle as cycle

    real = cycle.radios.make

    def make(*a, **kw):
        radio = real(*a, **kw)
        radio.send = dying_send
        return radio

    cycle.radios.make = make
    try:
        saved_rtc = hw.rtc
        try:
            cycle.run(hw)
        except Crash:
            pass
        assert hw.rtc != saved_rtc and json.loads(hw.rtc[7:])['inflight'] == 2
    finally:
        cycle.radios.make = real
    hw.clock.advance_ms(900 * 1000)
    hw.wake()
    st = json.loads(hw.rtc[7:])
    assert len(st['pending']) == 1 and st['inflight'] == 0  # only the new sample waits: the pair is not repeated
    assert any('in flight' in line for line in hw.logs)
    hw.wake()
    batches = [d for _, d in hw.uplinks() if d['message'] == 'batch']
    assert [b['sample_count'] for b in batches] == [2]


def test_state_lost_is_still_reported_when_the_duty_cycle_delays_the_status():
    hw = FakeHW('soil', config={'batch_size': 1})
    hw.wake()
    hw.wake()
    hw.uplinks()
    hw.rtc = hw.rtc[:-3] + b'xyz'
    hw.wake()  # the reading goes first, the status waits
    first = hw.uplinks()
    hw.wake()
    status = _messages(first + hw.uplinks(), 'status')
    assert status and 'state_lost' in status[0]['flags']
