# LoRa point-to-point through a RAK3172 in RUI3 P2P mode (AT+NWM=0), over a UART (radio/at.py), carrying
# citynode P2P frames (codecs/citynode_codec/p2p.py: marker, DevEUI, u32 counter, fPort, payload, 4-byte
# AES-CMAC MIC). Also home of P2PLink, the frame, counter and receive-window rules both P2P backends share
# (sx126x_p2p.py uses it with micropython-lib's lora driver).
#
# RUI3 P2P commands (atcmd_p2p.c; events from service_lora_p2p.c; RAK3172 Quickstart):
#   AT+NWM=? / AT+NWM=0                          work mode; changing it restarts the modem (At_NwkWorkMode)
#   AT+P2P=<freq Hz>:<sf>:<bw kHz>:<cr 0..3 = 4/5..4/8>:<preamble>:<tx dBm>   read back first, set on change
#   AT+PSEND=<hex> -> OK, then +EVT:TXP2P DONE
#   AT+PRECV=<ms>  -> OK, then +EVT:RXP2P:<rssi>:<snr>:<hex> or +EVT:RXP2P RECEIVE TIMEOUT / ... ERROR
# One wake once configured: AT, AT+PSEND=<frame>, [AT+PRECV=<ms>], AT+SLEEP.

from binascii import hexlify, unhexlify

from citynode_codec import p2p

from . import dutycycle

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_CMD_MS = const(1500)
_FREQ_HZ = const(868100000)
_SF = const(7)
_BW_KHZ = const(125)
_CR = const(5)  # 4/5
_PREAMBLE = const(8)
_TXP_DBM = const(14)
_FRAME_MAX = const(255)  # one LoRa packet
_TX_MARGIN_MS = const(1000)  # after ToA, for +EVT:TXP2P DONE
_RX_MARGIN_MS = const(200)  # after the receive window, for its closing event
_BUSY_TRIES = const(3)
_BUSY_BACKOFF_MS = const(200)
_PORT_MIN = const(1)
_PORT_MAX = const(223)
_NO_COUNTER = const(-1)
_PRECV_MIN_MS = const(15)
_PRECV_MAX_MS = const(65532)
_NWM_RESTART_MS = const(1500)  # RUI3 restarts after a work-mode change (At_NwkWorkMode: udrv_system_reboot)


def _result():
    return {'ok': False, 'error': None, 'downlinks': [], 'airtime_ms': 0, 'rssi': None, 'snr': None}


def _bytes(value, nbytes):
    """Settings value (hex string or bytes) -> bytes of exactly nbytes, or None."""
    if isinstance(value, str):
        try:
            value = unhexlify(value.strip())
        except ValueError:
            return None
    if isinstance(value, (bytes, bytearray)) and len(value) == nbytes:
        return bytes(value)
    return None


def _int(settings, key, default):
    v = settings.get(key, default)
    return v if isinstance(v, int) and not isinstance(v, bool) else default


