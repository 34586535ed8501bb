# LoRaWAN through a RAK3172 (firmware/citynode_fw/radio/rak3172_lorawan.py): recorded RUI3 transcripts replayed
# exactly, and the FakeRAK3172 model for behaviour across wakes.
from citynode_fw.radio import dutycycle
from citynode_fw.radio.rak3172_lorawan import RAK3172LoRaWAN, parse_downlink
from fakes import FakeClock, FakeUART
from modem_fakes import FakeRAK3172, replay

SETTINGS = {'dev_eui': '70B3D57ED0000001', 'app_eui': 'A000000000000100',
            'app_key': '2B7E151628AED2A6ABF7158809CF4F3C', 'band': 4, 'adr': True}
MODEM_HAS_KEYS = {'DEVEUI': '70B3D57ED0000001', 'APPEUI': 'A000000000000100',
                  'APPKEY': '2B7E151628AED2A6ABF7158809CF4F3C', 'ADR': '1'}


def _warm_state():
    """State after a first wake that configured and joined (what RTC memory holds on later wakes)."""
    clock = FakeClock()
    rak = FakeRAK3172(clock, MODEM_HAS_KEYS)
    state = {}
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state)
    if not radio.join():
        raise AssertionError('warm-up join failed: ' + str(radio.last_error))
    state['lw_cfm'] = 0
    return state


def _cycle(name, state, send=None, settings=SETTINGS):
    """One wake against a transcript: join(), optionally send(*send), sleep(). Returns (radio, result, t, clock)."""
    clock = FakeClock()
    t = replay(clock, name)
    radio = RAK3172LoRaWAN(t.uart, clock, settings, state)
    res = None
    if radio.join() and send is not None:
        res = radio.send(*send)
    radio.sleep()
    if not t.ok():
        raise AssertionError(t.diff())
    return radio, res, t, clock


def test_first_wake_writes_only_differing_settings_joins_and_sends_as_recorded():
    state = {}
    _, res, _, _ = _cycle('lorawan_otaa_join_send', state, (2, b'\x01\x02\x03\x04\x05'))
    assert res == {'ok': True, 'error': None, 'downlinks': [], 'airtime_ms': dutycycle.lorawan_airtime_ms(5, 5),
                   'rssi': None, 'snr': None}
    assert state['lw_joined'] is True
    assert state['lw_cfm'] == 0
    assert state['lw_join_fails'] == 0
    assert 'lw_rejoin' not in state


def test_normal_wake_of_a_joined_node_is_ping_njs_dr_send_sleep():
    state = _warm_state()
    _, res, t, _ = _cycle('lorawan_wake_joined_send', state, (2, b'\x01\x02\x03\x04\x05'))
    assert t.expected == ['AT', 'AT+NJS=?', 'AT+DR=?', 'AT+SEND=2:0102030405', 'AT+SLEEP']
    assert res['ok'] is True
    assert res['error'] is None


def test_keys_are_not_rewritten_when_the_modem_already_has_them():
    clock = FakeClock()
    rak = FakeRAK3172(clock, MODEM_HAS_KEYS)
    state = {}
    assert RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state).join() is True
    assert 'AT+DEVEUI=?' in rak.commands  # it did read them back
    assert rak.writes == []
    assert 'AT+JOIN=1:0:8:0' in rak.commands


def test_configuration_is_not_even_read_again_on_later_wakes():
    state = _warm_state()
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1'))
    assert RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state).join() is True
    assert rak.commands == ['AT', 'AT+NJS=?']


def test_changed_settings_are_written_and_force_a_new_join_over_an_old_session():
    state = _warm_state()
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1'))
    settings = dict(SETTINGS, app_key='000102030405060708090A0B0C0D0E0F')
    radio = RAK3172LoRaWAN(rak.uart, clock, settings, state)
    assert radio.join() is True
    assert rak.writes == ['AT+APPKEY=000102030405060708090A0B0C0D0E0F']
    assert 'AT+JOIN=1:0:8:0' in rak.commands  # NJS=1 was a session made with the old key


def test_keys_given_as_bytes_or_lower_case_hex_are_the_same_keys():
    clock = FakeClock()
    rak = FakeRAK3172(clock, MODEM_HAS_KEYS)
    settings = dict(SETTINGS, dev_eui=b'\x70\xb3\xd5\x7e\xd0\x00\x00\x01', app_key=SETTINGS['app_key'].lower())
    assert RAK3172LoRaWAN(rak.uart, clock, settings, {}).join() is True
    assert rak.writes == []


