# SDI-12 digital probes (TRUEBNER SMT100, METER TEROS 11/12, Campbell CS650 class) on the half-duplex
# SDI-12 data line. Protocol: SDI-12 Support Group, "SDI-12 A Serial-Digital Interface Standard for
# Microprocessor-Based Sensors", version 1.4 (cited by section title; the section numbers used, §3
# electrical interface, §4.1 baud rate and byte frame format and §4.4.12 CRC, were checked against the
# specification's table of contents and two independent CRC implementations).
#
# Electrical (SDI-12 §3, §4.1; EnviroDIY Arduino-SDI-12 src/SDI12.h): one data line, 1200 baud, 7 data
# bits, even parity, 1 stop bit, inverted logic (marking = 1 = -0.5..1 V, spacing = 0 = 3.5..5.5 V).
#
# The line object, supplied by the hardware layer (hal/esp32.py: a UART at 1200 baud, bits=7, parity=0,
# invert=UART.INV_TX | UART.INV_RX, with a 5 V half-duplex level stage; hal/unix.py: a serial port or an
# emulated sensor), has three methods:
#
#   line.send_break(ms)                hold the line at spacing (+5 V) for `ms` ms, then release it to
#                                      marking. Not UART.sendbreak(): on the ESP32 that drives TX low for
#                                      13 bit times (~10.8 ms at 1200 baud) and bypasses `invert`.
#   line.write(buf)                    transmit the command and return once it is on the wire, with the
#                                      line turned round to receive.
#   line.read_until(end, timeout_ms)   -> bytes: what the sensor sent, up to and including `end`
#                                      (b'\r\n'), or whatever arrived before timeout_ms ran out (b'' or
#                                      None for nothing). On a one-wire bus the echo of our own command
#                                      should be dropped by the line; the driver strips one it still sees.
#
# Every command (SDI-12 "Timing"; Arduino-SDI-12): break >= 12 ms, marking >= 8.33 ms, then the
# command; the sensor answers within 15 ms, at 8.33 ms per character. A break before every command is
# always allowed; the SMT100 needs one before aD0! as well (CNSSRF firmware, truebnersmt100sdi12.cpp).
# A break aborts an aM! measurement that is still running (Campbell Scientific SDI-12 notes, "Stopping a
# measurement command"), so none is sent while waiting for the service request.
#
#   ?!      address query              reply  a<CR><LF>
#   a!      acknowledge active         reply  a<CR><LF>
#   aI!     send identification        reply  allccccccccmmmmmmvvvxxxxxxxxxxxxx<CR><LF>: SDI-12 version,
#                                      vendor (8), model (6), sensor version (3), optional serial
#   aM!     start measurement          reply  atttn<CR><LF>: ttt s until ready, n values (1 digit)
#           then the service request   a<CR><LF> when the data are ready (or wait ttt s)
#   aMC!    start measurement, CRC     as aM!, and every aDx! reply carries a CRC (SDI-12 §4.4.12)
#   aD0!..aD9!  send data              reply  a<values>[CRC]<CR><LF>, values like +1.23-4.5: each a sign,
#                                      1..7 digits and an optional decimal point ("Send Data command")
#
# CRC (SDI-12 §4.4.12.1): CRC-16 with the reflected polynomial 0xA001 and initial value 0 (CRC-16/ARC),
# over the reply from the address to the last value character, sent as three printable characters:
#   0x40 | (crc >> 12), 0x40 | ((crc >> 6) & 0x3F), 0x40 | (crc & 0x3F)
# e.g. '0+3.14' -> 'OqZ'. A mismatch retries the aDx! command, then gives
# 'sensor_fault' with error 'crc'.
#
# Retries (SDI-12 "Retries"): up to 3 retries per command, each after a growing pause and a fresh break.
#
# Values to spec fields: `fields` maps value positions to spec field names, each entry one of
#   None                        ignore this value
#   'name'                      the value as it is
#   ('name', scale[, offset])   value * scale + offset
# Presets below: SMT100, TEROS12 (the mineral-soil calibration turns raw counts into VWC), CS650. All
# values also come back in 'raw_values'. 'vwc_pct' is clamped to 0..100 % with 'out_of_range'.
#
# Errors ('sensor_fault' with 'error'): 'timeout' (no reply), 'garbage' (unparseable reply), 'address'
# (another address answered), 'crc', 'no_data' (the sensor has no values), 'count' (fewer values than
# the mapping needs), 'slow' (ttt longer than max_wait_s), 'bus' (exception from the line or pins),
# 'config' (bad address or field mapping).

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_CRC_POLY = const(0xA001)  # SDI-12 §4.4.12.1, reflected CRC-16
_CRC_CHAR = const(0x40)
_CRC_MASK6 = const(0x3F)
_BREAK_MS = const(13)  # >= 12 ms spacing (SDI-12 "Break"), with margin
_MARKING_MS = const(9)  # >= 8.33 ms marking after the break (SDI-12 "Timing")
_FIRST_CHAR_MS = const(20)  # the sensor starts replying within 15 ms (SDI-12 "Timing"), with margin
_CHAR_MS = const(9)  # 10 bits at 1200 baud = 8.33 ms
_ACK_CHARS = const(3)  # a<CR><LF>
_M_CHARS = const(7)  # atttn<CR><LF>
_I_CHARS = const(35)  # a + 2 + 8 + 6 + 3 + up to 13 + <CR><LF>
_D_CHARS = const(81)  # a + up to 75 value characters + CRC + <CR><LF>
_SR_MARGIN_MS = const(100)  # grace after ttt for the service request
_MAX_RETRIES = const(3)  # SDI-12 "Retries"
_BACKOFF_MS = const(20)
_MAX_DIGITS = const(7)  # SDI-12 "Send Data command": sign + up to 7 digits + optional point
_DATA_PAGES = const(10)  # aD0! .. aD9!
_WARMUP_MS = const(500)
_MAX_WAIT_S = const(15)
_VWC_MAX = const(100)

