"""`citynode decode` and `citynode encode`, as a technician or a script uses them."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from citynode.cli.main import main


def run(argv, stdin="", capsys=None, monkeypatch=None):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_decode_one_payload_prints_ts013_json_and_exits_0(capsys, monkeypatch):
    code, out, _ = run(["decode", "--port", "1", "1007541b40"], capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0
    assert json.loads(out)["data"]["vwc_pct"] == 23.4


def test_decode_accepts_fport_prefix_spaces_and_base64(capsys, monkeypatch):
    code, out, _ = run(["decode", "2:20 52 09 18 cf"], capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out)["data"]["fill_pct"] == 82
    code, out, _ = run(["decode", "--base64", "--port", "2", "IFIJGM8="], capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out)["data"]["distance_m"] == 0.36


def test_a_refused_payload_exits_1_and_says_why(capsys, monkeypatch):
    code, out, _ = run(["decode", "--port", "1", "1007"], capsys=capsys, monkeypatch=monkeypatch)
    assert code == 1
    assert "truncated" in json.loads(out)["errors"][0]


def test_decode_without_a_port_is_a_usage_error(capsys, monkeypatch):
    code, _, err = run(["decode", "1007541b40"], capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "fPort" in err


def test_decoding_a_log_gives_one_json_line_per_payload_and_keeps_going_after_bad_lines(capsys, monkeypatch):
    log = "1:1007541b40\n\n# a comment\n2:not-hex\n42:00\n2:205209 18cf\n"
    code, out, _ = run(["decode"], stdin=log, capsys=capsys, monkeypatch=monkeypatch)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert [r["line"] for r in rows] == [1, 4, 5, 6]
    assert ["data" in r for r in rows] == [True, False, False, True]
    assert rows[2]["errors"] == ["unknown fPort 42"]


def test_encode_prints_fport_and_hex_that_decode_reads_back(capsys, monkeypatch):
    code, out, _ = run(["encode", "set_thresholds", '{"seq": 1, "fill_alarm_pct": 80}'], capsys=capsys,
                       monkeypatch=monkeypatch)
    assert code == 0 and out.strip() == "21:21a1ffff"
    code, out, _ = run(["decode", "--downlink", out.strip()], capsys=capsys, monkeypatch=monkeypatch)
    assert json.loads(out)["data"]["fill_alarm_pct"] == 80


def test_encode_refuses_out_of_range_values_with_the_field_named(capsys, monkeypatch):
    code, _, err = run(["encode", "set_batch_size", '{"batch_size": 40}'], capsys=capsys, monkeypatch=monkeypatch)
    assert code == 1 and "batch_size out of range" in err
    code, _, err = run(["encode", "set_batch_size", "{not json"], capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "not JSON" in err


def test_the_installed_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "citynode", "encode", "--json", "reboot", '{"seq": 7}'],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"message": "reboot", "fPort": 26, "hex": "77", "base64": "dw=="}