def test_a_malformed_key_fails_join_without_writing_anything():
    clock = FakeClock()
    rak = FakeRAK3172(clock)
    radio = RAK3172LoRaWAN(rak.uart, clock, dict(SETTINGS, app_key='XYZ'), {})
    assert radio.join() is False
    assert radio.last_error == 'bad_keys'
    assert rak.writes == []


def test_a_modem_in_p2p_mode_is_switched_to_lorawan_and_restarts():
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NWM='0'))
    assert RAK3172LoRaWAN(rak.uart, clock, SETTINGS, {}).join() is True
    assert rak.writes == ['AT+NWM=1']


def test_confirmed_send_acknowledged_as_recorded():
    state = _warm_state()
    _, res, _, _ = _cycle('lorawan_confirmed_ok', state, (10, b'\xa1\xb2', True))
    assert res['ok'] is True
    assert state['lw_cfm'] == 1


def test_confirmed_send_failed_is_resent_after_the_duty_cycle_pause_then_acknowledged():
    state = _warm_state()
    state['lw_cfm'] = 1
    _, res, _, clock = _cycle('lorawan_confirmed_failed_retry', state, (10, b'\xa1\xb2', True))
    assert res['ok'] is True
    assert res['error'] is None
    airtime = dutycycle.lorawan_airtime_ms(5, 2)
    assert res['airtime_ms'] == 2 * airtime
    assert clock.ticks_ms() >= 100 * airtime  # the resend waited for the sub-band


def test_confirmed_send_gives_up_after_the_configured_retries():
    state = _warm_state()
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1', CFM='1'))
    rak.confirm_results = [False, False, False, False]
    radio = RAK3172LoRaWAN(rak.uart, clock, dict(SETTINGS, confirm_retries=2), state)
    assert radio.join()
    res = radio.send(3, b'\x01', True)
    assert res['ok'] is False
    assert res['error'] == 'confirm_failed'
    assert len([c for c in rak.commands if c.startswith('AT+SEND=')]) == 3


def test_downlink_on_rx1_is_returned_with_rssi_and_snr():
    state = _warm_state()
    _, res, _, _ = _cycle('lorawan_downlink_rx1', state, (2, b'\x01\x02'))
    assert res['ok'] is True
    assert res['downlinks'] == [(3, b'\x0a\x0b\x0c')]
    assert res['rssi'] == -70
    assert res['snr'] == 8


def test_parse_downlink_reads_every_rx_slot_and_either_hex_case():
    assert parse_downlink('RX_1:-70:8:UNICAST:2:0102') == (2, b'\x01\x02', -70, 8)
    assert parse_downlink('RX_2:-112:-7:UNICAST:10:ABcd') == (10, b'\xab\xcd', -112, -7)
    assert parse_downlink('RX_B:-90:3:MULTICAST:200:ff') == (200, b'\xff', -90, 3)
    assert parse_downlink('RX_C:-90:3:UNICAST:4:') == (4, b'', -90, 3)


def test_parse_downlink_rejects_malformed_events():
    for bad in ('RX_1:-70:8:UNICAST:2:010', 'RX_1:-70:8:UNICAST:2:zz', 'RX_1:x:8:UNICAST:2:00', 'RX_1:-70:8',
                'TX_DONE', 'RX_1:-70:8:UNICAST:999:00', 'LINKCHECK:0:21:1:-60:11'):
        assert parse_downlink(bad) is None, bad


def test_a_stale_completion_event_does_not_end_the_next_send_early():
    state = _warm_state()
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1'))
    rak.event('TX_DONE')  # left over from a send the last wake did not wait out
    rak.downlinks = ['RX_1:-80:5:UNICAST:3:aa']
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state)
    assert radio.join()
    res = radio.send(2, b'\x01')
    assert res['ok'] is True
    assert res['downlinks'] == [(3, b'\xaa')]  # the wait lasted until this send's own TX_DONE


def test_busy_error_is_retried_and_then_succeeds_as_recorded():
    state = _warm_state()
    _, res, _, _ = _cycle('lorawan_busy_then_ok', state, (2, b'\x01\x02'))
    assert res['ok'] is True


def test_a_modem_that_stays_busy_gets_a_bounded_number_of_tries_with_growing_pauses():
    state = _warm_state()
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1'))
    rak.script('AT+SEND=*', ['AT_BUSY_ERROR'], times=None)
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state)
    assert radio.join()
    t0 = clock.ticks_ms()
    res = radio.send(2, b'\x01')
    assert res == {'ok': False, 'error': 'busy', 'downlinks': [], 'airtime_ms': 0, 'rssi': None, 'snr': None}
    assert len([c for c in rak.commands if c.startswith('AT+SEND=')]) == 4
    assert clock.ticks_ms() - t0 >= 500 + 1000 + 2000


