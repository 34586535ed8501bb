# LoRa P2P on an SX1262/SX127x through micropython-lib's lora sync API (firmware/citynode_fw/radio/sx126x_p2p.py),
# with a fake modem object in place of the driver.
from binascii import unhexlify

from citynode_fw.radio import dutycycle
from citynode_fw.radio.sx126x_p2p import SX126xP2P
from fakes import FakeClock

from citynode_codec import p2p

EUI = unhexlify('70B3D57ED0000001')
KEY = unhexlify('2B7E151628AED2A6ABF7158809CF4F3C')


class FakeRxPacket(bytearray):
    """Like lora.RxPacket: the payload, plus .rssi (dBm), .snr (dB x 4) and .crc_error."""

    def __init__(self, payload, rssi=-80, snr=24, crc_error=False):
        super().__init__(payload)
        self.rssi = rssi
        self.snr = snr
        self.crc_error = crc_error


class FakeLoRaModem:
    """The lora sync API on the virtual clock: send() takes the time on air, recv() the wait for the next packet."""

    def __init__(self, clock, rx=()):
        self.clock = clock
        self.rx = list(rx)  # (delay_ms, FakeRxPacket)
        self.cfg = None
        self.sent = []
        self.recv_calls = []
        self.asleep = False
        self.fail = {}  # method name -> exception to raise

    def _maybe_fail(self, name):
        if name in self.fail:
            raise self.fail[name]

    def configure(self, lora_cfg):
        self._maybe_fail('configure')
        self.cfg = dict(lora_cfg)

    def send(self, packet, tx_at_ms=None):
        self._maybe_fail('send')
        self.sent.append(bytes(packet))
        self.clock.advance_ms(dutycycle.time_on_air_ms(self.cfg['sf'], 125000, len(packet)))
        return self.clock.ticks_ms()

    def recv(self, timeout_ms=None, rx_length=0xFF, rx_packet=None):
        self._maybe_fail('recv')
        self.recv_calls.append(timeout_ms)
        if self.rx and self.rx[0][0] <= timeout_ms:
            delay, pkt = self.rx.pop(0)
            self.clock.advance_ms(delay)
            return pkt
        self.clock.advance_ms(timeout_ms)
        return None

    def sleep(self):
        self._maybe_fail('sleep')
        self.asleep = True


def _settings(rx_ms=1000, **more):
    s = {'dev_eui': '70B3D57ED0000001', 'p2p_key': KEY, 'p2p_freq_hz': 868100000, 'p2p_sf': 7, 'p2p_bw_khz': 125,
         'p2p_cr': 5, 'p2p_preamble': 8, 'p2p_txp_dbm': 14, 'p2p_rx_ms': rx_ms}
    s.update(more)
    return s


def _radio(rx=(), state=None, rx_ms=1000, **more):
    clock = FakeClock()
    modem = FakeLoRaModem(clock, rx)
    box = [42]

    def next_fcnt():
        box[0] += 1
        return box[0] - 1

    radio = SX126xP2P(modem, clock, _settings(rx_ms, **more), {} if state is None else state, next_fcnt)
    return radio, modem, clock, box


def _downlink(fcnt, payload=b'\x10\x20', eui=EUI, key=KEY, marker=p2p.DOWNLINK):
    return p2p.build(marker, eui, fcnt, 5, payload, key)


def test_join_configures_the_modem_from_settings():
    radio, modem, _, _ = _radio(p2p_syncword=0x12)
    assert radio.join() is True
    assert modem.cfg == {'freq_khz': 868100, 'sf': 7, 'bw': '125', 'coding_rate': 5, 'preamble_len': 8,
                         'output_power': 14, 'crc_en': True, 'implicit_header': False, 'syncword': 0x12}


def test_uplink_frame_verifies_with_the_codec_and_carries_the_next_counter():
    radio, modem, _, box = _radio(rx_ms=0)
    res = radio.send(7, b'\x01\x02\x03\x04\x05')
    assert res == {'ok': True, 'error': None, 'downlinks': [],
                   'airtime_ms': dutycycle.time_on_air_ms(7, 125000, 23), 'rssi': None, 'snr': None}
    marker, eui, fcnt, fport, payload, _ = p2p.verify(modem.sent[0], KEY)
    assert (marker, bytes(eui), fcnt, fport, bytes(payload)) == (p2p.UPLINK, EUI, 42, 7, b'\x01\x02\x03\x04\x05')
    assert box[0] == 43


def test_a_downlink_in_the_window_is_returned_with_rssi_and_snr_in_db():
    state = {}
    radio, _, _, _ = _radio([(300, FakeRxPacket(_downlink(1), rssi=-97, snr=38))], state)
    res = radio.send(2, b'\x01')
    assert res['downlinks'] == [(5, b'\x10\x20')]
    assert res['rssi'] == -97
    assert res['snr'] == 10  # 38 / 4 = 9.5 dB, rounded
    assert state['p2p_dl_fcnt'] == 1


