# citynode payload codec: a small interpreter over the tables generated from codecs/spec/citynode.json.
#
# Runs unchanged on MicroPython (the node encodes uplinks and decodes downlinks) and on CPython (the
# bridge decodes uplinks and encodes downlinks). No typing, no dataclasses, no f-string format specs
# with rounding ties, and `isinstance(True, int)` is False on MicroPython, so bools are tested first.
#
# Bit layout rules (codecs/README.md): MSB-first bit stream, a 4-bit format code first, the last byte
# padded with zero bits. A payload is held as one big integer so that every field is a shift and a mask.

from . import _tables as T

NUM = 0
ENUM = 1
BOOL = 2
SEMVER = 3

OP_FIELD = 0
OP_OPTIONAL = 1
OP_PRESENCE = 2
OP_FLAGS = 3
OP_SWITCH = 4
OP_SERIES = 5

# Field tuple indexes (see _tables.py).
_NAME = 0
_KIND = 1
_BITS = 2
_MUL = 3
_DIV = 4
_OFF = 5
_LO = 6
_HI = 7
_MISSING = 8
_DEFAULT = 9
_VALUES = 10
_DEC = 11
_LO_TXT = 12
_HI_TXT = 13

# Message tuple indexes.
M_NAME = 0
M_DIR = 1
M_FPORT = 2
M_FORMAT = 3
M_VERSION = 4
M_LAYOUT = 5

UPLINK = 0
DOWNLINK = 1

_WIDTH_BITS = 4  # delta width field in a series
_MAX_INT = 9007199254740992  # 2**53: the largest integer JavaScript holds exactly


class CodecError(ValueError):
    """A payload or a value that the spec does not allow. str(e) is the public error text."""


def _err(key, **kw):
    return CodecError(T.ERRORS[key].format(**kw))


def _fmt(value, dec):
    # Decimal places follow the field's resolution, so a value derived from a raw code never sits on
    # a rounding tie and CPython, MicroPython and JavaScript print the same text.
    if dec == 0:
        return str(int(value)) if value == int(value) else ('%.1f' % value)
    return ('%.' + str(dec) + 'f') % value


# ---------------------------------------------------------------------------------------------
# Decoding


class _Reader:
    def __init__(self, payload, message):
        self.n = int.from_bytes(bytes(payload), 'big')
        self.total = len(payload) * 8
        self.pos = 0
        self.length = len(payload)
        self.message = message

    def read(self, bits, what):
        pos = self.pos + bits
        if pos > self.total:
            raise _err('truncated', message=self.message, length=self.length, field=what)
        self.pos = pos
        return (self.n >> (self.total - pos)) & ((1 << bits) - 1)


def _decode_value(f, raw, message):
    kind = f[_KIND]
    if kind == NUM:
        if raw == f[_MISSING]:
            return None
        if raw < f[_LO] or raw > f[_HI]:
            v = (raw + f[_OFF]) * f[_MUL] / f[_DIV]
            raise _err('range', message=message, field=f[_NAME], value=_fmt(v, f[_DEC]),
                       min=f[_LO_TXT], max=f[_HI_TXT])
        if f[_DIV] == 1:
            return (raw + f[_OFF]) * f[_MUL]
        return (raw + f[_OFF]) * f[_MUL] / f[_DIV]
    if kind == ENUM:
        values = f[_VALUES]
        if raw >= len(values):
            raise _err('code', message=message, field=f[_NAME], code=raw)
        return values[raw]
    if kind == BOOL:
        return raw == 1
    # SEMVER: bits split into major.minor.patch
    parts = f[_VALUES]
    a = raw >> (parts[1] + parts[2])
    b = (raw >> parts[2]) & ((1 << parts[1]) - 1)
    c = raw & ((1 << parts[2]) - 1)
    return '%d.%d.%d' % (a, b, c)


def _decode_ops(ops, r, data, present, message):
    for op in ops:
        code = op[0]
        if code == OP_FIELD:
            f = op[1]
            data[f[_NAME]] = _decode_value(f, r.read(f[_BITS], f[_NAME]), message)
        elif code == OP_OPTIONAL:
            f = op[1]
            if present[f[_NAME]]:
                data[f[_NAME]] = _decode_value(f, r.read(f[_BITS], f[_NAME]), message)
        elif code == OP_PRESENCE:
            for name in op[1]:
                present[name] = r.read(1, 'presence') == 1
        elif code == OP_FLAGS:
            bits = r.read(op[1], 'flags')
            names = op[2]
            flags = []
            for i in range(op[1]):
                if bits & (1 << (op[1] - 1 - i)):
                    flags.append(names[i])
            data['flags'] = flags
        elif code == OP_SWITCH:
            _decode_ops(op[2][data[op[1]]], r, data, present, message)
        else:
            _decode_series(op, r, data, present, message)


