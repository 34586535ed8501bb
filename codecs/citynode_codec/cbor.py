# CBOR (RFC 8949) for citynode's debug/extension fPort: a small encoder for the board and a strict
# decoder for a JSON-like subset.
#
# The decoder accepts exactly what the JavaScript codec accepts: maps, arrays, integers within
# +-2**53, finite floats (half, single, double), text, true/false/null, definite or indefinite
# lengths. Tags, byte strings, undefined and other simple values are refused. The host encodes with
# cbor2 and the tests use cbor2 as the reference, but decoding stays here: cbor2 silently resolves
# semantic tags (bignums, shared values, self-describe), and the bridge must say exactly what the
# LNS-side JavaScript codec says about the same bytes.

import struct

from . import _tables as T

_MAX_INT = 9007199254740992  # 2**53
_MAX_DEPTH = 8
_BREAK = object()


class _Bad(Exception):
    pass


def _half(h):
    # IEEE 754 binary16 -> float (RFC 8949 Appendix D)
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        val = mant * 5.960464477539063e-08  # 2**-24
    elif exp != 31:
        val = (mant + 1024) * 2.0 ** (exp - 25)
    else:
        val = float('inf') if mant == 0 else float('nan')
    return -val if h & 0x8000 else val


class _Decoder:
    def __init__(self, data):
        self.b = bytes(data)
        self.i = 0

    def take(self, n):
        i = self.i
        if i + n > len(self.b):
            raise _Bad('truncated')
        self.i = i + n
        return self.b[i:i + n]

    def arg(self, info):
        if info < 24:
            return info
        if info == 24:
            return self.take(1)[0]
        if info == 25:
            return int.from_bytes(self.take(2), 'big')
        if info == 26:
            return int.from_bytes(self.take(4), 'big')
        if info == 27:
            return int.from_bytes(self.take(8), 'big')
        raise _Bad('invalid')

    def text(self, n):
        b = self.take(n)
        _check_utf8(b)
        return str(b, 'utf-8')

    def item(self, depth):
        if depth > _MAX_DEPTH:
            raise _Bad('nested too deep')
        ib = self.take(1)[0]
        major = ib >> 5
        info = ib & 31
        if major == 7:
            if info == 20:
                return False
            if info == 21:
                return True
            if info == 22:
                return None
            if info == 25:
                return _finite(_half(int.from_bytes(self.take(2), 'big')))
            if info == 26:
                return _finite(struct.unpack('>f', self.take(4))[0])
            if info == 27:
                return _finite(struct.unpack('>d', self.take(8))[0])
            if info == 31:
                return _BREAK
            if info in (28, 29, 30) or info == 24 and self.take(1)[0] < 32:
                raise _Bad('invalid')
            raise _Bad('unsupported type')
        if info == 31:
            if major == 3:
                # Indefinite text: definite-length text chunks until a break (RFC 8949 3.2.3).
                parts = []
                while True:
                    ib = self.take(1)[0]
                    if ib == 0xFF:
                        return ''.join(parts)
                    if ib >> 5 != 3 or ib & 31 == 31:
                        raise _Bad('invalid')
                    parts.append(self.text(self.arg(ib & 31)))
            if major == 4:
                out = []
                while True:
                    x = self.item(depth + 1)
                    if x is _BREAK:
                        return out
                    out.append(x)
            if major == 5:
                out = {}
                while True:
                    k = self.item(depth + 1)
                    if k is _BREAK:
                        return out
                    k = _key(k)  # check the key before reading its value, as the JS codec does
                    out[k] = self._value(depth)
            if major == 2:
                raise _Bad('unsupported type')
            raise _Bad('invalid')
        n = self.arg(info)
        if major == 0:
            if n > _MAX_INT:
                raise _Bad('number out of range')
            return n
        if major == 1:
            if n >= _MAX_INT:
                raise _Bad('number out of range')
            return -1 - n
        if major == 3:
            return self.text(n)
        if major == 4:
            if n > len(self.b):
                raise _Bad('truncated')
            return [self._value(depth) for _ in range(n)]
        if major == 5:
            if n > len(self.b):
                raise _Bad('truncated')
            out = {}
            for _ in range(n):
                k = self.item(depth + 1)
                if k is _BREAK:
                    raise _Bad('invalid')
                k = _key(k)
                out[k] = self._value(depth)
            return out
        raise _Bad('unsupported type')  # byte strings (2) and tags (6)

    def _value(self, depth):
        x = self.item(depth + 1)
        if x is _BREAK:
            raise _Bad('invalid')
        return x