def test_a_negative_snr_in_the_unsigned_sx126x_status_byte_is_read_as_negative():
    radio, _, _, _ = _radio([(300, FakeRxPacket(_downlink(1), snr=256 - 30))])
    assert radio.send(2, b'\x01')['snr'] == -7  # -7.5 dB


def test_the_window_keeps_listening_after_a_foreign_frame_and_takes_ours():
    foreign = FakeRxPacket(_downlink(5, eui=unhexlify('70B3D57ED0000099')))
    ours = FakeRxPacket(_downlink(6, payload=b'\x77'))
    radio, modem, _, _ = _radio([(100, foreign), (200, ours)])
    res = radio.send(2, b'\x01')
    assert res['downlinks'] == [(5, b'\x77')]
    assert len(modem.recv_calls) == 2
    assert modem.recv_calls[1] < modem.recv_calls[0]  # the second wait only gets what is left of the window


def test_a_replayed_downlink_is_ignored():
    state = {'p2p_dl_fcnt': 6}
    radio, _, _, _ = _radio([(100, FakeRxPacket(_downlink(6)))], state)
    assert radio.send(2, b'\x01')['downlinks'] == []
    assert state['p2p_dl_fcnt'] == 6


def test_a_forged_downlink_is_ignored():
    forged = bytearray(_downlink(9))
    forged[-2] ^= 0x40
    for frame in (bytes(forged), _downlink(9, key=b'\x01' * 16), _downlink(9, marker=p2p.UPLINK), b'\xc2\x00'):
        state = {'p2p_dl_fcnt': 1}
        radio, _, _, _ = _radio([(100, FakeRxPacket(frame))], state)
        assert radio.send(2, b'\x01')['downlinks'] == []
        assert state['p2p_dl_fcnt'] == 1


def test_a_packet_with_a_crc_error_is_skipped():
    radio, _, _, _ = _radio([(100, FakeRxPacket(_downlink(3), crc_error=True))])
    assert radio.send(2, b'\x01')['downlinks'] == []


def test_the_receive_window_is_bounded_by_p2p_rx_ms():
    radio, modem, clock, _ = _radio(rx_ms=800)
    t0 = clock.ticks_ms()
    radio.send(2, b'\x01')
    assert modem.recv_calls == [800]
    assert clock.ticks_ms() - t0 <= 800 + 100


def test_no_receive_window_when_p2p_rx_ms_is_zero():
    radio, modem, _, _ = _radio(rx_ms=0)
    radio.send(2, b'\x01')
    assert modem.recv_calls == []


def test_duty_cycle_refuses_a_too_early_send_without_spending_a_counter():
    radio, modem, clock, box = _radio(rx_ms=0)
    assert radio.send(2, b'\x01')['ok']
    res = radio.send(2, b'\x01')
    assert res['error'] == 'duty_cycle'
    assert box[0] == 43
    clock.advance_ms(10000)
    assert radio.send(2, b'\x01')['ok']


def test_the_10_percent_sub_band_allows_sends_ten_times_sooner():
    radio, _, clock, _ = _radio(rx_ms=0, p2p_freq_hz=869525000)
    first = radio.send(2, b'\x01')
    clock.advance_ms(10 * first['airtime_ms'] + 1000)
    assert radio.send(2, b'\x01')['ok']


def test_driver_errors_become_results():
    radio, modem, _, _ = _radio()
    modem.fail['configure'] = ValueError('Invalid lora_cfg sf')
    assert radio.join() is False
    assert radio.send(2, b'\x01')['error'] == 'configure'

    radio, modem, _, _ = _radio()
    modem.fail['send'] = RuntimeError('BUSY timeout')
    assert radio.send(2, b'\x01') == {'ok': False, 'error': 'tx_error', 'downlinks': [], 'airtime_ms': 0,
                                      'rssi': None, 'snr': None}

    radio, modem, _, _ = _radio()
    modem.fail['recv'] = OSError(5)
    modem.fail['sleep'] = OSError(5)
    res = radio.send(2, b'\x01')
    assert res['ok'] is True
    assert res['downlinks'] == []
    assert radio.sleep() is False


def test_sleep_puts_the_radio_to_sleep():
    radio, modem, _, _ = _radio()
    assert radio.sleep() is True
    assert modem.asleep is True


def test_bad_settings_are_reported_before_touching_the_radio():
    radio, modem, _, _ = _radio(p2p_key='nothex')
    assert radio.join() is False
    assert radio.last_error == 'bad_keys'
    assert modem.cfg is None
    radio, modem, _, _ = _radio(p2p_sf=13)
    assert radio.send(2, b'\x01')['error'] == 'bad_radio_settings'