def _decode_series(op, r, data, present, message):
    count = data[op[2]]
    interval = data.get('sample_interval_s', 0)
    samples = [{'offset_s': (i - count + 1) * interval} for i in range(count)]
    gaps = r.read(1, 'gaps')
    full = (1 << count) - 1
    for f in op[1]:
        name = f[_NAME]
        if name in present and not present[name]:
            continue
        mask = r.read(count, name) if gaps else full
        raw = None
        width = 0
        for i in range(count):
            if not mask & (1 << (count - 1 - i)):
                samples[i][name] = None
                continue
            if raw is None:
                raw = r.read(f[_BITS], name)
                width = r.read(_WIDTH_BITS, name)
            elif width:
                z = r.read(width, name)
                raw += (z >> 1) ^ -(z & 1)
                if raw < 0 or raw >= (1 << f[_BITS]):
                    raise _err('range', message=message, field=name, value='delta', min=f[_LO_TXT],
                               max=f[_HI_TXT])
            samples[i][name] = _decode_value(f, raw, message)
    offset = op[3]
    if offset is not None and present.get(offset):
        # Unevenly spaced samples carry their age; it replaces the spacing-derived offset.
        for i, s in enumerate(samples):
            age = s.pop(offset)
            if age is None:
                # A sample without its time cannot be placed, and no encoder writes one.
                raise _err('sample_age', message=message, index=i, field=offset)
            s['offset_s'] = -age
    data['samples'] = samples


def _decode(msg, payload):
    name = msg[M_NAME]
    if msg[M_LAYOUT] is None:
        from . import cbor
        return cbor.decode_message(payload)
    r = _Reader(payload, name)
    fmt = r.read(T.FORMAT_BITS, 'format')
    if fmt != msg[M_FORMAT]:
        raise _err('format', message=name, format=fmt, expected=msg[M_FORMAT])
    data = {'message': name}
    _decode_ops(msg[M_LAYOUT], r, data, {}, name)
    used = (r.pos + 7) >> 3
    if used != r.length:
        raise _err('length', message=name, expected=used, length=r.length)
    if r.n & ((1 << (r.total - r.pos)) - 1):
        raise _err('padding', message=name)
    return data


def _decode_port(ports, fport, payload):
    try:
        msg = ports.get(fport) if isinstance(fport, int) and not isinstance(fport, bool) else None
        if msg is None:
            raise _err('unknown_fport', fport=fport)
        if not payload:
            raise _err('empty')
        return {'data': _decode(msg, payload)}
    except CodecError as e:
        return {'errors': [str(e)]}
    except Exception as e:  # noqa: BLE001 - a decoder must never raise on input; report instead
        return {'errors': ['internal decoder error: %s' % e]}


_FAST_UP = _FAST_DOWN = {}
try:
    import sys

    # Straight-line decoders generated for CPython (the bridge); the interpreter above stays the reference
    # and produces every error text. Not on MicroPython: the node only encodes, and RAM is precious there.
    if sys.implementation.name != 'micropython':
        from . import _fast

        _FAST_UP = _fast.UPLINK
        _FAST_DOWN = _fast.DOWNLINK
except ImportError:
    pass


_BYTES = (bytes, bytearray)


def decode_uplink(fport, payload):
    """Decode an uplink. Returns {'data': {...}} or {'errors': [...]}; never raises."""
    if payload.__class__ in _BYTES and payload and fport.__class__ is int:
        entry = _FAST_UP.get(fport)
        if entry is not None and payload[0] >> 4 == entry[0]:
            data = entry[1](payload)
            if data is not None:
                return {'data': data}
    return _decode_port(T.UPLINK_PORTS, fport, payload)


def decode_downlink(fport, payload):
    """Decode a downlink (as the node does). Returns {'data': {...}} or {'errors': [...]}."""
    if payload.__class__ in _BYTES and payload and fport.__class__ is int:
        entry = _FAST_DOWN.get(fport)
        if entry is not None and payload[0] >> 4 == entry[0]:
            data = entry[1](payload)
            if data is not None:
                return {'data': data}
    return _decode_port(T.DOWNLINK_PORTS, fport, payload)


