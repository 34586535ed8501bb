# The AT line protocol of RAKwireless RUI3 modems (RAK3172 and the other RUI3 parts) over a UART.
#
# RUI3 AT Command Manual (docs.rakwireless.com/RUI3/Serial-Operating-Modes/AT-Command-Manual/) and the RUI3
# source (RAKWireless/RAK-STM32-RUI, cores/STM32WLE/component/service/mode/cli/):
#   host  -> "AT+CMD=<args>\r\n", one command at a time; the next one only after the final status.
#   modem -> the command echoed back when echo is on (ATE toggles it),
#            value lines: "AT+CMD=<value>" (RUI3 >= 3.2.0 prints the command name, atcmd_*.c "%s=") or a bare
#            "<value>" (older firmware),
#            one final status: "OK" or an entry of atcmd.c atcmd_err_tbl,
#            asynchronous "+EVT:..." lines at any moment, even between the echo and the status
#            (service_lora.c, service_lora_p2p.c).
# Lines may end in CR, LF or both; bytes outside printable ASCII are dropped and counted. Everything is bounded:
# one line buffer, a short queue of pending lines and of events. Nothing here raises on what the modem sends.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_LINE_MAX = const(560)  # longest line kept: "+EVT:RXP2P:<rssi>:<snr>:" + 255 bytes of hex; AT+SEND hex <= 500
_LINES_MAX = const(6)  # value lines waiting for the current command
_EVENTS_MAX = const(6)  # +EVT lines waiting for the caller
_VALUES_MAX = const(4)  # value lines kept per command
_CHUNK = const(64)  # bytes per uart.read()
_READ_MAX = const(1200)  # bytes per poll(), so a babbling modem cannot hold the caller past its deadline
_POLL_MS = const(5)  # sleep between polls of a quiet UART
_CMD_MS = const(1500)  # default wait for a final status
_SETTLE_MS = const(20)  # after a wake-up ping: room for a late reply line to arrive and be dropped
_BOOT_MS = const(1500)  # RUI3 restart after ATZ or a reset pulse, until it takes commands again
_RESET_PULSE_MS = const(10)  # NRST held low (the STM32WLE5 reset input is active low)
_SLEEP_ACK_MS = const(200)  # how long to look for an immediate refusal of AT+SLEEP
_CR = const(13)
_LF = const(10)
_PLUS = const(43)  # '+', first byte of an event line

OK = 'OK'
EVT = '+EVT:'

# atcmd.c atcmd_err_tbl, in order. A final status is one of these, or any other "AT_..." word (older firmware had
# AT_DUTYCYLE_RESTRICTED, sic).
STATUSES = ('OK', 'AT_ERROR', 'AT_PARAM_ERROR', 'AT_BUSY_ERROR', 'AT_TEST_PARAM_OVERFLOW', 'AT_NO_CLASSB_ENABLE',
            'AT_NO_NETWORK_JOINED', 'AT_RX_ERROR', 'AT_MODE_NO_SUPPORT', 'AT_COMMAND_NOT_FOUND',
            'AT_UNSUPPORTED_BAND')


def is_status(line):
    """True for a final status line: OK or an AT_<WORD> error."""
    if line in STATUSES:
        return True
    if not line.startswith('AT_') or len(line) < 4:
        return False
    for c in line[3:]:
        if not ('A' <= c <= 'Z' or c == '_'):
            return False
    return True


def _starts(text, prefixes):
    for p in prefixes:
        if text.startswith(p):
            return True
    return False


