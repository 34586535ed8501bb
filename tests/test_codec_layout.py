"""Bit layouts drawn by hand from the spec, as a datasheet would: an independent check that the generated
tables put every field where the spec says. Each diagram line is `<bits>  <what they mean>`."""

from __future__ import annotations

from citynode_codec import decode_downlink, decode_uplink, encode


def diagram(text: str) -> bytes:
    bits = "".join(line.split()[0] for line in text.strip().splitlines())
    assert len(bits) % 8 == 0, f"diagram has {len(bits)} bits"
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


SOIL = """
0001        format 1: soil_reading
00000       flags: none
00          presence: no tension, no EC
0011101010  vwc_pct raw 234 -> 23.4 %
1000001101  soil_temperature_c raw 525 -> 525 * 0.1 - 40 = 12.5 °C
1010000     battery_v raw 80 -> 2.0 + 80 * 0.02 = 3.60 V
00          padding
"""


def test_soil_reading_is_five_bytes_laid_out_as_drawn():
    payload = diagram(SOIL)
    assert len(payload) == 5
    assert encode("soil_reading", {"vwc_pct": 23.4, "soil_temperature_c": 12.5, "battery_v": 3.6, "flags": []}) \
        == (1, payload)


SOIL_OPTIONAL = """
0001          format 1
00010         flags: low_battery (4th of sensor_fault, out_of_range, uncalibrated, low_battery, config_error)
11            presence: tension and EC follow
0001100010    vwc_pct raw 98 -> 9.8 %
0110101110    soil_temperature_c raw 430 -> 3.0 °C
0111101       battery_v raw 61 -> 3.22 V
000101000000  soil_tension_kpa raw 320 -> 320 kPa
000001000110  soil_ec_us_cm raw 70 -> 350 µS/cm
00            padding
"""


def test_optional_tension_and_ec_follow_their_presence_bits():
    out = decode_uplink(1, diagram(SOIL_OPTIONAL))
    assert out == {"data": {"message": "soil_reading", "flags": ["low_battery"], "vwc_pct": 9.8,
                            "soil_temperature_c": 3.0, "battery_v": 3.22, "soil_tension_kpa": 320,
                            "soil_ec_us_cm": 350}}


FILL_FAULT = """
0010        format 2: fill_reading
10000       flags: sensor_fault
1111111     fill_pct raw 127: missing
1111111111  distance_m raw 1023: missing
0110001     temperature_c raw 49 -> 9 °C
1000111     battery_v raw 71 -> 3.42 V
"""


def test_a_failed_distance_sensor_is_null_not_zero():
    data = decode_uplink(2, diagram(FILL_FAULT))["data"]
    assert data["fill_pct"] is None and data["distance_m"] is None
    assert data["flags"] == ["sensor_fault"] and data["temperature_c"] == 9


BATCH = """
0011        format 3: batch
01          node_kind fill
0001        sample_count raw 1 -> 2 samples
00111100    sample_interval_s raw 60 -> 3600 s
00000       flags: none
0           presence: no age_s series (samples evenly spaced)
1000111     battery_v raw 71 -> 3.42 V
0           gaps: none
0101000     fill_pct first raw 40
0011        delta width 3
110         zigzag 6 -> +3 -> 43
1001010000  distance_m first raw 592 -> 5.92 m
0000        delta width 0 (unchanged)
0110110     temperature_c first raw 54 -> 14 °C
0010        delta width 2
01          zigzag 1 -> -1 -> 13 °C
0000000     padding (73 bits -> 10 bytes)
"""


def test_batch_series_are_delta_coded_oldest_first():
    data = decode_uplink(3, diagram(BATCH))["data"]
    assert data["samples"] == [
        {"offset_s": -3600, "fill_pct": 40, "distance_m": 5.92, "temperature_c": 14},
        {"offset_s": 0, "fill_pct": 43, "distance_m": 5.92, "temperature_c": 13},
    ]


SET_GEOMETRY = """
0100        format 4: set_geometry
0011        seq 3
0010000010  empty_distance_m raw 130 -> 1.30 m
0000011001  full_distance_m raw 25 -> 0.25 m
0000        padding
"""


def test_downlink_starts_with_format_and_sequence():
    assert encode("set_geometry", {"seq": 3, "empty_distance_m": 1.3, "full_distance_m": 0.25}) \
        == (23, diagram(SET_GEOMETRY))
    assert decode_downlink(23, diagram(SET_GEOMETRY))["data"]["empty_distance_m"] == 1.3


AGED = """
0011        format 3: batch
01          node_kind fill
0001        sample_count raw 1 -> 2 samples
00001111    sample_interval_s raw 15 -> 900 s
00000       flags: none
1           presence: age_s series follows (samples not evenly spaced)
1000111     battery_v raw 71 -> 3.42 V
0           gaps: none
0101000     fill_pct first raw 40
0000        delta width 0
0001100100  distance_m first raw 100 -> 1.00 m
0000        delta width 0
0110100     temperature_c first raw 52 -> 12 °C
0000        delta width 0
000000001010  age_s first raw 10 -> 600 s
0101        delta width 5
10011       zigzag 19 -> -10 -> age 0 s
0000000     padding (89 bits -> 12 bytes)
"""


def test_unevenly_spaced_samples_carry_their_age():
    data = decode_uplink(3, diagram(AGED))["data"]
    assert [s["offset_s"] for s in data["samples"]] == [-600, 0]
    assert "age_s" not in data["samples"][0]