# ---------------------------------------------------------------------------------------------
# Encoding


def _is_number(v):
    return not isinstance(v, bool) and isinstance(v, (int, float))


def _encode_value(f, v, message):
    kind = f[_KIND]
    name = f[_NAME]
    if kind == NUM:
        if v is None:
            if f[_MISSING] is None:
                raise _err('type', message=message, field=name, expected='a number')
            return f[_MISSING]
        if not _is_number(v) or v != v or v in (float('inf'), float('-inf')):
            raise _err('type', message=message, field=name, expected='a number')
        x = v * f[_DIV] / f[_MUL] + 0.5
        if x < -_MAX_INT or x > _MAX_INT:
            raise _err('range', message=message, field=name, value=_fmt(v, f[_DEC]), min=f[_LO_TXT],
                       max=f[_HI_TXT])
        fx = int(x)
        raw = (fx - 1 if fx > x else fx) - f[_OFF]  # floor, also for negative x
        if raw < f[_LO] or raw > f[_HI]:
            raise _err('range', message=message, field=name, value=_fmt(v, f[_DEC]), min=f[_LO_TXT],
                       max=f[_HI_TXT])
        return raw
    if kind == ENUM:
        values = f[_VALUES]
        if isinstance(v, str):
            for i in range(len(values)):
                if values[i] == v:
                    return i
        raise _err('type', message=message, field=name, expected='one of ' + ', '.join(values))
    if kind == BOOL:
        if not isinstance(v, bool):
            raise _err('type', message=message, field=name, expected='true or false')
        return 1 if v else 0
    parts = f[_VALUES]
    bad = _err('type', message=message, field=name, expected='a version like 1.2.3')
    if not isinstance(v, str):
        raise bad
    nums = v.split('.')
    if len(nums) != 3:
        raise bad
    raw = 0
    for i in range(3):
        s = nums[i]
        if not s or not s.isdigit() or int(s) >= (1 << parts[i]):
            raise bad
        raw = (raw << parts[i]) | int(s)
    return raw


class _Writer:
    def __init__(self):
        self.n = 0
        self.pos = 0

    def write(self, bits, value):
        self.n = (self.n << bits) | value
        self.pos += bits


def _field_input(f, data, message):
    name = f[_NAME]
    if name in data:
        return data[name]
    if f[_DEFAULT] is not None:
        return f[_DEFAULT]
    if f[_KIND] == NUM and f[_MISSING] is not None:
        return None
    raise _err('missing_field', message=message, field=name)


def _bit_length(x):
    n = 0
    while x:
        x >>= 1
        n += 1
    return n


def _encode_ops(ops, w, data, present, message):
    for op in ops:
        code = op[0]
        if code == OP_FIELD:
            f = op[1]
            w.write(f[_BITS], _encode_value(f, _field_input(f, data, message), message))
        elif code == OP_OPTIONAL:
            f = op[1]
            if present[f[_NAME]]:
                w.write(f[_BITS], _encode_value(f, data[f[_NAME]], message))
        elif code == OP_PRESENCE:
            samples = data.get('samples')
            for name in op[1]:
                here = name in data
                if not here and isinstance(samples, (list, tuple)):
                    for s in samples:
                        if isinstance(s, dict) and name in s:
                            here = True
                            break
                present[name] = here
                w.write(1, 1 if here else 0)
        elif code == OP_FLAGS:
            flags = data.get('flags', ())
            if not isinstance(flags, (list, tuple)):
                raise _err('type', message=message, field='flags', expected='a list of flag names')
            names = op[2]
            bits = 0
            for flag in flags:
                for i in range(len(names)):
                    if names[i] == flag:
                        bits |= 1 << (op[1] - 1 - i)
                        break
                else:
                    raise _err('unknown_flag', message=message, flag=flag)
            w.write(op[1], bits)
        elif code == OP_SWITCH:
            _encode_ops(op[2][data[op[1]]], w, data, present, message)
        else:
            _encode_series(op, w, data, present, message)