class P2PLink:
    """What both P2P backends share: radio settings, uplink framing, duty cycle, downlink acceptance.

    settings: dev_eui (8 bytes, hex or bytes), p2p_key (16 bytes, hex or bytes), next_fcnt (callable, unless
      given here), p2p_freq_hz (868100000), p2p_sf (7), p2p_bw_khz (125), p2p_cr (5 = 4/5 .. 8 = 4/8),
      p2p_preamble (8), p2p_txp_dbm (14), p2p_rx_ms (0: no receive window after a send), p2p_syncword.
    state keys written: p2p_dl_fcnt (last accepted downlink counter), and the duty-cycle tracker's dc_s, dc_ms.
    """

    def __init__(self, settings, state, next_fcnt=None):
        s = settings
        self.state = state
        self.dev_eui = _bytes(s.get('dev_eui'), 8)
        self.key = _bytes(s.get('p2p_key'), 16)
        self.next_fcnt = next_fcnt if next_fcnt is not None else s.get('next_fcnt')
        self.freq_hz = _int(s, 'p2p_freq_hz', _FREQ_HZ)
        self.sf = _int(s, 'p2p_sf', _SF)
        bw = s.get('p2p_bw_khz', _BW_KHZ)
        self.bw_khz = bw if isinstance(bw, (int, float)) and not isinstance(bw, bool) and bw > 0 else _BW_KHZ
        self.cr = _int(s, 'p2p_cr', _CR)
        self.preamble = _int(s, 'p2p_preamble', _PREAMBLE)
        self.txp_dbm = _int(s, 'p2p_txp_dbm', _TXP_DBM)
        self.rx_ms = _int(s, 'p2p_rx_ms', 0)
        self.syncword = s.get('p2p_syncword')
        self.duty = dutycycle.DutyCycle(state, dutycycle.subband_divisor(self.freq_hz))
        self.rejected = 0  # frames heard in a receive window and refused (not ours, forged, replayed)

    def settings_error(self):
        """None when the settings can make frames, else a short reason."""
        if self.dev_eui is None or self.key is None:
            return 'bad_keys'
        if not callable(self.next_fcnt):
            return 'no_fcnt'
        if not 7 <= self.sf <= 12 or not 5 <= self.cr <= 8:
            return 'bad_radio_settings'
        return None

    def airtime_ms(self, frame_len):
        return dutycycle.time_on_air_ms(self.sf, int(self.bw_khz * 1000), frame_len, self.cr, self.preamble)

    def check(self, port, payload, now_s):
        """Validate an uplink before a counter is spent: (airtime_ms, None) or (0, error)."""
        err = self.settings_error()
        if err:
            return 0, err
        if not isinstance(port, int) or isinstance(port, bool) or not _PORT_MIN <= port <= _PORT_MAX:
            return 0, 'bad_port'
        if not isinstance(payload, (bytes, bytearray)):
            return 0, 'bad_payload'
        if len(payload) > p2p.MAX_PAYLOAD or len(payload) + p2p.OVERHEAD > _FRAME_MAX:
            return 0, 'payload_too_long'
        airtime = self.airtime_ms(len(payload) + p2p.OVERHEAD)
        if self.duty.wait_s(now_s, airtime):
            return 0, 'duty_cycle'
        return airtime, None

    def uplink(self, port, payload):
        """The signed uplink frame with the next counter (spent even if the send later fails), or None."""
        fcnt = self.next_fcnt()
        if not isinstance(fcnt, int) or isinstance(fcnt, bool) or not 0 <= fcnt <= 0xFFFFFFFF:
            return None
        try:
            return p2p.build(p2p.UPLINK, self.dev_eui, fcnt, port, payload, self.key)
        except p2p.FrameError:
            return None

    def accept(self, frame):
        """(port, payload) for a downlink frame to this device whose MIC verifies and whose counter is above the
        last accepted one (then remembered in state['p2p_dl_fcnt']); None for anything else."""
        try:
            marker, eui, fcnt, _, _, _ = p2p.parse(frame)
            if marker != p2p.DOWNLINK or bytes(eui) != self.dev_eui:
                self.rejected += 1
                return None
            if fcnt <= self.state.get('p2p_dl_fcnt', _NO_COUNTER):  # replayed or old
                self.rejected += 1
                return None
            _, _, fcnt, fport, payload, _ = p2p.verify(frame, self.key)  # forged or corrupt: FrameError
        except p2p.FrameError:
            self.rejected += 1
            return None
        self.state['p2p_dl_fcnt'] = fcnt
        return fport, bytes(payload)

    def lora_cfg(self):
        """micropython-lib lora_cfg for these settings (lora/README.md, "Modem configuration")."""
        cfg = {'freq_khz': self.freq_hz // 1000, 'sf': self.sf, 'bw': str(self.bw_khz), 'coding_rate': self.cr,
               'preamble_len': self.preamble, 'output_power': self.txp_dbm, 'crc_en': True,
               'implicit_header': False}
        if self.syncword is not None:
            cfg['syncword'] = self.syncword
        return cfg

    def at_p2p(self):
        """'<freq>:<sf>:<bw>:<cr>:<preamble>:<txp>' for AT+P2P (RUI3 coding rate index 0..3 = 4/5..4/8)."""
        return '%d:%d:%d:%d:%d:%d' % (self.freq_hz, self.sf, int(self.bw_khz), self.cr - 5, self.preamble,
                                     self.txp_dbm)


def _same_p2p(got, want):
    # AT+P2P=? prints the bandwidth either in kHz or as RUI3's index (0 = 125, 1 = 250, 2 = 500 kHz); accept both
    if got is None:
        return False
    g = got.strip().split(':')
    w = want.split(':')
    if len(g) != 6:
        return False
    bw_index = {'125': '0', '250': '1', '500': '2'}.get(w[2])
    for i in range(6):
        if g[i] != w[i] and not (i == 2 and g[i] == bw_index):
            return False
    return True


def parse_rxp2p(event):
    """'RXP2P:<rssi>:<snr>:<hex>' (service_lora_p2p.c) -> (frame bytes, rssi, snr), or None."""
    parts = event.split(':')
    if len(parts) != 4 or parts[0] != 'RXP2P':
        return None
    try:
        return unhexlify(parts[3]), int(parts[1]), int(parts[2])
    except ValueError:
        return None


