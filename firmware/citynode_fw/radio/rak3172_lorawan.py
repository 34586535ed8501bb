# LoRaWAN (class A, OTAA) through a RAK3172 running RUI3 AT firmware, over a UART (radio/at.py).
#
# Commands and replies as in the RUI3 AT Command Manual and the RUI3 source (RAKWireless/RAK-STM32-RUI,
# cores/STM32WLE/component/service/mode/cli/atcmd_join_send.c, atcmd_nwk_management.c, atcmd_key_id.c;
# events from service/lora/service_lora.c). One wake of a node that is already joined:
#   AT -> OK                        wake-up ping (UART input ends AT+SLEEP; a lost first command is retried)
#   AT+NJS=? -> AT+NJS=1, OK        the modem keeps its session while the host deep-sleeps
#   AT+DR=? -> AT+DR=5, OK          payload limit and airtime at the data rate ADR chose
#   AT+SEND=<port>:<hex> -> OK, then +EVT:TX_DONE (and +EVT:RX_1:... before it when a downlink came)
#   AT+SLEEP
# Configuration (band, class, OTAA keys, ADR) is read back and written only when it differs, once per change of
# settings (a signature in the state dict), so a normal wake writes nothing to the modem's flash.
# Joins back off exponentially across wakes, up to a cap. Modem trouble is a result, never an exception.

from binascii import hexlify, unhexlify

from . import dutycycle
from .at import OK, ATModem

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_CMD_MS = const(1500)
_JOIN_WAIT_MS = const(12000)  # JoinRequest ToA (<= 1.5 s at SF12) + JOIN_ACCEPT_DELAY2 (6 s, RP002 defaults) + RX2
_JOIN_BUDGET_MS = const(15000)
_JOIN_BACKOFF_S = const(60)  # first pause after a failed join
_JOIN_BACKOFF_CAP_S = const(21600)  # 6 h: LoRaWAN 1.0.4 "Retransmissions back-off" allows JoinRequests 8.7 s of
# airtime per 24 h once a device has been trying for 11 h (about one SF12 request every 4 h)
_TX_DONE_MS = const(4000)  # after ToA: RECEIVE_DELAY2 (2 s, RP002 defaults) + the RX2 window and a downlink in it
_CONFIRM_MS = const(8000)  # after ToA: RX windows, plus ACK_TIMEOUT 1..3 s before a modem retransmission
_BUSY_TRIES = const(4)  # AT+SEND while the modem is busy (previous RX windows still open)
_BUSY_BACKOFF_MS = const(500)  # 0.5, 1, 2 s
_BUSY_BACKOFF_CAP_MS = const(4000)
_CONFIRM_RETRIES = const(1)  # host-side resends after SEND_CONFIRMED_FAILED (new frame, new FCnt)
_RETRY_WAIT_CAP_S = const(30)  # a confirmed resend waits for the duty cycle only this long
_SEND_HEX_MAX = const(250)  # At_Send: 2..500 hex characters
_PORT_MIN = const(1)  # At_Send: port 1..223
_PORT_MAX = const(223)
_EU868 = const(4)  # AT+BAND code (atcmd.c help string)
_NWM_RESTART_MS = const(1500)  # RUI3 restarts after a work-mode change (At_NwkWorkMode: udrv_system_reboot)
_G1_HZ = const(868100000)  # the default channels 868.1/868.3/868.5 MHz share sub-band g1 (1 %)


def _result():
    return {'ok': False, 'error': None, 'downlinks': [], 'airtime_ms': 0, 'rssi': None, 'snr': None}


def _hex(value, nbytes):
    """Settings value (hex string, any case, or bytes) -> upper-case hex of exactly nbytes, or None."""
    if isinstance(value, (bytes, bytearray)):
        value = hexlify(value).decode()
    if not isinstance(value, str):
        return None
    value = value.strip().upper()
    if len(value) != 2 * nbytes:
        return None
    try:
        unhexlify(value)
    except ValueError:
        return None
    return value


def _signature(text):
    # djb2 over the applied configuration, kept to 24 bits so it stays a small int on a 32-bit port
    h = 5381
    for c in text:
        h = ((h << 5) + h + ord(c)) & 0xFFFFFF
    return h


