"""Platform commands: everything validated before anything is sent; seq assignment and pending commands."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citynode.core.downlinks import COMMAND_RULES, CommandError, PendingCommands, command_fields, parse_command
from citynode_codec import MESSAGES, decode_downlink


def cmd(**body) -> bytes:
    return json.dumps(body).encode()


def test_the_command_table_covers_exactly_the_codecs_downlink_messages():
    downlinks = {name for name, m in MESSAGES.items() if m[1] == 1}
    assert set(COMMAND_RULES) == downlinks


def test_a_valid_command_keeps_its_request_id_and_encodes_with_the_given_seq():
    c = parse_command(cmd(command="set_interval", sample_interval_s=900, request_id="abc"), "soil")
    assert c.request_id == "abc" and c.fields == {"sample_interval_s": 900}
    fport, frame = c.encode(5)
    assert (fport, frame.hex()) == (20, "150f")
    assert decode_downlink(fport, frame)["data"]["seq"] == 5


@pytest.mark.parametrize("body, kind, fragment", [
    (b"not json", "soil", "not valid JSON"),
    (b"\xff\xfe", "soil", "UTF-8"),
    (b"[1, 2]", "soil", "JSON object"),
    (b'{"command": "set_interval", "sample_interval_s": NaN}', "soil", "not valid JSON"),
    (cmd(command="self_destruct"), "soil", "must be one of"),
    (cmd(sample_interval_s=900), "soil", "must be one of"),
    (cmd(command="set_interval"), "soil", "missing field sample_interval_s"),
    (cmd(command="set_interval", sample_interval_s=900, colour="red"), "soil", "unknown field colour"),
    (cmd(command="set_interval", sample_interval_s="900"), "soil", "must be a number"),
    (cmd(command="set_interval", sample_interval_s=True), "soil", "must be a number"),
    (cmd(command="set_interval", sample_interval_s=10), "soil", "out of range"),
    (cmd(command="set_interval", sample_interval_s=910), "soil", "cannot be sent exactly"),
    (cmd(command="set_interval", sample_interval_s=900, seq=3), "soil", "assigned by the bridge"),
    (cmd(command="set_geometry", empty_distance_m=1.3, full_distance_m=0.25), "soil", "for fill nodes"),
    (cmd(command="set_calibration", soil_dry_mv=2480), "fill", "for soil nodes"),
    (cmd(command="set_thresholds", fill_alarm_pct=80), "soil", "applies to fill nodes"),
    (cmd(command="set_thresholds"), "fill", "at least one"),
    (cmd(command="set_thresholds", fill_alarm_pct=None), "fill", "at least one"),
    (cmd(command="set_batch_size", batch_size=17), "fill", "out of range"),
    (cmd(command="reboot", request_id=["x"]), "fill", "request_id"),
    (cmd(command="reboot", confirmed="yes"), "fill", "confirmed"),
    (b"[" * 4000, "soil", "not valid JSON"),
    (b" " * 5000, "soil", "larger than"),
])
def test_invalid_commands_are_rejected_with_a_reason(body, kind, fragment):
    with pytest.raises(CommandError) as e:
        parse_command(body, kind, "tree-0001")
    assert fragment in str(e.value)


def test_a_field_name_that_is_not_unicode_text_is_named_in_a_rejection_that_can_be_published():
    body = b'{"command": "set_interval", "sample_interval_s": 900, "\\ud800": 1}'
    with pytest.raises(CommandError) as e:
        parse_command(body, "soil", "tree-0001")
    assert "unknown field \ufffd" in str(e.value)
    str(e.value).encode("utf-8")  # the response body quotes it


def test_a_rejected_command_still_echoes_its_request_id():
    with pytest.raises(CommandError) as e:
        parse_command(cmd(command="set_interval", sample_interval_s=5, request_id=42), "soil")
    assert e.value.request_id == "42" and e.value.command == "set_interval"


def test_optional_fields_left_out_are_sent_as_leave_unchanged():
    c = parse_command(cmd(command="set_thresholds", fill_alarm_pct=80), "fill")
    assert c.fields == {"fill_alarm_pct": 80, "soil_dry_pct": None, "battery_low_v": None}
    assert c.encode(1)[1].hex() == "21a1ffff"  # the spec's example


def test_commands_without_fields_need_none():
    assert command_fields("reboot") == () and parse_command(cmd(command="reboot"), "soil").fields == {}


def test_pending_commands_get_distinct_seqs_and_are_matched_by_seq_and_command():
    p = PendingCommands(ttl_s=100, max_per_device=8)
    a = p.add("d", "dev", "soil", "set_interval", "r1", now=16.0)
    b = p.add("d", "dev", "soil", "reboot", "r2", now=16.0)
    assert a.seq != b.seq and 0 <= a.seq < 16
    assert p.match("d", b.seq, "set_interval") is None  # the seq of another command
    assert p.match("d", b.seq, "reboot") is b
    assert p.match("d", b.seq, "reboot") is None  # answered once
    assert p.for_request("d", "r1") is a


def test_pending_commands_are_bounded_per_device_and_expire():
    p = PendingCommands(ttl_s=100, max_per_device=2)
    p.add("d", "dev", "soil", "reboot", None, now=0)
    p.add("d", "dev", "soil", "reboot", None, now=0)
    with pytest.raises(CommandError, match="already waiting"):
        p.add("d", "dev", "soil", "reboot", None, now=0)
    assert p.expire(99) == []
    assert len(p.expire(100)) == 2 and len(p) == 0


def test_seqs_wrap_and_never_collide_with_waiting_ones():
    p = PendingCommands(ttl_s=1e9, max_per_device=8)
    seen = []
    for i in range(40):
        entry = p.add("d", "dev", "soil", "reboot", str(i), now=0)
        assert entry.seq not in [e.seq for e in p._pending["d"].values() if e is not entry]
        seen.append(entry.seq)
        if len(p._pending["d"]) == 8:
            p.match("d", seen[-8], "reboot")
    assert set(seen) == set(range(16))


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner,
                                                                                 max_size=5), max_leaves=20)


@settings(max_examples=500)
@given(st.one_of(st.binary(max_size=300), _json.map(lambda v: json.dumps(v).encode()),
                 st.dictionaries(st.sampled_from(["command", "request_id", "confirmed", "sample_interval_s",
                                                  "fill_alarm_pct", "soil_dry_pct", "battery_low_v", "batch_size",
                                                  "empty_distance_m", "full_distance_m", "seq"]),
                                 st.one_of(st.sampled_from(list(COMMAND_RULES)), st.integers(-10**20, 10**20),
                                           st.floats(), st.none(), st.text(max_size=5))).map(
                     lambda d: json.dumps(d).encode())),
       st.sampled_from(["soil", "fill"]))
def test_any_command_payload_is_accepted_or_rejected_never_raises_otherwise(payload, kind):
    try:
        c = parse_command(payload, kind)
    except CommandError:
        return
    fport, frame = c.encode(0)
    assert decode_downlink(fport, frame).get("data", {}).get("message") == c.name