_CRLF = b'\r\n'

# Value positions of the aM! reply, as data. Check them against the probe's own manual and firmware.
# TRUEBNER SMT100: volumetric water content %, temperature C (further values, if the firmware sends
# any, land in raw_values). Not verified against a TRUEBNER document: one public driver (CNSSRF
# firmware, truebnersmt100sdi12.cpp) reads five values from aM! instead (counts, permittivity, VWC,
# temperature, voltage), for which the mapping is (None, None, 'vwc_pct', 'soil_temperature_c').
SMT100 = ('vwc_pct', 'soil_temperature_c')
# METER TEROS 12: calibrated counts, temperature C, bulk EC uS/cm (TEROS 12 integrator guide). VWC from
# the mineral-soil calibration, theta = 3.879e-4 * RAW - 0.6956 m3/m3 (TEROS 12 manual §4.1.1, eq. 5),
# in percent: 0.03879 * RAW - 69.56.
TEROS12 = (('vwc_pct', 0.03879, -69.56), 'soil_temperature_c', 'soil_ec_us_cm')
# Campbell CS650: VWC m3/m3, EC dS/m, temperature C (help.campbellsci.com, CS650 SDI-12 commands).
CS650 = (('vwc_pct', 100), ('soil_ec_us_cm', 1000), 'soil_temperature_c')


def crc16(data, crc=0):
    """SDI-12 CRC-16 (polynomial 0xA001 reflected, initial 0) of bytes."""
    for b in data:
        crc ^= b
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ _CRC_POLY
            else:
                crc >>= 1
    return crc


def crc_ascii(crc):
    """The three printable CRC characters (SDI-12 §4.4.12)."""
    return bytes((_CRC_CHAR | (crc >> 12), _CRC_CHAR | ((crc >> 6) & _CRC_MASK6), _CRC_CHAR | (crc & _CRC_MASK6)))


def parse_values(text):
    """'+1.23-4.5+7' -> [1.23, -4.5, 7] (ints without a decimal point); None when malformed."""
    values = []
    n = len(text)
    i = 0
    while i < n:
        sign = text[i]
        if sign != '+' and sign != '-':
            return None
        j = i + 1
        digits = 0
        points = 0
        while j < n:
            c = text[j]
            if c == '+' or c == '-':
                break
            if c == '.':
                points += 1
            elif '0' <= c <= '9':
                digits += 1
            else:
                return None
            j += 1
        if digits == 0 or digits > _MAX_DIGITS or points > 1:
            return None
        token = text[i + 1:j]
        v = float(token) if points else int(token)
        values.append(-v if sign == '-' else v)
        i = j
    return values


