# LoRa P2P through a RAK3172 (firmware/citynode_fw/radio/rak3172_p2p.py): citynode frames, counters, the
# receive window and its replay/forgery checks, against a recorded transcript and the FakeRAK3172 model.
from binascii import hexlify, unhexlify

from citynode_fw.radio import dutycycle
from citynode_fw.radio.rak3172_p2p import RAK3172P2P, parse_rxp2p
from fakes import FakeClock, FakeUART
from modem_fakes import FakeRAK3172, replay

from citynode_codec import p2p

EUI = unhexlify('70B3D57ED0000001')
KEY = unhexlify('2B7E151628AED2A6ABF7158809CF4F3C')
P2P_VALUES = {'NWM': '0', 'P2P': '868100000:7:125:0:8:14'}


def _counter(start):
    box = [start]

    def next_fcnt():
        box[0] += 1
        return box[0] - 1

    return next_fcnt, box


def _settings(rx_ms=1000, **more):
    s = {'dev_eui': '70B3D57ED0000001', 'p2p_key': '2B7E151628AED2A6ABF7158809CF4F3C', 'p2p_freq_hz': 868100000,
         'p2p_sf': 7, 'p2p_bw_khz': 125, 'p2p_cr': 5, 'p2p_preamble': 8, 'p2p_txp_dbm': 14, 'p2p_rx_ms': rx_ms}
    s.update(more)
    return s


def _downlink(fcnt, fport=5, payload=b'\x10\x20', key=KEY, eui=EUI, marker=p2p.DOWNLINK):
    return p2p.build(marker, eui, fcnt, fport, payload, key)


def _rx_event(frame, rssi=-60, snr=9):
    return 'RXP2P:{}:{}:{}'.format(rssi, snr, hexlify(frame).decode().upper())


def _radio(state=None, rx=(), rx_ms=1000, values=P2P_VALUES, start=42, **more):
    clock = FakeClock()
    rak = FakeRAK3172(clock, values)
    rak.p2p_rx = list(rx)
    next_fcnt, box = _counter(start)
    radio = RAK3172P2P(rak.uart, clock, _settings(rx_ms, **more), {} if state is None else state, next_fcnt)
    return radio, rak, clock, box


def test_p2p_send_and_receive_as_recorded():
    clock = FakeClock()
    t = replay(clock, 'p2p_send_receive')
    state = {}
    next_fcnt, _ = _counter(42)
    radio = RAK3172P2P(t.uart, clock, _settings(1000), state, next_fcnt)
    assert radio.join() is True
    res = radio.send(2, b'\x01\x02\x03\x04\x05')
    radio.sleep()
    assert t.ok(), t.diff()
    assert res == {'ok': True, 'error': None, 'downlinks': [(5, b'\x10\x20')],
                   'airtime_ms': dutycycle.time_on_air_ms(7, 125000, 23), 'rssi': -60, 'snr': 9}
    assert state['p2p_dl_fcnt'] == 7
    assert state['p2p_cfg'] == '868100000:7:125:0:8:14'


def test_uplink_frame_verifies_with_the_codec_and_carries_the_next_counter():
    radio, rak, clock, _ = _radio(rx_ms=0)
    res = radio.send(9, b'hello')
    assert res['ok'] is True
    frame = unhexlify(rak.sent[0])
    marker, eui, fcnt, fport, payload, _ = p2p.verify(frame, KEY)
    assert (marker, bytes(eui), fcnt, fport, bytes(payload)) == (p2p.UPLINK, EUI, 42, 9, b'hello')


def test_each_send_takes_a_fresh_counter_from_next_fcnt():
    radio, rak, clock, box = _radio(rx_ms=0)
    assert radio.send(2, b'\x01')['ok']
    clock.advance_ms(60000)
    assert radio.send(2, b'\x02')['ok']
    assert [p2p.parse(unhexlify(h))[2] for h in rak.sent] == [42, 43]
    assert box[0] == 44


