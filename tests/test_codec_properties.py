"""Properties of the codec over the whole value space, checked with Hypothesis on CPython, and against the
real MicroPython and the JavaScript codec for agreement."""

from __future__ import annotations

import math

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citynode_codec import _tables as T
from citynode_codec import cbor, decode_downlink, decode_uplink, encode, encode_downlink, encode_uplink

from codec_peers import micropython_peer, node_peer, python_call
from strategies import COMPACT, DOWNLINK_NAMES, UPLINK_NAMES, any_message, json_like, message_data

PORTS = sorted(T.UPLINK_PORTS) + [0, 7, 99, 223]
payloads = st.binary(max_size=64)


@pytest.mark.parametrize("name", COMPACT)
def test_every_message_round_trips_across_its_whole_value_range(name):
    decode = decode_uplink if T.MESSAGES[name][1] == 0 else decode_downlink

    @settings(max_examples=300, deadline=None)
    @given(message_data(name))
    def check(data):
        fport, payload = encode(name, data)
        assert decode(fport, payload) == {"data": data}

    check()


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(PORTS), payloads)
def test_decoding_random_bytes_never_raises_and_says_why_it_refuses(fport, payload):
    for decode in (decode_uplink, decode_downlink):
        out = decode(fport, payload)
        assert set(out) in ({"data"}, {"errors"})
        if "errors" in out:
            assert out["errors"] and all(isinstance(e, str) and e for e in out["errors"])
            assert not any("internal" in e for e in out["errors"]), out


@settings(max_examples=500, deadline=None)
@given(st.one_of(json_like, st.dictionaries(st.sampled_from(["message", "seq", "samples", "flags", "node_kind",
                                                               "vwc_pct", "sample_interval_s", "batch_size"]),
                                             json_like)),
       st.sampled_from(UPLINK_NAMES + DOWNLINK_NAMES + ["nope", None]))
def test_encoding_arbitrary_input_never_raises(data, message):
    if isinstance(data, dict) and message is not None:
        data = {**data, "message": message}
    for enc in (encode_uplink, encode_downlink):
        out = enc(data)
        assert set(out) in ({"fPort", "bytes"}, {"errors"})
        assert not any("internal" in e for e in out.get("errors", [])), out


def test_soil_and_fill_readings_fit_five_bytes_at_full_range():
    top = {"soil_reading": dict(vwc_pct=100, soil_temperature_c=60, battery_v=4.5,
                                flags=["sensor_fault", "out_of_range", "uncalibrated", "low_battery", "config_error"]),
           "fill_reading": dict(fill_pct=125, distance_m=10, temperature_c=85, battery_v=4.5,
                                flags=["sensor_fault", "out_of_range", "tilt", "low_battery", "config_error"])}
    for name, data in top.items():
        assert len(encode(name, data)[1]) == 5


# ------------------------------------------------------------------------------- other runtimes


@pytest.fixture(scope="module")
def js(node):
    peer = node_peer(node)
    yield peer
    peer.close()


@pytest.fixture(scope="module")
def mpy(micropython):
    peer = micropython_peer(micropython)
    yield peer
    peer.close()


def _mutations(payload: bytes) -> list[bytes]:
    out = [payload[:-1], payload + b"\x00", payload[1:]]
    for i in range(min(len(payload) * 8, 48)):
        b = bytearray(payload)
        b[i // 8] ^= 0x80 >> (i % 8)
        out.append(bytes(b))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(any_message)
def test_python_and_javascript_agree_on_valid_and_mutated_payloads(js, data):
    fport, payload = encode(data["message"], data)
    fn = "decodeUplink" if T.MESSAGES[data["message"]][1] == 0 else "decodeDownlink"
    reqs = [(fn, {"fPort": fport, "bytes": list(p)}) for p in [payload, *_mutations(payload)]]
    assert js.call_many(reqs) == [python_call(f, i) for f, i in reqs]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(PORTS), payloads), min_size=1, max_size=20))
def test_python_and_javascript_agree_on_random_payloads(js, cases):
    reqs = [(fn, {"fPort": p, "bytes": list(b)}) for p, b in cases for fn in ("decodeUplink", "decodeDownlink")]
    assert js.call_many(reqs) == [python_call(f, i) for f, i in reqs]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(DOWNLINK_NAMES).flatmap(message_data))