def _valid_address(a):
    return type(a) is str and len(a) == 1 and ('0' <= a <= '9' or 'A' <= a <= 'Z' or 'a' <= a <= 'z')


def _mapping(fields):
    """fields -> list of (name, scale, offset) or None per position; None when malformed."""
    out = []
    try:
        for f in fields:
            if f is None:
                out.append(None)
            elif type(f) is str:
                out.append((f, None, 0))
            elif 2 <= len(f) <= 3 and type(f[0]) is str:
                out.append((f[0], f[1], f[2] if len(f) == 3 else 0))
            else:
                return None
    except Exception:  # noqa: BLE001 - a malformed mapping is a config error, reported by measure()
        return None
    return out


class SDI12:
    """SDI-12 probe: measure() -> {<mapped fields>, 'raw_values', 'flags', 'error'}."""

    def __init__(self, line, clock, address='0', fields=SMT100, measurement=0, crc=False, retries=_MAX_RETRIES,
                 power_pin=None, warmup_ms=_WARMUP_MS, max_wait_s=_MAX_WAIT_S):
        self._line = line
        self._clock = clock
        self._map = _mapping(fields)
        self._config_ok = (_valid_address(address) and self._map is not None and type(measurement) is int
                           and 0 <= measurement <= 9)
        self.address = address if self._config_ok else '0'
        a = self.address.encode()
        self._addr = a[0]
        self._crc = bool(crc)
        m = a + (b'MC' if crc else b'M')
        if self._config_ok and measurement:
            m += str(measurement).encode()
        self._cmd_m = m + b'!'
        self._cmd_d = bytearray(a + b'D0!')  # the page digit is patched in place for aD0! .. aD9!
        self._attempts = 1 + (retries if type(retries) is int and 0 <= retries <= _MAX_RETRIES else _MAX_RETRIES)
        self._power = power_pin
        self._warmup_ms = warmup_ms
        self._max_wait_s = max_wait_s

    # -- one command on the wire ---------------------------------------------------------------------------

    def _check(self, reply, cmd, any_address, crc):
        """A raw reply -> (body bytes without <CR><LF> and CRC, None) or (None, error)."""
        if not reply:
            return None, 'timeout'
        # Skip line-turnaround noise (NUL, 0xFF, stray CR/LF) and an echo of our own command.
        i = 0
        while i < len(reply) and not (0x20 < reply[i] < 0x7F):
            i += 1
        if i:
            reply = reply[i:]
        if reply[:len(cmd)] == cmd:
            reply = reply[len(cmd):]
        if not reply:
            return None, 'garbage' if i else 'timeout'
        if reply[-2:] != _CRLF or len(reply) < 3:
            return None, 'garbage'
        body = reply[:-2]
        for c in body:
            if c < 0x20 or c > 0x7E:
                return None, 'garbage'
        a = body[0]
        if not (0x30 <= a <= 0x39 or 0x41 <= a <= 0x5A or 0x61 <= a <= 0x7A):
            return None, 'garbage'  # not an address character (SDI-12 addresses: 0-9, A-Z, a-z)
        if not any_address and a != self._addr:
            return None, 'address'
        if crc:
            if len(body) < 4 or crc_ascii(crc16(body[:-3])) != body[-3:]:
                return None, 'crc'
            body = body[:-3]
        return body, None

    def _send(self, cmd, chars, any_address=False, crc=False):
        """Send one command with break and retries: (reply body bytes, None) or (None, error)."""
        line = self._line
        clock = self._clock
        error = 'timeout'
        for attempt in range(self._attempts):
            if attempt:
                clock.sleep_ms(_BACKOFF_MS * attempt)
            line.send_break(_BREAK_MS)
            clock.sleep_ms(_MARKING_MS)
            line.write(cmd)
            reply = line.read_until(_CRLF, _FIRST_CHAR_MS + _CHAR_MS * chars)
            body, error = self._check(reply, cmd, any_address, crc)
            if error is None:
                return body, None
        return None, error

    # -- measurement ----------------------------------------------------------------------------------------

    def _read_values(self):
        """aM!/aMC!, the service request, aD0!..: (values, error); values may be partial on error."""
        body, error = self._send(self._cmd_m, _M_CHARS)
        if error is not None:
            return [], error
        rest = body[1:]
        if len(rest) != 4:
            return [], 'garbage'
        for c in rest:
            if c < 0x30 or c > 0x39:
                return [], 'garbage'
        ttt = (rest[0] - 0x30) * 100 + (rest[1] - 0x30) * 10 + rest[2] - 0x30
        n = rest[3] - 0x30
        if n == 0:
            return [], 'no_data'
        if ttt > self._max_wait_s:
            return [], 'slow'
        if ttt:
            # SDI-12 "Start Measurement command": the sensor sends the service request a<CR><LF> when its
            # data are ready, at the latest after ttt seconds. Whatever comes (or nothing), they are due.
            self._line.read_until(_CRLF, ttt * 1000 + _SR_MARGIN_MS)
        values = []
        cmd = self._cmd_d
        for page in range(_DATA_PAGES):
            cmd[2] = 0x30 + page
            body, error = self._send(cmd, _D_CHARS, crc=self._crc)
            if error is not None:
                return values, error
            got = parse_values(body[1:].decode())
            if got is None:
                return values, 'garbage'
            if not got:
                break  # an empty page (a<CR><LF>) means no more values
            values.extend(got)
            if len(values) >= n:
                break
        if not values:
            return values, 'no_data'
        if len(values) < n:
            return values, 'count'
        return values[:n], None

    def _power_on(self):
        if self._power is not None:
            self._power.on()
            self._clock.sleep_ms(self._warmup_ms)

    def _power_off(self):
        if self._power is not None:
            try:
                self._power.off()
            except Exception:  # noqa: BLE001 - a failing pin must not turn a reading into an exception
                pass

    def measure(self):
        flags = []
        out = {'raw_values': [], 'flags': flags, 'error': None}
        mapping = self._map or ()
        for m in mapping:
            if m is not None:
                out[m[0]] = None
        if not self._config_ok:
            flags.append('sensor_fault')
            out['error'] = 'config'
            return out
        try:
            self._power_on()
            values, error = self._read_values()
        except Exception:  # noqa: BLE001 - driver contract: bus exceptions become flags
            values, error = [], 'bus'
        finally:
            self._power_off()
        out['raw_values'] = values
        for i in range(len(mapping)):
            m = mapping[i]
            if m is None:
                continue
            if i >= len(values):
                if error is None:
                    error = 'count'
                continue
            v = values[i]
            if m[1] is not None:
                v = v * m[1] + m[2]
            if m[0] == 'vwc_pct' and (v < 0 or v > _VWC_MAX):
                if 'out_of_range' not in flags:
                    flags.append('out_of_range')
                v = 0 if v < 0 else _VWC_MAX
            out[m[0]] = v
        if error is not None:
            flags.append('sensor_fault')
            out['error'] = error
        return out

    # -- commissioning helpers (never raise; the probe must be powered or have a power_pin) --------------

    def _one(self, cmd, chars, any_address=False):
        try:
            self._power_on()
            return self._send(cmd, chars, any_address)
        except Exception:  # noqa: BLE001 - bus exceptions become an error result
            return None, 'bus'
        finally:
            self._power_off()

    def acknowledge(self):
        """a! -> True when the probe at this address answers."""
        body, error = self._one(self.address.encode() + b'!', _ACK_CHARS)
        return error is None and len(body) == 1

    def query_address(self):
        """?! -> the address of the only probe on the bus, or None. With several probes the replies
        collide (SDI-12 "Address Query command")."""
        body, error = self._one(b'?!', _ACK_CHARS, any_address=True)
        if error is not None or len(body) != 1:
            return None
        return body.decode()

    def identify(self):
        """aI! -> {'sdi12_version', 'vendor', 'model', 'version', 'serial'} or None ("Send Identification")."""
        body, error = self._one(self.address.encode() + b'I!', _I_CHARS)
        if error is not None or len(body) < 20:
            return None
        text = body.decode()
        return {'sdi12_version': text[1:3], 'vendor': text[3:11].strip(), 'model': text[11:17].strip(),
                'version': text[17:20], 'serial': text[20:].strip()}