def test_counter_source_can_come_from_settings():
    clock = FakeClock()
    rak = FakeRAK3172(clock, P2P_VALUES)
    next_fcnt, _ = _counter(1000)
    radio = RAK3172P2P(rak.uart, clock, _settings(0, next_fcnt=next_fcnt), {})
    assert radio.send(2, b'\x01')['ok']
    assert p2p.parse(unhexlify(rak.sent[0]))[2] == 1000


def test_mode_and_radio_parameters_are_not_rewritten_when_the_modem_has_them():
    # RUI3 may print the bandwidth as its index (0 = 125 kHz): that is the same setting
    radio, rak, _, _ = _radio(values={'NWM': '0', 'P2P': '868100000:7:0:0:8:14'})
    assert radio.join() is True
    assert rak.writes == []


def test_differing_radio_parameters_are_written_once():
    radio, rak, _, _ = _radio(values={'NWM': '0', 'P2P': '868300000:9:125:0:8:14'})
    assert radio.join() is True
    assert rak.writes == ['AT+P2P=868100000:7:125:0:8:14']


def test_a_configured_modem_is_not_asked_again_on_later_wakes():
    state = {}
    radio, rak, _, _ = _radio(state, rx_ms=0)
    assert radio.join()
    radio2, rak2, _, _ = _radio(state, rx_ms=0)
    assert radio2.join()
    assert radio2.send(2, b'\x01')['ok']
    assert [c.split('=')[0] for c in rak2.commands] == ['AT', 'AT+PSEND']


def test_a_replayed_downlink_is_ignored():
    state = {'p2p_dl_fcnt': 7}
    radio, _, _, _ = _radio(state, rx=[_rx_event(_downlink(7))])
    res = radio.send(2, b'\x01')
    assert res['ok'] is True
    assert res['downlinks'] == []
    assert radio.link.rejected == 1
    assert state['p2p_dl_fcnt'] == 7


def test_an_older_downlink_is_ignored_and_a_newer_one_accepted():
    state = {'p2p_dl_fcnt': 7}
    radio, _, clock, _ = _radio(state, rx=[_rx_event(_downlink(3)), _rx_event(_downlink(8, payload=b'\x99'))])
    assert radio.send(2, b'\x01')['downlinks'] == []
    clock.advance_ms(60000)
    assert radio.send(2, b'\x01')['downlinks'] == [(5, b'\x99')]
    assert state['p2p_dl_fcnt'] == 8


def test_a_forged_downlink_is_ignored():
    forged = bytearray(_downlink(8))
    forged[-1] ^= 0x01  # MIC no longer matches
    other_key = _downlink(9, key=bytes(16))  # signed with a key that is not this device's
    tampered = bytearray(_downlink(10))
    tampered[14] ^= 0xFF  # payload changed after signing
    for frame in (bytes(forged), other_key, bytes(tampered)):
        state = {'p2p_dl_fcnt': 7}
        radio, _, _, _ = _radio(state, rx=[_rx_event(frame)])
        assert radio.send(2, b'\x01')['downlinks'] == []
        assert state['p2p_dl_fcnt'] == 7


def test_a_downlink_for_another_device_is_ignored():
    state = {}
    radio, _, _, _ = _radio(state, rx=[_rx_event(_downlink(8, eui=unhexlify('70B3D57ED0000002')))])
    assert radio.send(2, b'\x01')['downlinks'] == []
    assert 'p2p_dl_fcnt' not in state


def test_an_uplink_frame_heard_in_the_window_is_not_a_downlink():
    radio, _, _, _ = _radio(rx=[_rx_event(_downlink(8, marker=p2p.UPLINK))])
    assert radio.send(2, b'\x01')['downlinks'] == []