def test_no_network_joined_marks_the_node_not_joined():
    state = _warm_state()
    _, res, _, _ = _cycle('lorawan_not_joined', state, (2, b'\x01\x02'))
    assert res['ok'] is False
    assert res['error'] == 'not_joined'
    assert state['lw_joined'] is False


def test_param_error_is_reported_without_retrying():
    state = _warm_state()
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1'))
    rak.script('AT+SEND=*', ['AT_PARAM_ERROR'], times=None)
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state)
    assert radio.join()
    assert radio.send(2, b'\x01')['error'] == 'param_error'
    assert len([c for c in rak.commands if c.startswith('AT+SEND=')]) == 1


def test_join_failure_as_recorded_starts_the_backoff():
    state = _warm_state()
    state['lw_joined'] = False
    radio, res, _, clock = _cycle('lorawan_join_failed', state, (2, b'\x01'))
    assert res is None  # join() said no, so nothing was sent
    assert radio.last_error == 'join_failed_rx_timeout'
    assert state['lw_join_fails'] == 1
    assert state['lw_join_next_s'] == clock.epoch + 60  # the failure counts from when the attempt started


def test_join_backoff_grows_and_is_capped_across_wakes_and_resets_after_success():
    state = _warm_state()
    state['lw_joined'] = False
    settings = dict(SETTINGS, join_backoff_s=60, join_backoff_cap_s=900)
    clock = FakeClock()
    delays = []
    for _ in range(7):
        rak = FakeRAK3172(clock, MODEM_HAS_KEYS)
        rak.join_result = 'JOIN_FAILED_RX_TIMEOUT'
        before = clock.time()
        assert RAK3172LoRaWAN(rak.uart, clock, settings, state).join() is False
        delays.append(state['lw_join_next_s'] - before)
        clock.advance_ms((state['lw_join_next_s'] - clock.time()) * 1000)  # sleep until allowed again
    assert delays == [60, 120, 240, 480, 900, 900, 900]
    rak = FakeRAK3172(clock, MODEM_HAS_KEYS)
    assert RAK3172LoRaWAN(rak.uart, clock, settings, state).join() is True
    assert state['lw_join_fails'] == 0
    assert state['lw_join_next_s'] == 0


def test_a_wake_inside_the_join_backoff_does_not_send_a_join_request():
    state = _warm_state()
    clock = FakeClock()
    state.update({'lw_joined': False, 'lw_join_fails': 3, 'lw_join_next_s': clock.time() + 100})
    rak = FakeRAK3172(clock, MODEM_HAS_KEYS)
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state)
    assert radio.join() is False
    assert radio.last_error == 'join_backoff'
    assert not [c for c in rak.commands if c.startswith('AT+JOIN')]


def test_a_session_the_modem_kept_ends_the_backoff_without_joining():
    state = _warm_state()
    clock = FakeClock()
    state.update({'lw_joined': False, 'lw_join_fails': 3, 'lw_join_next_s': clock.time() + 100})
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1'))
    assert RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state).join() is True
    assert state['lw_join_fails'] == 0


def test_join_waits_no_longer_than_its_budget():
    state = _warm_state()
    state['lw_joined'] = False
    clock = FakeClock()
    rak = FakeRAK3172(clock, MODEM_HAS_KEYS)
    rak.join_result = None  # no event at all
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state)
    assert radio.join(3000) is False
    assert radio.last_error == 'join_timeout'
    assert clock.ticks_ms() <= 3100
    assert state['lw_join_fails'] == 1


def test_old_firmware_without_tx_done_counts_the_uplink_as_sent_after_the_rx_windows():
    state = _warm_state()
    radio, res, _, clock = _cycle('lorawan_old_firmware_no_txdone', state, (2, b'\x01\x02'))
    assert res['ok'] is True
    assert clock.ticks_ms() >= res['airtime_ms'] + 4000