def _check_utf8(b):
    # Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. Checked by
    # hand because MicroPython's str() lets surrogates through where CPython and the JS codec refuse.
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need, cp, lo = 1, c & 0x1F, 0x80
        elif 0xE0 <= c <= 0xEF:
            need, cp, lo = 2, c & 0x0F, 0x800
        elif 0xF0 <= c <= 0xF4:
            need, cp, lo = 3, c & 0x07, 0x10000
        else:
            raise _Bad('invalid utf-8')
        if i + need >= n:
            raise _Bad('invalid utf-8')
        for k in range(1, need + 1):
            cc = b[i + k]
            if cc & 0xC0 != 0x80:
                raise _Bad('invalid utf-8')
            cp = (cp << 6) | (cc & 0x3F)
        if cp < lo or cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
            raise _Bad('invalid utf-8')
        i += need + 1


def _finite(x):
    if x != x or x in (float('inf'), float('-inf')):
        raise _Bad('number out of range')
    return x


def _key(k):
    if not isinstance(k, str):
        raise _Bad('keys must be snake_case text')
    if not k or len(k) > 32 or not ('a' <= k[0] <= 'z'):
        raise _Bad('keys must be snake_case text')
    for ch in k:
        if not ('a' <= ch <= 'z' or '0' <= ch <= '9' or ch == '_'):
            raise _Bad('keys must be snake_case text')
    return k


def decode(data):
    """Decode one CBOR item from `data`; raises ValueError('<reason>') when it is outside the subset."""
    d = _Decoder(data)
    try:
        x = d.item(0)
        if x is _BREAK:
            raise _Bad('invalid')
        if d.i != len(d.b):
            raise _Bad('trailing bytes')
    except _Bad as e:
        raise ValueError(e.args[0])
    return x


def decode_message(payload):
    """Decode a CBOR uplink into message data, range-checking the fields the spec knows."""
    from .codec import _err, _fmt
    try:
        data = decode(payload)
    except ValueError as e:
        raise _err('cbor', reason=e.args[0])
    if not isinstance(data, dict) or not isinstance(data.get('message'), str):
        raise _err('cbor', reason="payload must be a map with a 'message' key")
    message = data['message']
    try:
        _key(message)
    except _Bad:
        raise _err('cbor', reason='message must be snake_case text')
    for name in data:
        f = T.FIELDS.get(name)
        if f is None or f[1] != 0:
            continue
        v = data[name]
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _err('type', message=message, field=name, expected='a number')
        lo = (f[6] + f[5]) * f[3] / f[4]
        hi = (f[7] + f[5]) * f[3] / f[4]
        if v < lo or v > hi:
            raise _err('range', message=message, field=name, value=_fmt(v, f[11]), min=f[12], max=f[13])
    return data


# ------------------------------------------------------------------------------------------ encoding


def _head(out, major, n):
    if n < 24:
        out.append((major << 5) | n)
    elif n < 0x100:
        out.append((major << 5) | 24)
        out.append(n)
    elif n < 0x10000:
        out.append((major << 5) | 25)
        out.extend(n.to_bytes(2, 'big'))
    elif n < 0x100000000:
        out.append((major << 5) | 26)
        out.extend(n.to_bytes(4, 'big'))
    else:
        out.append((major << 5) | 27)
        out.extend(n.to_bytes(8, 'big'))


def _encode(out, x):
    if x is None:
        out.append(0xF6)
    elif x is True:
        out.append(0xF5)
    elif x is False:
        out.append(0xF4)
    elif isinstance(x, int):
        if x >= 0:
            _head(out, 0, x)
        else:
            _head(out, 1, -1 - x)
    elif isinstance(x, float):
        # Shortest exact form keeps debug frames small: single precision when lossless, else double.
        b = struct.pack('>f', x) if -3.4028234663852886e38 <= x <= 3.4028234663852886e38 else None
        if b is not None and struct.unpack('>f', b)[0] == x:
            out.append(0xFA)
            out.extend(b)
        else:
            out.append(0xFB)
            out.extend(struct.pack('>d', x))
    elif isinstance(x, str):
        b = x.encode('utf-8')
        _head(out, 3, len(b))
        out.extend(b)
    elif isinstance(x, (list, tuple)):
        _head(out, 4, len(x))
        for v in x:
            _encode(out, v)
    elif isinstance(x, dict):
        _head(out, 5, len(x))
        for k in x:
            _encode(out, k)
            _encode(out, x[k])
    else:
        raise ValueError('cannot encode %s' % type(x).__name__)


def encode(x):
    """Encode a JSON-like value (None, bool, int, float, str, list, dict) as CBOR bytes."""
    out = bytearray()
    _encode(out, x)
    return bytes(out)


def encode_message(data):
    """Encode message data for the CBOR fPort, after the same checks the decoder applies."""
    from .codec import _err
    try:
        payload = encode(data)
    except ValueError as e:
        raise _err('cbor', reason=e.args[0])
    decode_message(payload)
    return payload