def test_python_and_javascript_encode_the_same_downlink_bytes(js, data):
    assert js.call("encodeDownlink", {"data": data}) == python_call("encodeDownlink", {"data": data})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["seq", "sample_interval_s", "batch_size", "fill_alarm_pct", "soil_dry_pct",
                                        "battery_low_v", "empty_distance_m", "soil_dry_mv"]),
                       st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                                 st.floats(-1e6, 1e6), st.text(max_size=4))),
       st.sampled_from(DOWNLINK_NAMES))
def test_python_and_javascript_accept_and_refuse_the_same_downlink_commands(js, data, name):
    data = {**data, "message": name}
    py, got = python_call("encodeDownlink", {"data": data}), js.call("encodeDownlink", {"data": data})
    assert ("errors" in got) == ("errors" in py)
    if "bytes" in py:
        assert got == py


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(any_message, min_size=1, max_size=10), st.lists(st.tuples(st.sampled_from(PORTS), payloads),
                                                                 max_size=10))
def test_micropython_encodes_and_decodes_exactly_like_cpython(mpy, messages, randoms):
    reqs = []
    for data in messages:
        up = T.MESSAGES[data["message"]][1] == 0
        fport, payload = encode(data["message"], data)
        reqs.append(("encodeUplink" if up else "encodeDownlink", {"data": data}))
        reqs.append(("decodeUplink" if up else "decodeDownlink", {"fPort": fport, "bytes": list(payload)}))
    reqs += [("decodeUplink", {"fPort": p, "bytes": list(b)}) for p, b in randoms]
    assert mpy.call_many(reqs) == [python_call(f, i) for f, i in reqs]


# -------------------------------------------------------------------------------------------- CBOR

subset_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), inner,
                                            max_size=3)),
    max_leaves=10)


@settings(max_examples=500, deadline=None)
@given(subset_values, st.booleans())
def test_cbor_decoder_reads_what_cbor2_writes(value, canonical):
    encoded = cbor2.dumps(value, canonical=canonical)
    got = cbor.decode(encoded)
    assert got == value or (isinstance(value, float) and math.isnan(value))


@settings(max_examples=500, deadline=None)
@given(subset_values)
def test_board_cbor_encoder_output_is_read_back_by_cbor2(value):
    assert cbor2.loads(cbor.encode(value)) == value


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=40))
def test_whatever_the_cbor_decoder_accepts_cbor2_reads_the_same_way(data):
    try:
        mine = cbor.decode(data)
    except ValueError:
        return
    assert cbor2.loads(data) == mine


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=30), min_size=1, max_size=20))
def test_python_and_javascript_agree_on_random_cbor_payloads(js, blobs):
    reqs = [("decodeUplink", {"fPort": 30, "bytes": [0xA1] + list(b)}) for b in blobs]
    reqs += [("decodeUplink", {"fPort": 30, "bytes": list(b)}) for b in blobs]
    assert js.call_many(reqs) == [python_call(f, i) for f, i in reqs]


def test_cbor_refuses_what_json_cannot_carry():
    for value, reason in ((b"\x01", "unsupported type"), (cbor2.CBORTag(1, 0), "unsupported type"),
                          (float("nan"), "number out of range"), (2**60, "number out of range")):
        payload = cbor2.dumps({"message": "x", "v": value})
        assert decode_uplink(30, payload) == {"errors": [f"cbor: {reason}"]}
    assert decode_uplink(30, cbor2.dumps({"message": "x", "Bad Key": 1})) == {
        "errors": ["cbor: keys must be snake_case text"]}
    assert decode_uplink(30, b"\x63\xed\xa0\x80") == {"errors": ["cbor: invalid utf-8"]}


# ------------------------------------------------------------------------------------- fast path


def _interpreter(direction, fport, payload):
    from citynode_codec.codec import _decode_port

    return _decode_port(T.UPLINK_PORTS if direction == 0 else T.DOWNLINK_PORTS, fport, payload)


@settings(max_examples=400, deadline=None)
@given(any_message)
def test_generated_fast_decoders_agree_with_the_interpreter_on_valid_and_mutated_payloads(data):
    direction = T.MESSAGES[data["message"]][1]
    decode = decode_uplink if direction == 0 else decode_downlink
    fport, payload = encode(data["message"], data)
    for p in [payload, *_mutations(payload)]:
        assert decode(fport, p) == _interpreter(direction, fport, p)


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(PORTS + sorted(T.DOWNLINK_PORTS)), payloads)
def test_generated_fast_decoders_agree_with_the_interpreter_on_random_bytes(fport, payload):
    assert decode_uplink(fport, payload) == _interpreter(0, fport, payload)
    assert decode_downlink(fport, payload) == _interpreter(1, fport, payload)
