"""The node's console lines, parsed and decoded as `flash` and `monitor` show them."""

from __future__ import annotations

from citynode.tools.logparse import describe, parse_line, parse_output
from citynode_codec import encode


def test_tx_line_is_decoded_with_the_payload_codec():
    fport, payload = encode("soil_reading", {"vwc_pct": 23.4, "soil_temperature_c": 12.5, "battery_v": 3.6,
                                             "flags": []})
    e = parse_line(f"[cn] tx {fport}:{payload.hex()} ok")
    assert e.kind == "tx" and e.data["result"] == "ok"
    assert e.data["decoded"]["data"]["message"] == "soil_reading"
    assert e.data["decoded"]["data"]["vwc_pct"] == 23.4
    assert "soil_reading" in describe(e) and describe(e).endswith("-> sent")


def test_downlink_line_is_decoded_with_the_command_and_result():
    fport, payload = encode("set_interval", {"sample_interval_s": 900})
    e = parse_line(f"[cn] downlink {fport}:{payload.hex()} -> set_interval ok")
    assert e.kind == "downlink" and (e.data["command"], e.data["result"]) == ("set_interval", "ok")
    assert e.data["decoded"]["data"]["sample_interval_s"] == 900


def test_sample_line_keeps_the_reading_and_the_probe_voltage():
    e = parse_line('[cn] sample {"vwc_pct": 30.0, "flags": []} raw_mv=1634')
    assert e.data == {"sample": {"vwc_pct": 30.0, "flags": []}, "raw_mv": 1634.0}


def test_undecodable_payload_is_reported_not_raised():
    e = parse_line("[cn] tx 99:00 ok")
    assert "errors" in e.data["decoded"] and "not decodable" in describe(e)


def test_board_banners_are_reset_events_and_other_text_is_console():
    kinds = [e.kind for e in parse_output("MicroPython v1.25.0 on 2025-04-15; Generic ESP32 module with ESP32\r\n"
                                          "rst:0x5 (DEEPSLEEP_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
                                          ">>> print(1)\r\n[cn] sensor soil absent\r\n")]
    assert kinds == ["reset", "reset", "console", "sensor_error"]


def test_a_node_line_glued_to_a_repl_prompt_is_still_recognised():
    assert parse_line('>>> [cn] sample {"vwc_pct": 30.0, "flags": []}').kind == "sample"
    assert parse_line(">>> MicroPython v1.25.0 on 2025-04-15; Generic ESP32 module with ESP32").kind == "reset"