def _encode_series(op, w, data, present, message):
    samples = data['samples']
    count = len(samples)
    columns = []
    gaps = 0
    for f in op[1]:
        name = f[_NAME]
        if name in present and not present[name]:
            continue
        raws = []
        for s in samples:
            v = s.get(name)
            if v is None:
                raws.append(None)
                gaps = 1
            else:
                raws.append(_encode_value(f, v, message))
        columns.append((f, raws))
    w.write(1, gaps)
    for f, raws in columns:
        if gaps:
            mask = 0
            for raw in raws:
                mask = (mask << 1) | (0 if raw is None else 1)
            w.write(count, mask)
        values = [raw for raw in raws if raw is not None]
        if not values:
            continue
        zigzags = []
        width = 0
        for i in range(1, len(values)):
            d = values[i] - values[i - 1]
            z = (d << 1) if d >= 0 else ((-d << 1) - 1)
            zigzags.append(z)
            b = _bit_length(z)
            if b > width:
                width = b
        w.write(f[_BITS], values[0])
        w.write(_WIDTH_BITS, width)
        if width:
            for z in zigzags:
                w.write(width, z)


def _prepare(msg, data):
    # A batch's sample count is derived from its samples; a count that is also given must agree.
    # Samples whose offset_s are not evenly spaced get their age (the series' offset field) written out.
    name = msg[M_NAME]
    series = T.SERIES.get(name)
    if series is None:
        return data
    count_field, offset_field = series
    f = T.FIELDS[count_field]
    top = f[_HI] + f[_OFF]
    samples = data.get('samples')
    if not isinstance(samples, (list, tuple)) or not 1 <= len(samples) <= top \
            or data.get(count_field, len(samples)) != len(samples):
        raise _err('count', message=name, field='samples', min=1, max=top)
    for s in samples:
        if not isinstance(s, dict):
            raise _err('type', message=name, field='samples', expected='a list of objects')
    d = dict(data)
    d[count_field] = len(samples)
    n = len(samples)
    offsets = [s.get('offset_s') for s in samples]
    if offset_field is not None and any(o is not None for o in offsets):
        interval = data.get('sample_interval_s')
        regular = _is_number(interval)
        if regular:
            for i in range(n):
                if offsets[i] != (i - n + 1) * interval:
                    regular = False
                    break
        if not regular:
            aged = []
            for i in range(n):
                o = offsets[i]
                if not _is_number(o):
                    raise _err('type', message=name, field='offset_s', expected='a number in every sample')
                s = dict(samples[i])
                s[offset_field] = -o
                aged.append(s)
            d['samples'] = aged
    return d


def encode(message, data):
    """Encode `data` as `message`. Returns (fport, bytes); raises CodecError with the public text."""
    msg = T.MESSAGES.get(message) if isinstance(message, str) else None
    if msg is None:
        raise _err('unknown_message', message=message)
    if not isinstance(data, dict):
        raise _err('type', message=message, field='data', expected='an object')
    if msg[M_LAYOUT] is None:
        from . import cbor
        d = dict(data)
        d['message'] = d.get('message', message)
        return msg[M_FPORT], cbor.encode_message(d)
    data = _prepare(msg, data)
    w = _Writer()
    w.write(T.FORMAT_BITS, msg[M_FORMAT])
    _encode_ops(msg[M_LAYOUT], w, data, {}, message)
    pad = (8 - (w.pos & 7)) & 7
    return msg[M_FPORT], (w.n << pad).to_bytes((w.pos + pad) >> 3, 'big')


def _encode_dir(data, direction):
    try:
        if not isinstance(data, dict):
            raise _err('type', message='data', field='data', expected='an object')
        name = data.get('message')
        msg = T.MESSAGES.get(name) if isinstance(name, str) else None
        if msg is None:
            raise _err('unknown_message', message=name)
        if msg[M_DIR] != direction:
            raise _err('direction', message=name, direction='uplink' if direction == UPLINK else 'downlink')
        fport, payload = encode(name, data)
        return {'fPort': fport, 'bytes': payload}
    except CodecError as e:
        return {'errors': [str(e)]}
    except Exception as e:  # noqa: BLE001 - same promise as decoding: report, never raise
        return {'errors': ['internal encoder error: %s' % e]}


def encode_uplink(data):
    """Encode an uplink from {'message': name, ...}. Returns {'fPort', 'bytes'} or {'errors'}."""
    return _encode_dir(data, UPLINK)


def encode_downlink(data):
    """Encode a downlink from {'message': name, ...}. Returns {'fPort', 'bytes'} or {'errors'}."""
    return _encode_dir(data, DOWNLINK)
