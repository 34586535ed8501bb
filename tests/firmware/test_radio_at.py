# The RUI3 AT line protocol (firmware/citynode_fw/radio/at.py) against a FakeUART and the FakeRAK3172 model.
from citynode_fw.radio import at as atmod
from citynode_fw.radio.at import ATModem
from fakes import FakeClock, FakePin, FakeUART
from modem_fakes import FakeRAK3172, Transcript, transcript_names, transcript_text


def _modem(responder=None, delay_ms=0):
    clock = FakeClock()
    uart = FakeUART(responder, clock, delay_ms)
    return ATModem(uart, clock), uart, clock


def _replies(*lines, eol=b'\r\n'):
    data = b''.join(line.encode() + eol for line in lines)
    return lambda written: data


def test_command_ends_each_line_with_crlf_and_returns_ok():
    m, uart, _ = _modem(_replies('OK'))
    assert m.command('AT') == ('OK', [])
    assert uart.writes == [b'AT\r\n']


def test_query_strips_the_command_name_rui3_echoes_in_its_value():
    m, _, _ = _modem(_replies('AT+DEVEUI=AC1F09FFFE000001', 'OK'))
    assert m.command('AT+DEVEUI=?') == ('OK', ['AC1F09FFFE000001'])
    m2, _, _ = _modem(_replies('AT+DEVEUI=AC1F09FFFE000001', 'OK'))
    assert m2.query('AT+DEVEUI') == 'AC1F09FFFE000001'


def test_query_accepts_a_bare_value_from_older_firmware():
    m, _, _ = _modem(_replies('AC1F09FFFE000001', 'OK'))
    assert m.query('AT+DEVEUI') == 'AC1F09FFFE000001'


def test_every_rui3_status_ends_a_command():
    for status in atmod.STATUSES:
        m, _, _ = _modem(_replies(status))
        assert m.command('AT+X=1') == (status, []), status


def test_an_unknown_at_error_word_also_ends_a_command():
    m, _, _ = _modem(_replies('AT_DUTYCYLE_RESTRICTED'))
    assert m.command('AT+SEND=1:00')[0] == 'AT_DUTYCYLE_RESTRICTED'


def test_a_value_line_is_not_mistaken_for_a_status():
    assert not atmod.is_status('AT+NJS=1')
    assert not atmod.is_status('AT_')
    assert not atmod.is_status('AT_ERROR x')
    assert atmod.is_status('AT_PARAM_ERROR')


def test_echo_is_stripped():
    clock = FakeClock()
    rak = FakeRAK3172(clock, echo=True)
    m = ATModem(rak.uart, clock)
    assert m.command('AT+NJS=?') == ('OK', ['0'])
    assert m.echo is True


def test_an_event_between_echo_and_ok_is_queued_not_returned_as_a_value():
    m, _, _ = _modem(_replies('AT+SEND=2:AA', '+EVT:RX_1:-70:8:UNICAST:2:0102', 'OK'))
    assert m.command('AT+SEND=2:AA') == ('OK', [])
    assert m.events == ['RX_1:-70:8:UNICAST:2:0102']


def test_cr_only_lf_only_and_lfcr_line_endings_all_work():
    for eol in (b'\r', b'\n', b'\n\r', b'\r\n'):
        m, _, _ = _modem(_replies('AT+NJS=1', 'OK', eol=eol))
        assert m.command('AT+NJS=?') == ('OK', ['1']), eol


def test_a_line_split_across_reads_is_reassembled():
    clock = FakeClock()
    rak = FakeRAK3172(clock)
    rak.chunk = 3  # 'AT+', 'DEV', 'EUI', ... one ms apart
    m = ATModem(rak.uart, clock)
    assert m.query('AT+DEVEUI') == 'AC1F09FFFE000001'


def test_a_silent_modem_times_out_on_the_virtual_clock():
    m, _, clock = _modem(None)
    assert m.command('AT', 800) == (None, [])
    assert 800 <= clock.ticks_ms() < 900


def test_a_slow_reply_within_the_timeout_is_still_read():
    m, _, _ = _modem(_replies('OK'), delay_ms=700)
    assert m.command('AT', 1000)[0] == 'OK'
    m2, _, _ = _modem(_replies('OK'), delay_ms=1200)
    assert m2.command('AT', 1000)[0] is None


def test_garbage_bytes_are_dropped_and_counted_without_breaking_the_reply():
    m, uart, _ = _modem(lambda w: b'\x00\xff\xfe\x80OK\r\n')
    assert m.command('AT') == ('OK', [])
    assert m.garbage == 4


def test_pure_garbage_never_raises_and_yields_no_status():
    noise = bytes(range(256)) * 4
    m, uart, _ = _modem(lambda w: noise)
    status, values = m.command('AT', 300)
    assert status is None
    assert m.garbage > 0
    assert len(values) <= 4


def test_noise_left_without_a_line_end_does_not_glue_onto_the_next_reply():
    m, uart, clock = _modem(_replies('OK'))
    uart.feed(b'xx')  # printable junk, no CR/LF (a modem restarting prints such things)
    assert m.command('AT') == ('OK', [])


def test_an_overlong_line_is_dropped_and_the_buffer_stays_bounded():
    long_line = b'A' * 5000 + b'\r\nOK\r\n'
    m, _, _ = _modem(lambda w: long_line)
    assert m.command('AT', 500) == ('OK', [])
    assert len(m._line) == 560
    assert m.garbage >= 5000 - 560


