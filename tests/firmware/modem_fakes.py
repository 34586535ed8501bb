# Fake RAK3172 modems (RUI3 AT firmware) on the far end of a FakeUART. Runs under MicroPython and CPython.
#
# FakeRAK3172   a small model of the modem: queries answer from `values` the way RUI3 prints them
#               ("AT+NJS=1" then "OK"), settings are stored and recorded in `writes` (flash writes), AT+JOIN,
#               AT+SEND, AT+PSEND and AT+PRECV produce their +EVT lines after a delay on the virtual clock.
#               script() overrides the reply to a command; echo, silence, garbage and split lines on demand.
# Transcript    replays a recorded exchange from tests/firmware/transcripts/*.txt:
#                 "> line"    what the host must write (without CR LF)
#                 "< line"    what the modem answers (CR LF appended)
#                 "<~ text"   modem bytes sent as they are: \r \n \\ and \xHH escapes, no CR LF appended
#                 "# wait N"  the following modem lines come N ms later (on the virtual clock, cumulative)
#                 "# ..."     a comment; blank lines are ignored
#               Modem lines come out after the host line they follow; those before the first host line at once.
#               `host` collects what the host wrote; `ok()` says whether it was exactly the "> " lines.

from binascii import unhexlify

from fakes import FakeUART

EOL = b'\r\n'


def _unescape(text):
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == '\\' and i + 1 < len(text):
            n = text[i + 1]
            if n == 'r':
                out.append(13)
                i += 2
                continue
            if n == 'n':
                out.append(10)
                i += 2
                continue
            if n == '\\':
                out.append(92)
                i += 2
                continue
            if n == 'x' and i + 3 < len(text):
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
        out.extend(c.encode())
        i += 1
    return bytes(out)


class _LineSplitter:
    """Collects written bytes into command lines (the host ends each with CR LF)."""

    def __init__(self):
        self.buf = bytearray()

    def lines(self, data):
        self.buf.extend(data)
        out = []
        while True:
            i = -1
            for j in range(len(self.buf)):
                if self.buf[j] == 13 or self.buf[j] == 10:
                    i = j
                    break
            if i < 0:
                return out
            line = bytes(self.buf[:i]).decode()
            self.buf = self.buf[i + 1:]
            if line:
                out.append(line)