def _error(status):
    """AT status -> short error reason for the result dict."""
    if status is None:
        return 'no_reply'
    if status == 'AT_NO_NETWORK_JOINED':
        return 'not_joined'
    if status == 'AT_BUSY_ERROR':
        return 'busy'
    if status.startswith('AT_'):
        return status[3:].lower()
    return status.lower()


def parse_downlink(event):
    """'RX_1:<rssi>:<snr>:UNICAST|MULTICAST:<port>:<hex>' (service_lora.c; slot 1, 2, B or C)
    -> (port, payload bytes, rssi, snr), or None when malformed."""
    parts = event.split(':')
    if len(parts) != 6 or not parts[0].startswith('RX_'):
        return None
    try:
        rssi = int(parts[1])
        snr = int(parts[2])
        port = int(parts[4])
        payload = unhexlify(parts[5]) if parts[5] else b''
    except ValueError:
        return None
    if not 0 <= port <= 255:
        return None
    return port, payload, rssi, snr


class RAK3172LoRaWAN:
    """LoRaWAN backend. See radio/__init__.py for the interface and this module's opening for the AT flow.

    settings: dev_eui, app_eui (or join_eui), app_key (hex strings or bytes); band (4 = EU868); adr (True);
      dr (used when adr is off); confirm_retries (1); join_backoff_s (60); join_backoff_cap_s (21600);
      modem_sleep ('sleep': AT+SLEEP after each cycle, 'lpm': AT+LPM=1 once, 'none').
    state keys written: lw_cfg, lw_rejoin, lw_joined, lw_join_fails, lw_join_next_s, lw_cfm, modem_resets,
      modem_error, dc_s, dc_ms.
    """

    def __init__(self, uart, clock, settings, state, reset_pin=None, at=None):
        self.clock = clock
        self.settings = settings
        self.state = state
        self.reset_pin = reset_pin
        self.at = at if at is not None else ATModem(uart, clock)
        self.duty = dutycycle.DutyCycle(state, dutycycle.subband_divisor(_G1_HZ))
        self.last_error = None
        self._awake = False
        self._alive = True

    # -- wake, configuration -------------------------------------------------------------------------------------

    def _wake(self):
        if self._awake:
            return self._alive
        self._awake = True
        how = self.at.revive(self.state, self.reset_pin)
        if how == 'reset':  # a restarted modem: check its configuration again, reselect CFM
            self.state.pop('lw_cfg', None)
            self.state.pop('lw_cfm', None)
        self._alive = how is not None
        if not self._alive:
            self.last_error = 'no_reply'
        return self._alive

    def _wanted(self):
        """[(command, value)] the modem should hold, or None when a key in settings is malformed. Keys missing
        from settings are left as the modem has them (a RAK3172 ships with its own DevEUI)."""
        s = self.settings
        want = [('AT+NWM', '1'),  # 1 = LoRaWAN (atcmd_p2p.c At_NwkWorkMode)
                ('AT+NJM', '1'),  # 1 = OTAA
                ('AT+CLASS', 'A'),
                ('AT+BAND', str(s.get('band', _EU868)))]
        for name, key, nbytes in (('AT+DEVEUI', 'dev_eui', 8),
                                  ('AT+APPEUI', 'app_eui', 8),  # the JoinEUI; RUI3 keeps the 1.0 name
                                  ('AT+APPKEY', 'app_key', 16)):
            raw = s.get(key)
            if raw is None and key == 'app_eui':
                raw = s.get('join_eui')
            if raw is None:
                continue
            value = _hex(raw, nbytes)
            if value is None:
                return None
            want.append((name, value))
        adr = s.get('adr', True)
        want.append(('AT+ADR', '1' if adr else '0'))
        dr = s.get('dr')
        if not adr and dr is not None:
            want.append(('AT+DR', str(dr)))
        if s.get('modem_sleep', 'sleep') == 'lpm':
            want.append(('AT+LPM', '1'))  # automatic low power between commands (atcmd_sleep.c At_AutoSleep)
        return want

    def _configure(self):
        want = self._wanted()
        if want is None:
            self.last_error = 'bad_keys'
            return False
        sig = _signature('|'.join([v for _, v in want]))
        if self.state.get('lw_cfg') == sig:
            return True
        at = self.at
        session_invalid = False
        for name, value in want:
            got = at.query(name)
            if got is not None and got.strip().upper() == value:
                continue
            if name == 'AT+NWM':
                if got is None:  # firmware without work modes: LoRaWAN only
                    continue
                # RUI3 prints OK without CRLF and restarts when the work mode changes (At_NwkWorkMode)
                at.write_line('AT+NWM=1')
                self.clock.sleep_ms(_NWM_RESTART_MS)
                if not at.ping():
                    self.last_error = 'no_reply'
                    return False
                continue
            status, _ = at.command(name + '=' + value, _CMD_MS)
            if status != OK:
                self.last_error = 'config %s %s' % (name, _error(status))
                return False
            if name in ('AT+NJM', 'AT+BAND', 'AT+DEVEUI', 'AT+APPEUI', 'AT+APPKEY'):
                session_invalid = True
        if session_invalid:  # a session made with other keys or band is not ours: join again
            self.state['lw_rejoin'] = True
            self.state['lw_joined'] = False
        self.state['lw_cfg'] = sig
        return True

    # -- join ----------------------------------------------------------------------------------------------------

    def _joined(self):
        st = self.state
        st['lw_joined'] = True
        st['lw_join_fails'] = 0
        st['lw_join_next_s'] = 0
        st.pop('lw_rejoin', None)
        self.last_error = None
        return True

    def _join_failed(self, now_s, reason):
        st = self.state
        n = st.get('lw_join_fails', 0) + 1
        st['lw_join_fails'] = n
        base = self.settings.get('join_backoff_s', _JOIN_BACKOFF_S)
        cap = self.settings.get('join_backoff_cap_s', _JOIN_BACKOFF_CAP_S)
        if not isinstance(base, int) or base < 1:
            base = _JOIN_BACKOFF_S
        if not isinstance(cap, int) or cap < base:
            cap = _JOIN_BACKOFF_CAP_S
        delay = base << (n - 1) if n <= 16 else cap
        if delay > cap:
            delay = cap
        st['lw_join_next_s'] = now_s + delay
        self.last_error = reason
        return False

    def join(self, budget_ms=_JOIN_BUDGET_MS):
        """True when a session is up: asks the modem first (AT+NJS=?), joins only when needed and allowed by the
        backoff, and waits at most `budget_ms` for the JoinAccept."""
        start = self.clock.ticks_ms()
        st = self.state
        if not self._wake() or not self._configure():
            st['lw_joined'] = False
            return False
        at = self.at
        if at.query('AT+NJS') == '1' and not st.get('lw_rejoin'):
            return self._joined()
        st['lw_joined'] = False
        now = self.clock.time()
        if now < st.get('lw_join_next_s', 0):
            self.last_error = 'join_backoff'
            return False
        at.take_events(('JOIN',))  # leftovers of an earlier attempt
        # 1 = start, 0 = no auto-join at power-up, 8 s period, 0 automatic retries: the backoff is ours
        # (atcmd_join_send.c At_Join; atcmd_join_send_def.h)
        status, _ = at.command('AT+JOIN=1:0:8:0', _CMD_MS)
        if status != OK:
            return self._join_failed(now, 'join_' + _error(status))
        left = budget_ms - self.clock.ticks_diff(self.clock.ticks_ms(), start)
        if left > _JOIN_WAIT_MS:
            left = _JOIN_WAIT_MS
        ev = at.wait_event(('JOINED', 'JOIN_FAILED'), left if left > 0 else 0)
        if ev == 'JOINED':
            return self._joined()
        return self._join_failed(now, ev.lower() if ev else 'join_timeout')

    # -- send ----------------------------------------------------------------------------------------------------

    def _data_rate(self):
        v = self.at.query('AT+DR')
        if v is not None:
            try:
                return int(v)
            except ValueError:
                pass
        dr = self.settings.get('dr')
        return dr if isinstance(dr, int) else 0  # unknown: assume DR0, the strictest limits

    def _set_cfm(self, cfm):
        # AT+CFM lives in the modem's flash (atcmd_join_send.c At_CfMode): read it once when unknown, write it
        # only on change, remember it in state.
        st = self.state
        if st.get('lw_cfm') == cfm:
            return OK
        if 'lw_cfm' in st or self.at.query('AT+CFM') != str(cfm):
            status, _ = self.at.command('AT+CFM=%d' % cfm, _CMD_MS)
            if status != OK:
                return status
        st['lw_cfm'] = cfm
        return OK

    def _send_cmd(self, cmd):
        status = None
        for i in range(_BUSY_TRIES):
            status, _ = self.at.command(cmd, _CMD_MS)
            if status != 'AT_BUSY_ERROR':
                return status
            if i + 1 < _BUSY_TRIES:
                pause = _BUSY_BACKOFF_MS << i
                self.clock.sleep_ms(pause if pause < _BUSY_BACKOFF_CAP_MS else _BUSY_BACKOFF_CAP_MS)
        return status

    def _collect(self, res):
        self.at.poll()
        for ev in self.at.take_events(('RX_',)):
            dl = parse_downlink(ev)
            if dl is None:
                continue
            res['rssi'] = dl[2]
            res['snr'] = dl[3]
            if dl[0]:  # port 0 carries MAC commands only
                res['downlinks'].append((dl[0], dl[1]))

    def send(self, port, payload, confirmed=False):
        """Send one uplink; returns {'ok', 'error', 'downlinks': [(port, bytes)], 'airtime_ms', 'rssi', 'snr'}."""
        res = _result()
        if not isinstance(port, int) or isinstance(port, bool) or not _PORT_MIN <= port <= _PORT_MAX:
            res['error'] = 'bad_port'
            return res
        if not isinstance(payload, (bytes, bytearray)):
            res['error'] = 'bad_payload'
            return res
        n = len(payload)
        if n == 0 or n > _SEND_HEX_MAX:
            res['error'] = 'payload_size'
            return res
        st = self.state
        if not st.get('lw_joined'):
            res['error'] = 'not_joined'
            return res
        if not self._wake():
            res['error'] = 'no_reply'
            return res
        at = self.at
        clock = self.clock
        dr = self._data_rate()
        if n > dutycycle.max_payload(dr):
            res['error'] = 'payload_too_long'
            return res
        airtime = dutycycle.lorawan_airtime_ms(dr, n)
        if self.duty.wait_s(clock.time(), airtime):
            res['error'] = 'duty_cycle'
            return res
        status = self._set_cfm(1 if confirmed else 0)
        if status != OK:
            res['error'] = _error(status)
            return res
        cmd = 'AT+SEND=%d:%s' % (port, hexlify(payload).decode().upper())
        tries = 1
        if confirmed:
            retries = self.settings.get('confirm_retries', _CONFIRM_RETRIES)
            tries += retries if isinstance(retries, int) and 0 <= retries <= 7 else _CONFIRM_RETRIES
        for attempt in range(tries):
            if attempt:
                wait = self.duty.wait_s(clock.time(), airtime)
                if wait > _RETRY_WAIT_CAP_S:
                    break
                clock.sleep_ms(wait * 1000 if wait else _BUSY_BACKOFF_MS << attempt)
            at.take_events(('TX_DONE', 'SEND_CONFIRMED'))  # stale completions must not end this send
            status = self._send_cmd(cmd)
            if status != OK:
                res['error'] = _error(status)
                if status == 'AT_NO_NETWORK_JOINED':
                    st['lw_joined'] = False
                break
            self.duty.record(clock.time(), airtime)
            res['airtime_ms'] += airtime
            if not confirmed:
                # RUI3 >= 3.5.5/4.0.2 prints +EVT:TX_DONE after the RX windows; older firmware prints nothing
                # for unconfirmed uplinks, so the timeout just marks the end of the RX windows.
                at.wait_event(('TX_DONE',), airtime + _TX_DONE_MS)
                self._collect(res)
                res['ok'] = True
                res['error'] = None
                break
            ev = at.wait_event(('SEND_CONFIRMED_OK', 'SEND_CONFIRMED_FAILED'), airtime + _CONFIRM_MS)
            self._collect(res)
            if ev == 'SEND_CONFIRMED_OK':
                res['ok'] = True
                res['error'] = None
                break
            res['error'] = 'confirm_failed' if ev else 'timeout'
        return res

    # -- sleep ---------------------------------------------------------------------------------------------------

    def sleep(self):
        """AT+SLEEP until the next wake (or nothing when AT+LPM=1 does it). False when the modem refused."""
        mode = self.settings.get('modem_sleep', 'sleep')
        if mode != 'sleep':
            return True
        if self._awake and not self._alive:
            return False
        return self.at.sleep()