def test_a_receive_timeout_closes_the_window_without_downlinks():
    radio, rak, clock, _ = _radio(rx_ms=500)
    res = radio.send(2, b'\x01')
    assert res['ok'] is True
    assert res['downlinks'] == []
    assert 'AT+PRECV=500' in rak.commands


def test_rxp2p_events_are_parsed_and_malformed_ones_refused():
    assert parse_rxp2p('RXP2P:-60:9:C2ab') == (b'\xc2\xab', -60, 9)
    for bad in ('RXP2P:-60:9:C2a', 'RXP2P:-60:x:C2', 'RXP2P RECEIVE TIMEOUT', 'RXP2P:-60:9'):
        assert parse_rxp2p(bad) is None, bad


def test_duty_cycle_refuses_a_too_early_send_without_spending_a_counter():
    radio, rak, clock, box = _radio(rx_ms=0)
    assert radio.send(2, b'\x01')['ok']
    res = radio.send(2, b'\x01')
    assert res['error'] == 'duty_cycle'
    assert box[0] == 43
    assert len(rak.sent) == 1


def test_a_payload_too_long_for_one_frame_is_refused_without_spending_a_counter():
    radio, rak, _, box = _radio(rx_ms=0)
    assert radio.send(2, bytes(223))['error'] == 'payload_too_long'
    assert radio.send(0, b'\x01')['error'] == 'bad_port'
    assert radio.send(2, [1, 2])['error'] == 'bad_payload'
    assert box[0] == 42
    assert rak.commands == []


def test_missing_key_or_counter_source_is_reported_not_raised():
    clock = FakeClock()
    rak = FakeRAK3172(clock, P2P_VALUES)
    radio = RAK3172P2P(rak.uart, clock, _settings(0, p2p_key='00'), {}, lambda: 1)
    assert radio.join() is False
    assert radio.send(2, b'\x01')['error'] == 'bad_keys'
    radio = RAK3172P2P(rak.uart, clock, _settings(0), {})
    assert radio.send(2, b'\x01')['error'] == 'no_fcnt'


def test_a_counter_source_returning_nonsense_is_reported():
    clock = FakeClock()
    rak = FakeRAK3172(clock, P2P_VALUES)
    radio = RAK3172P2P(rak.uart, clock, _settings(0), {}, lambda: True)
    assert radio.send(2, b'\x01')['error'] == 'fcnt'


def test_busy_psend_is_retried_a_bounded_number_of_times():
    radio, rak, _, _ = _radio(rx_ms=0)
    rak.script('AT+PSEND=*', ['AT_BUSY_ERROR'], times=None)
    res = radio.send(2, b'\x01')
    assert res['error'] == 'busy'
    assert len([c for c in rak.commands if c.startswith('AT+PSEND=')]) == 3


def test_a_missing_tx_done_is_a_failed_send():
    radio, rak, _, _ = _radio(rx_ms=0)
    rak.script('AT+PSEND=*', ['OK'])
    res = radio.send(2, b'\x01')
    assert res['ok'] is False
    assert res['error'] == 'tx_timeout'


def test_a_silent_modem_gives_results_not_exceptions():
    clock = FakeClock()
    next_fcnt, _ = _counter(1)
    radio = RAK3172P2P(FakeUART(None, clock), clock, _settings(1000), {}, next_fcnt)
    assert radio.join() is False
    assert radio.send(2, b'\x01')['ok'] is False
    assert radio.sleep() is False


def test_garbage_from_the_modem_never_raises():
    clock = FakeClock()
    next_fcnt, _ = _counter(1)
    junk = b'\xff+EVT:RXP2P:x:y:zz\r\n\x00AT+P2P=:::\r\nOK\r\n+EVT:TXP2P DONE\r\n'
    radio = RAK3172P2P(FakeUART(lambda w: junk, clock), clock, _settings(1000), {}, next_fcnt)
    radio.join()
    res = radio.send(2, b'\x01')
    assert res['downlinks'] == []
    radio.sleep()