def test_the_event_queue_is_bounded_and_keeps_the_newest():
    m, uart, _ = _modem(None)
    for i in range(20):
        uart.feed(b'+EVT:RX_1:-70:8:UNICAST:2:%02x\r\n' % i)
    m.poll()
    assert len(m.events) == 6
    assert m.events[-1] == 'RX_1:-70:8:UNICAST:2:13'
    assert m.dropped == 14


def test_wait_event_returns_a_matching_event_that_arrives_later():
    m, uart, clock = _modem(None)
    uart.feed(b'+EVT:JOINED\r\n', after_ms=5000)
    assert m.wait_event(('JOINED', 'JOIN_FAILED'), 6000) == 'JOINED'
    assert 5000 <= clock.ticks_ms() < 5100


def test_wait_event_times_out_and_keeps_other_events_queued():
    m, uart, clock = _modem(None)
    uart.feed(b'+EVT:RX_2:-90:-3:UNICAST:5:ff\r\n')
    assert m.wait_event('TX_DONE', 2000) is None
    assert clock.ticks_ms() >= 2000
    assert m.take_events('RX_') == ['RX_2:-90:-3:UNICAST:5:ff']
    assert m.events == []


def test_an_event_queued_during_a_command_satisfies_a_later_wait_at_once():
    m, _, clock = _modem(_replies('OK', '+EVT:TX_DONE'))
    assert m.command('AT+SEND=2:00')[0] == 'OK'
    t = clock.ticks_ms()
    assert m.wait_event('TX_DONE', 5000) == 'TX_DONE'
    assert clock.ticks_ms() == t


def test_replies_left_over_from_an_earlier_command_are_not_taken_for_the_next():
    m, uart, _ = _modem(None)
    uart.feed(b'AT_BUSY_ERROR\r\n')  # a late status from a command that had timed out
    uart.responder = _replies('OK')
    assert m.command('AT')[0] == 'OK'


def test_a_uart_that_raises_oserror_is_a_silent_modem():
    class BrokenUART:
        def write(self, buf):
            raise OSError(5)

        def any(self):
            raise OSError(5)

        def read(self, n=None):
            raise OSError(5)

    clock = FakeClock()
    m = ATModem(BrokenUART(), clock)
    assert m.command('AT', 100) == (None, [])
    assert m.wait_event('X', 100) is None


def test_ping_retries_with_a_growing_pause_and_gives_up():
    m, uart, clock = _modem(None)
    assert m.ping(tries=3, timeout_ms=300, backoff_ms=50) is False
    assert uart.writes == [b'AT\r\n'] * 3
    assert clock.ticks_ms() >= 3 * 300 + 50 + 100


def test_revive_resets_a_hung_modem_with_atz_and_counts_it():
    clock = FakeClock()
    rak = FakeRAK3172(clock)
    rak.hung = True
    m = ATModem(rak.uart, clock)
    state = {}
    assert m.revive(state) == 'reset'
    assert 'ATZ' in rak.commands
    assert state['modem_resets'] == 1
    assert state['modem_error'] is False


def test_revive_prefers_the_reset_pin_when_there_is_one():
    clock = FakeClock()
    rak = FakeRAK3172(clock)
    rak.hung = True
    pin = rak.reset_pin()
    m = ATModem(rak.uart, clock)
    state = {}
    assert m.revive(state, pin) == 'reset'
    assert pin.history == [0, 1]
    assert 'ATZ' not in rak.commands


def test_revive_reports_a_dead_modem_in_state():
    m, _, _ = _modem(None)
    state = {'modem_resets': 2}
    assert m.revive(state, FakePin(1)) is None
    assert state == {'modem_resets': 3, 'modem_error': True}


def test_sleep_retries_while_busy_then_gives_up():
    m, uart, _ = _modem(_replies('AT_BUSY_ERROR'))
    assert m.sleep(tries=3) is False
    assert uart.writes == [b'AT+SLEEP\r\n'] * 3


def test_sleep_counts_a_missing_ok_as_asleep():
    m, _, _ = _modem(None)  # RUI3 prints the OK of AT+SLEEP only when it wakes again
    assert m.sleep() is True


def test_every_transcript_parses_and_uses_only_rui3_status_and_event_words():
    # Status lines must be atcmd_err_tbl entries and events the service_lora*.c strings, so a typo in a recording
    # cannot teach the parser a word the modem never prints.
    events = ('JOINED', 'JOIN_FAILED_', 'TX_DONE', 'SEND_CONFIRMED_OK', 'SEND_CONFIRMED_FAILED', 'RX_1:', 'RX_2:',
              'RX_B:', 'RX_C:', 'TXP2P DONE', 'RXP2P:', 'RXP2P RECEIVE TIMEOUT', 'RXP2P RECEIVE ERROR')
    names = transcript_names()
    assert len(names) >= 12
    for name in names:
        t = Transcript(FakeClock(), transcript_text(name))
        assert t.expected, name
        for kind, value in t.steps:
            if kind != '<':
                continue
            line = value.decode().strip()
            if line.startswith('+EVT:'):
                assert atmod._starts(line[5:], events), (name, line)
            elif line.startswith('AT_'):
                assert line in atmod.STATUSES, (name, line)