class RAK3172P2P:
    """P2P backend on a RAK3172. Constructor: (uart, clock, settings, state, next_fcnt=None, reset_pin=None,
    at=None); settings and state keys as P2PLink, plus p2p_cfg, modem_resets and modem_error in state."""

    def __init__(self, uart, clock, settings, state, next_fcnt=None, reset_pin=None, at=None):
        if at is None:
            from .at import ATModem  # imported here so sx126x_p2p can share P2PLink without loading at.py

            at = ATModem(uart, clock)
        self.at = at
        self.clock = clock
        self.settings = settings
        self.state = state
        self.reset_pin = reset_pin
        self.link = P2PLink(settings, state, next_fcnt)
        self.last_error = None
        self._awake = False
        self._alive = True

    def _wake(self):
        if self._awake:
            return self._alive
        self._awake = True
        how = self.at.revive(self.state, self.reset_pin)
        if how == 'reset':
            self.state.pop('p2p_cfg', None)
        self._alive = how is not None
        if not self._alive:
            self.last_error = 'no_reply'
        return self._alive

    def join(self, budget_ms=0):
        """Put the modem in P2P mode with the configured radio parameters; True when ready."""
        err = self.link.settings_error()
        if err:
            self.last_error = err
            return False
        if not self._wake():
            return False
        want = self.link.at_p2p()
        if self.state.get('p2p_cfg') == want:
            return True
        at = self.at
        if at.query('AT+NWM') != '0':
            # RUI3 prints OK without CRLF and restarts on a work-mode change (atcmd_p2p.c At_NwkWorkMode)
            at.write_line('AT+NWM=0')
            self.clock.sleep_ms(_NWM_RESTART_MS)
            if not at.ping() or at.query('AT+NWM') != '0':
                self.last_error = 'nwm'
                return False
        if not _same_p2p(at.query('AT+P2P'), want):
            status, _ = at.command('AT+P2P=' + want, _CMD_MS)
            if status != 'OK':
                self.last_error = 'p2p_config'
                return False
        self.state['p2p_cfg'] = want
        return True

    def _psend(self, cmd):
        status = None
        for i in range(_BUSY_TRIES):
            status, _ = self.at.command(cmd, _CMD_MS)
            if status != 'AT_BUSY_ERROR':
                return status
            if i + 1 < _BUSY_TRIES:
                self.clock.sleep_ms(_BUSY_BACKOFF_MS << i)
        return status

    def send(self, port, payload, confirmed=False):
        """Send one citynode P2P uplink frame (P2P has no acknowledgement: `confirmed` is ignored), then listen
        p2p_rx_ms for a downlink. Returns the dict described in radio/__init__.py plus rssi/snr."""
        res = _result()
        link = self.link
        airtime, err = link.check(port, payload, self.clock.time())
        if err:
            res['error'] = err
            return res
        if self.state.get('p2p_cfg') != link.at_p2p() and not self.join():
            res['error'] = self.last_error or 'not_ready'
            return res
        if not self._wake():
            res['error'] = 'no_reply'
            return res
        frame = link.uplink(port, payload)
        if frame is None:
            res['error'] = 'fcnt'
            return res
        at = self.at
        at.take_events(('TXP2P', 'RXP2P'))
        status = self._psend('AT+PSEND=' + hexlify(frame).decode().upper())
        if status != 'OK':
            res['error'] = 'busy' if status == 'AT_BUSY_ERROR' else ('no_reply' if status is None else
                                                                    status[3:].lower())
            return res
        link.duty.record(self.clock.time(), airtime)
        res['airtime_ms'] = airtime
        if at.wait_event(('TXP2P DONE',), airtime + _TX_MARGIN_MS) is None:
            res['error'] = 'tx_timeout'
            return res
        res['ok'] = True
        if link.rx_ms > 0:
            self._receive(res)
        return res

    def _receive(self, res):
        at = self.at
        link = self.link
        # At_P2pRecv: a timed window is 15..65532 ms; 0 stops, 65533..65535 are the continuous modes
        ms = link.rx_ms
        if ms < _PRECV_MIN_MS:
            ms = _PRECV_MIN_MS
        elif ms > _PRECV_MAX_MS:
            ms = _PRECV_MAX_MS
        status, _ = at.command('AT+PRECV=%d' % ms, _CMD_MS)
        if status != 'OK':
            return
        start = self.clock.ticks_ms()
        limit = ms + _RX_MARGIN_MS
        while True:
            left = limit - self.clock.ticks_diff(self.clock.ticks_ms(), start)
            if left <= 0:
                return
            ev = at.wait_event(('RXP2P',), left)
            if ev is None or ev.startswith('RXP2P RECEIVE'):  # TIMEOUT or ERROR closes the window
                return
            rx = parse_rxp2p(ev)
            if rx is None:
                continue
            dl = link.accept(rx[0])
            if dl is not None:
                res['downlinks'].append(dl)
                res['rssi'] = rx[1]
                res['snr'] = rx[2]
                return  # RUI3 stops a timed receive after one packet (service_lora_p2p.c, Radio.Standby)

    def sleep(self):
        if self._awake and not self._alive:
            return False
        return self.at.sleep()