def test_a_silent_modem_is_reset_once_and_then_reported_without_raising():
    state = _warm_state()
    resets = state.get('modem_resets', 0)
    clock = FakeClock()
    t = replay(clock, 'lorawan_silent_modem')
    radio = RAK3172LoRaWAN(t.uart, clock, SETTINGS, state)
    assert radio.join() is False
    assert radio.last_error == 'no_reply'
    res = radio.send(2, b'\x01')
    assert res['ok'] is False
    assert res['error'] in ('no_reply', 'not_joined')
    assert radio.sleep() is False
    assert t.ok(), t.diff()
    assert state['modem_resets'] == resets + 1
    assert state['modem_error'] is True


def test_a_hung_modem_is_reset_with_its_reset_pin_and_configuration_is_checked_again():
    state = _warm_state()
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1'))
    rak.hung = True
    pin = rak.reset_pin()
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state, reset_pin=pin)
    assert radio.join() is True  # the reset lost the session: joined again
    assert pin.history == [0, 1]
    assert state['modem_resets'] == 1
    assert state['modem_error'] is False
    assert 'AT+DEVEUI=?' in rak.commands
    assert 'AT+JOIN=1:0:8:0' in rak.commands


def test_echo_on_is_handled_as_recorded():
    state = _warm_state()
    _, res, _, _ = _cycle('lorawan_echo_on', state, (2, b'\x01\x02'))
    assert res['ok'] is True


def test_garbage_and_noise_from_the_modem_never_raise():
    seed = [12345]

    def noise(written):
        out = bytearray()
        for _ in range(40):
            seed[0] = (seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
            out.append((seed[0] >> 16) & 0xFF)
        return bytes(out)

    for settings in (SETTINGS, dict(SETTINGS, modem_sleep='lpm')):
        clock = FakeClock()
        state = {}
        radio = RAK3172LoRaWAN(FakeUART(noise, clock), clock, settings, state)
        assert radio.join() is False
        state['lw_joined'] = True
        res = radio.send(2, b'\x01', True)
        assert res['ok'] is False
        radio.sleep()


def test_garbage_between_good_lines_does_not_spoil_a_send():
    state = _warm_state()
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1'))
    rak.garbage(b'\x00\xff\xfe')
    rak.garbage(b'\x80\x81\r\n\x00', after_ms=1200)
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state)
    assert radio.join()
    assert radio.send(2, b'\x01')['ok'] is True
    assert radio.at.garbage >= 6


def test_send_checks_port_and_payload_before_talking_to_the_modem():
    state = _warm_state()
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1'))
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state)
    assert radio.send(0, b'\x01')['error'] == 'bad_port'
    assert radio.send(224, b'\x01')['error'] == 'bad_port'
    assert radio.send(True, b'\x01')['error'] == 'bad_port'
    assert radio.send(2, 'text')['error'] == 'bad_payload'
    assert radio.send(2, b'')['error'] == 'payload_size'
    assert radio.send(2, bytes(251))['error'] == 'payload_size'
    assert rak.commands == []


def test_send_refuses_a_payload_too_long_for_the_current_data_rate():
    state = _warm_state()
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1', DR='0'))
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state)
    assert radio.join()
    assert radio.send(2, bytes(52))['error'] == 'payload_too_long'
    assert radio.send(2, bytes(51))['ok'] is True


def test_duty_cycle_refuses_a_second_send_too_early():
    state = _warm_state()
    clock = FakeClock()
    rak = FakeRAK3172(clock, dict(MODEM_HAS_KEYS, NJS='1', DR='0'))
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, state)
    assert radio.join()
    first = radio.send(2, bytes(10))
    assert first['ok'] is True
    second = radio.send(2, bytes(10))
    assert second['ok'] is False
    assert second['error'] == 'duty_cycle'
    assert len([c for c in rak.commands if c.startswith('AT+SEND=')]) == 1
    clock.advance_ms(100 * first['airtime_ms'])
    assert radio.send(2, bytes(10))['ok'] is True


def test_send_without_a_session_does_not_talk_to_the_modem():
    clock = FakeClock()
    rak = FakeRAK3172(clock)
    radio = RAK3172LoRaWAN(rak.uart, clock, SETTINGS, {'lw_joined': False})
    assert radio.send(2, b'\x01')['error'] == 'not_joined'
    assert rak.commands == []


def test_lpm_mode_sets_automatic_low_power_once_and_sleep_sends_nothing():
    clock = FakeClock()
    rak = FakeRAK3172(clock, MODEM_HAS_KEYS)
    radio = RAK3172LoRaWAN(rak.uart, clock, dict(SETTINGS, modem_sleep='lpm'), {})
    assert radio.join()
    assert rak.writes == ['AT+LPM=1']
    n = len(rak.commands)
    assert radio.sleep() is True
    assert len(rak.commands) == n