class FakeRAK3172:
    """A RUI3 modem model. `uart` is the FakeUART to hand to the code under test."""

    def __init__(self, clock, values=None, echo=False, eol=EOL):
        self.clock = clock
        self.uart = FakeUART(self._respond, clock)
        self.values = {'NWM': '1', 'NJM': '1', 'CLASS': 'A', 'BAND': '4', 'DEVEUI': 'AC1F09FFFE000001',
                       'APPEUI': '0000000000000000', 'APPKEY': '00000000000000000000000000000000', 'ADR': '0',
                       'DR': '5', 'NJS': '0', 'CFM': '0', 'RETY': '0', 'LPM': '0',
                       'P2P': '868000000:7:0:0:10:14'}
        if values:
            self.values.update(values)
        self.echo = echo
        self.eol = eol
        self.silent = False  # answers nothing at all
        self.hung = False  # answers nothing until ATZ or a pulse on reset_pin() restarts it
        self.reboots = 0
        self.chunk = 0  # > 0: deliver replies this many bytes at a time, 1 ms apart
        self.commands = []  # every command line received
        self.writes = []  # setting commands that changed a stored value (flash writes on a real RAK3172)
        self.sent = []  # (port, bytes) of AT+SEND, or bytes of AT+PSEND
        self.join_result = 'JOINED'  # or 'JOIN_FAILED_RX_TIMEOUT', or None for no event at all
        self.join_delay_ms = 6000
        self.tx_delay_ms = 2500
        self.tx_done = True  # False: firmware older than 3.5.5/4.0.2, no +EVT:TX_DONE
        self.confirm_results = []  # per confirmed send: True -> SEND_CONFIRMED_OK, False -> ..._FAILED(5)
        self.downlinks = []  # RX event texts (without +EVT:) printed after the next AT+SEND
        self.p2p_rx = []  # RXP2P event texts for the next AT+PRECV windows, one per window
        self._script = []  # [match, lines, events, times]
        self._split = _LineSplitter()

    # -- scripting -----------------------------------------------------------------------------------------------

    def script(self, match, lines, events=(), times=1):
        """Answer the next `times` commands equal to `match` (or starting with it, when it ends in '*') with
        `lines`, then feed each (delay_ms, text) of `events` as '+EVT:text'. times=None: every time."""
        self._script.append([match, list(lines), list(events), times])

    def garbage(self, data, after_ms=0):
        self.uart.feed(data, after_ms)

    def event(self, text, after_ms=0):
        self._out([], [(after_ms, text)])

    # -- the modem -----------------------------------------------------------------------------------------------

    def _out(self, lines, events=()):
        data = bytearray()
        for line in lines:
            data.extend(line if isinstance(line, bytes) else line.encode())
            if not isinstance(line, bytes):
                data.extend(self.eol)
        if data:
            if self.chunk:
                for i in range(0, len(data), self.chunk):
                    self.uart.feed(data[i:i + self.chunk], i // self.chunk)
            else:
                self.uart.feed(data)
        for delay, text in events:
            self.uart.feed(b'+EVT:' + text.encode() + self.eol, delay)

    def _scripted(self, cmd):
        for entry in self._script:
            match, lines, events, times = entry
            hit = cmd.startswith(match[:-1]) if match.endswith('*') else cmd == match
            if hit and (times is None or times > 0):
                if times is not None:
                    entry[3] = times - 1
                return lines, events
        return None

    def reboot(self):
        """Restart: the session is gone, a boot banner comes out (plain lines, not events)."""
        self.hung = False
        self.reboots += 1
        self.values['NJS'] = '0'
        self.uart.feed(b'RAKwireless RAK3172-E Example\r\n------------------------------------------------------\r\n'
                       b'Current Work Mode: LoRaWAN.\r\n', 50)

    def reset_pin(self):
        """A pin wired to the modem's NRST: low then high restarts it."""
        return _ResetPin(self)

    def _respond(self, data):
        for cmd in self._split.lines(data):
            self.commands.append(cmd)
            if self.silent:
                continue
            if self.hung:
                if cmd == 'ATZ':
                    self.reboot()
                continue
            lines = [cmd] if self.echo else []
            got = self._scripted(cmd)
            if got is not None:
                self._out(lines + got[0], got[1])
                continue
            more, events = self._handle(cmd)
            self._out(lines + more, events)
        return None

    def _handle(self, cmd):
        v = self.values
        if cmd == 'AT':
            return ['OK'], ()
        if cmd == 'ATZ':
            self.reboot()
            return [], ()
        if cmd == 'AT+SLEEP':
            return ['OK'], ()
        if not cmd.startswith('AT+') or '=' not in cmd:
            return ['AT_COMMAND_NOT_FOUND'], ()
        name, arg = cmd[3:].split('=', 1)
        if arg == '?':
            if name in v:
                return ['AT+' + name + '=' + v[name], 'OK'], ()
            return ['AT_COMMAND_NOT_FOUND'], ()
        if name == 'JOIN':
            if self.join_result == 'JOINED':
                v['NJS'] = '1'
            ev = () if self.join_result is None else ((self.join_delay_ms, self.join_result),)
            return ['OK'], ev
        if name == 'SEND':
            if v['NWM'] != '1':
                return ['AT_MODE_NO_SUPPORT'], ()
            if v['NJS'] != '1':
                return ['AT_NO_NETWORK_JOINED'], ()
            port, hexdata = arg.split(':')
            self.sent.append((int(port), unhexlify(hexdata)))
            events = [(self.tx_delay_ms - 100, d) for d in self.downlinks]
            self.downlinks = []
            if v['CFM'] == '1':
                ok = self.confirm_results.pop(0) if self.confirm_results else True
                events.append((self.tx_delay_ms, 'SEND_CONFIRMED_OK' if ok else 'SEND_CONFIRMED_FAILED(5)'))
            elif self.tx_done:
                events.append((self.tx_delay_ms, 'TX_DONE'))
            return ['OK'], events
        if name == 'PSEND':
            if v['NWM'] != '0':
                return ['AT_MODE_NO_SUPPORT'], ()
            self.sent.append(arg)
            return ['OK'], ((60, 'TXP2P DONE'),)
        if name == 'PRECV':
            ms = int(arg)
            if self.p2p_rx:
                return ['OK'], ((ms // 2, self.p2p_rx.pop(0)),)
            return ['OK'], ((ms, 'RXP2P RECEIVE TIMEOUT'),)
        if name == 'NWM':
            changed = v.get('NWM') != arg
            v['NWM'] = arg
            if changed:
                self.writes.append(cmd)
                return [b'OK'], ()  # RUI3 prints OK without CR LF and restarts (At_NwkWorkMode)
            return ['OK'], ()
        if name in v:
            if v[name] != arg:
                self.writes.append(cmd)
            v[name] = arg
            return ['OK'], ()
        return ['AT_COMMAND_NOT_FOUND'], ()


class _ResetPin:
    def __init__(self, rak):
        self.rak = rak
        self.history = []

    def value(self, v=None):
        if v is None:
            return self.history[-1] if self.history else 1
        v = 1 if v else 0
        if v and self.history and self.history[-1] == 0:
            self.rak.reboot()
        self.history.append(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class Transcript:
    """Replays a recorded AT exchange; see the opening comment for the file format."""

    def __init__(self, clock, text):
        self.clock = clock
        self.uart = FakeUART(self._respond, clock)
        self.steps = []  # ('>', line) | ('<', bytes) | ('wait', ms)
        for raw in text.split('\n'):
            line = raw.rstrip('\r')
            if not line.strip():
                continue
            if line.startswith('# wait '):
                self.steps.append(('wait', int(line[7:].strip())))
            elif line.startswith('#'):
                continue
            elif line.startswith('> '):
                self.steps.append(('>', line[2:]))
            elif line.startswith('<~ '):
                self.steps.append(('<', _unescape(line[3:])))
            elif line.startswith('< '):
                self.steps.append(('<', line[2:].encode() + EOL))
            else:
                raise ValueError('transcript line not understood: ' + repr(line))
        self.expected = [s[1] for s in self.steps if s[0] == '>']
        self.host = []
        self.unexpected = None  # the first host line that did not match
        self._pos = 0
        self._split = _LineSplitter()
        self._play()

    def _play(self):
        delay = 0
        while self._pos < len(self.steps) and self.steps[self._pos][0] != '>':
            kind, value = self.steps[self._pos]
            if kind == 'wait':
                delay += value
            else:
                self.uart.feed(value, delay)
            self._pos += 1

    def _respond(self, data):
        for line in self._split.lines(data):
            self.host.append(line)
            if self.unexpected is not None:
                continue
            if self._pos < len(self.steps) and self.steps[self._pos] == ('>', line):
                self._pos += 1
                self._play()
            else:
                self.unexpected = line
        return None

    def ok(self):
        return self.host == self.expected

    def diff(self):
        return 'host wrote ' + repr(self.host) + '\nexpected   ' + repr(self.expected)


def _transcript_dir():
    path = __file__.replace('\\', '/')
    return (path.rsplit('/', 1)[0] if '/' in path else '.') + '/transcripts'


def transcript_names():
    """Names of the recorded transcripts, without .txt."""
    import os

    return sorted([n[:-4] for n in os.listdir(_transcript_dir()) if n.endswith('.txt')])


def transcript_text(name):
    """Text of tests/firmware/transcripts/<name>.txt."""
    with open(_transcript_dir() + '/' + name + '.txt') as f:
        return f.read()


def replay(clock, name):
    return Transcript(clock, transcript_text(name))