class ATModem:
    """Send AT commands and read their replies; queue +EVT lines for wait_event()/take_events()."""

    def __init__(self, uart, clock):
        self.uart = uart
        self.clock = clock
        self._line = bytearray(_LINE_MAX)
        self._n = 0
        self._overlong = False
        self._lines = []  # complete non-event lines not yet consumed by command()
        self.events = []  # '+EVT:' lines without the prefix, oldest first
        self.garbage = 0  # bytes dropped: non-printable, or part of an overlong line
        self.dropped = 0  # lines or events dropped because their queue was full
        self.echo = False  # the modem was seen echoing a command
        self.last_status = None

    # -- reading -------------------------------------------------------------------------------------------------

    def poll(self):
        """Read what the UART holds now, without waiting; return the number of bytes read."""
        got = 0
        while got < _READ_MAX:
            try:
                n = self.uart.any()
                if not n:
                    break
                data = self.uart.read(n if n < _CHUNK else _CHUNK)
            except OSError:
                break
            if not data:
                break
            got += len(data)
            self._feed(data)
        return got

    def _feed(self, data):
        for b in data:
            if b == _CR or b == _LF:  # CR, LF, CRLF and LFCR all end a line; empty lines vanish
                if self._overlong:
                    self._overlong = False
                    self._n = 0
                elif self._n:
                    self._end_line()
            elif 32 <= b < 127:
                if self._n < _LINE_MAX:
                    self._line[self._n] = b
                    self._n += 1
                else:
                    self._overlong = True
                    self.garbage += 1
            else:
                self.garbage += 1

    def _end_line(self):
        line = str(memoryview(self._line)[:self._n], 'ascii')  # printable ASCII only, so this cannot fail
        self._n = 0
        if line.startswith(EVT):
            self._push(self.events, line[len(EVT):], _EVENTS_MAX)
        else:
            self._push(self._lines, line, _LINES_MAX)

    def _push(self, queue, item, limit):
        if len(queue) >= limit:
            queue.pop(0)  # keep the newest: a final status matters more than old noise
            self.dropped += 1
        queue.append(item)

    def _elapsed(self, start):
        return self.clock.ticks_diff(self.clock.ticks_ms(), start)

    def _idle(self):
        if not self.poll():
            self.clock.sleep_ms(_POLL_MS)

    # -- commands ------------------------------------------------------------------------------------------------

    def write_line(self, cmd):
        """Write `cmd` + CRLF; False when the UART refused it."""
        try:
            self.uart.write((cmd + '\r\n').encode())
        except OSError:
            return False
        return True

    def command(self, cmd, timeout_ms=_CMD_MS):
        """Send `cmd` and collect its reply: (status, values).

        status is 'OK', an 'AT_...' error, or None when no final status came within `timeout_ms`. values are the
        value lines, with the echoed command name ("AT+DEVEUI=") taken off when RUI3 printed it.
        """
        self.poll()
        if self._lines:  # replies that arrived before this command belong to an earlier one
            self._lines = []
        if self._n and self._line[0] != _PLUS:  # an unfinished line that is not an event ('+') is noise: drop it,
            self.garbage += self._n  # or it would glue itself to the reply
            self._n = 0
        values = []
        self.last_status = None
        if not self.write_line(cmd):
            return None, values
        eq = cmd.find('=')
        prefix = (cmd[:eq] if eq > 0 else cmd) + '='
        start = self.clock.ticks_ms()
        while True:
            while self._lines:
                line = self._lines.pop(0)
                if line == cmd:  # echo (ATE)
                    self.echo = True
                    continue
                if is_status(line):
                    self.last_status = line
                    return line, values
                if line.startswith(prefix):
                    line = line[len(prefix):]
                if len(values) < _VALUES_MAX:
                    values.append(line)
            if self._elapsed(start) >= timeout_ms:
                return None, values
            self._idle()

    def query(self, name, timeout_ms=_CMD_MS):
        """Value of `name` ('AT+NJS' sends 'AT+NJS=?'), or None when the modem did not answer OK with a value."""
        status, values = self.command(name + '=?', timeout_ms)
        if status == OK and values:
            return values[0]
        return None

    def ping(self, tries=3, timeout_ms=300, backoff_ms=50):
        """'AT' -> 'OK' within `tries` attempts, the pause doubling between them. True when the modem answered."""
        for i in range(tries):
            status, _ = self.command('AT', timeout_ms)
            if status == OK:
                return True
            if i + 1 < tries:
                self.clock.sleep_ms(backoff_ms << i)
        return False

    def settle(self, ms):
        """Read for `ms`, keeping events and dropping stray reply lines (a late OK, a boot banner)."""
        start = self.clock.ticks_ms()
        while self._elapsed(start) < ms:
            self._idle()
        self.poll()
        if self._lines:
            self._lines = []

    # -- events --------------------------------------------------------------------------------------------------

    def take_event(self, prefixes):
        """Remove and return the oldest queued event starting with one of `prefixes`, or None."""
        if isinstance(prefixes, str):
            prefixes = (prefixes,)
        for i in range(len(self.events)):
            if _starts(self.events[i], prefixes):
                return self.events.pop(i)
        return None

    def take_events(self, prefixes):
        """Remove and return all queued events starting with one of `prefixes`, oldest first."""
        out = []
        while True:
            e = self.take_event(prefixes)
            if e is None:
                return out
            out.append(e)

    def wait_event(self, prefixes, timeout_ms):
        """Wait up to `timeout_ms` for an event starting with one of `prefixes` ('JOINED', 'TX_DONE', ...; without
        '+EVT:'). Returns it, or None on timeout. Other events stay queued; stray reply lines are dropped."""
        start = self.clock.ticks_ms()
        while True:
            e = self.take_event(prefixes)
            if e is not None:
                return e
            if self._elapsed(start) >= timeout_ms:
                return None
            self._idle()
            if self._lines:
                self._lines = []

    # -- modem life cycle (RUI3) ---------------------------------------------------------------------------------

    def revive(self, state, reset_pin=None, boot_ms=_BOOT_MS):
        """Make sure the modem answers at the start of a wake.

        Pings it; when it stays silent, resets it once (reset_pin pulsed low, else ATZ, atcmd.c) and pings again.
        Returns 'ok', 'reset' (it answers after a reset: a session or runtime setting may be gone) or None (still
        silent). state['modem_resets'] counts the resets; state['modem_error'] says whether it is answering.
        """
        if self.ping():
            # RUI3 prints the OK of "AT+SLEEP" only once it wakes up (atcmd_sleep.c: udrv_sleep_ms(0), then
            # AT_OK), so the first characters of a wake may draw two OKs: drop the spare one.
            self.settle(_SETTLE_MS)
            state['modem_error'] = False
            return 'ok'
        state['modem_resets'] = state.get('modem_resets', 0) + 1
        if reset_pin is not None:
            reset_pin.off()
            self.clock.sleep_ms(_RESET_PULSE_MS)
            reset_pin.on()
        else:
            self.write_line('ATZ')
        self.clock.sleep_ms(boot_ms)
        self.settle(_SETTLE_MS)  # boot banner
        self.events = []
        if self.ping():
            state['modem_error'] = False
            return 'reset'
        state['modem_error'] = True
        return None

    def sleep(self, tries=3, backoff_ms=500):
        """AT+SLEEP (no timeout: sleeps until UART input wakes it, atcmd_sleep.c). RUI3 may print the OK only on
        waking, so silence counts as asleep. Busy (RX windows still open) is retried with a doubling pause."""
        for i in range(tries):
            status, _ = self.command('AT+SLEEP', _SLEEP_ACK_MS)
            if status == OK or status is None:
                return True
            if status != 'AT_BUSY_ERROR':
                return False
            if i + 1 < tries:
                self.clock.sleep_ms(backoff_ms << i)
        return False
