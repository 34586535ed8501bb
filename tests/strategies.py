"""Hypothesis strategies generated from the codec tables: any valid message, in decoded form.

The data a strategy draws is exactly what decoding its encoding must give back (floats derived from raw
codes, sample offsets filled in), so a round trip is a plain equality.
"""

from __future__ import annotations

from hypothesis import strategies as st

from citynode_codec import _tables as T
from citynode_codec.codec import (
    BOOL,
    ENUM,
    M_LAYOUT,
    NUM,
    OP_FIELD,
    OP_FLAGS,
    OP_OPTIONAL,
    OP_PRESENCE,
    OP_SERIES,
    OP_SWITCH,
)


def value_from_raw(f: tuple, raw: int):
    _, kind, bits, mul, div, off, lo, hi, missing, *_ = f
    if kind == NUM:
        if raw == missing:
            return None
        return (raw + off) * mul if div == 1 else (raw + off) * mul / div
    if kind == ENUM:
        return f[10][raw]
    if kind == BOOL:
        return raw == 1
    a, b, c = f[10]
    return f"{raw >> (b + c)}.{(raw >> c) & ((1 << b) - 1)}.{raw & ((1 << c) - 1)}"


def field_value(f: tuple, allow_missing: bool = True) -> st.SearchStrategy:
    _, kind, bits, mul, div, off, lo, hi, missing, *_ = f
    raws = st.integers(lo, hi)
    if kind == NUM and missing is not None and allow_missing:
        raws = st.one_of(raws, st.just(missing))
    return raws.map(lambda r: value_from_raw(f, r))


@st.composite
def _ops(draw, ops, data: dict, present: dict):
    for op in ops:
        code = op[0]
        if code == OP_FIELD:
            data[op[1][0]] = draw(field_value(op[1]))
        elif code == OP_OPTIONAL:
            if present[op[1][0]]:
                data[op[1][0]] = draw(field_value(op[1]))
        elif code == OP_PRESENCE:
            for name in op[1]:
                present[name] = draw(st.booleans())
        elif code == OP_FLAGS:
            data["flags"] = [n for n in op[2] if draw(st.booleans())]
        elif code == OP_SWITCH:
            draw(_ops(op[2][data[op[1]]], data, present))
        elif code == OP_SERIES:
            count = draw(st.integers(1, 16))
            data[op[2]] = count
            interval = data.get("sample_interval_s", 0)
            samples = [{"offset_s": (i - count + 1) * interval} for i in range(count)]
            offset = op[3]
            for f in op[1]:
                if f[0] in present and not present[f[0]] or f[0] == offset:
                    continue
                # Series keep missing values as gaps (null), never as the missing code.
                values = st.one_of(field_value(f, allow_missing=False), st.none())
                for s in samples:
                    s[f[0]] = draw(values)
            if offset is not None and present.get(offset):
                # Unevenly spaced samples: ages in whole minutes; decoders give them back as offset_s.
                ages = draw(st.lists(st.integers(0, 4095), min_size=count, max_size=count))
                regular = [(i - count + 1) * interval for i in range(count)]
                if [-60 * a for a in ages] == regular:
                    ages[0] += 1 if ages[0] < 4095 else -1
                for s, a in zip(samples, ages, strict=True):
                    s["offset_s"] = -60 * a
            data["samples"] = samples
    return data


@st.composite
def message_data(draw, name: str) -> dict:
    msg = T.MESSAGES[name]
    return draw(_ops(msg[M_LAYOUT], {"message": name}, {}))


COMPACT = [n for n, m in T.MESSAGES.items() if m[M_LAYOUT] is not None]
UPLINK_NAMES = [n for n in COMPACT if T.MESSAGES[n][1] == 0]
DOWNLINK_NAMES = [n for n in COMPACT if T.MESSAGES[n][1] == 1]

any_message = st.sampled_from(COMPACT).flatmap(message_data)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
snake = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
json_like = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                st.dictionaries(snake, inner, max_size=4)),
                         max_leaves=12)
