"""`citynode uplink`: one LNS message in, exactly what the bridge would publish out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from citynode.cli.main import main

FIXTURES = Path(__file__).parent / "fixtures"


def run(capsys, *argv) -> tuple[int, dict | None, str]:
    code = main(["uplink", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_a_chirpstack_uplink_prints_the_publications_with_parsed_payloads(capsys):
    code, out, _ = run(capsys, "--from", "chirpstack", "--registry", str(FIXTURES / "registry.toml"),
                       str(FIXTURES / "chirpstack_up_soil.json"))
    assert code == 0
    pubs = out["publications"]
    assert [p["topic"] for p in pubs] == ["citynode/soil/tree-0001/availability", "citynode/soil/tree-0001/reading",
                                          "citynode/soil/tree-0001/state"]
    reading = pubs[1]
    assert reading["retain"] is False and reading["qos"] == 1
    assert reading["payload"]["measurements"]["vwc_pct"] == 23.4 and reading["payload"]["asset_id"] == "T-0001"


def test_a_tts_uplink_with_a_csv_registry_and_another_base_topic(capsys):
    code, out, _ = run(capsys, "--from", "tts", "--registry", str(FIXTURES / "registry.csv"), "--base", "city/x",
                       str(FIXTURES / "tts_up_fill.json"))
    assert code == 0
    topics = [p["topic"] for p in out["publications"]]
    assert "city/x/fill/glass-0002/reading" in topics
    assert "city/x/alerts/fill/glass-0002/collection_needed" in topics


def test_without_a_registry_the_device_is_published_as_unknown(capsys):
    code, out, _ = run(capsys, "--from", "chirpstack", str(FIXTURES / "chirpstack_up_soil_batch.json"))
    readings = [p for p in out["publications"] if p["topic"].endswith("/reading")]
    assert code == 0 and len(readings) == 8 and readings[0]["payload"]["device_known"] is False


def test_an_uplink_the_codec_refuses_prints_the_dead_letter_and_exits_0(capsys, tmp_path):
    body = json.loads((FIXTURES / "chirpstack_up_soil.json").read_text())
    body["fPort"] = 2
    path = tmp_path / "wrong-port.json"
    path.write_text(json.dumps(body))
    code, out, _ = run(capsys, "--from", "chirpstack", str(path))
    [letter] = out["publications"]
    assert code == 0 and letter["topic"] == "citynode/deadletter" and letter["payload"]["reason"] == "decode_error"


def test_an_event_without_an_uplink_publishes_nothing(capsys):
    code, out, _ = run(capsys, "--from", "tts", "--topic", "v3/a@b/devices/tree-0001/join",
                       str(FIXTURES / "tts_join.json"))
    assert code == 0 and out["publications"] == [] and "no uplink" in out["note"]


@pytest.mark.parametrize("content", [b"not json at all", b"\xff\xfe", b"", b"[1, 2]"])
def test_unreadable_input_exits_2_with_one_line_on_stderr(capsys, tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    code, out, err = run(capsys, "--from", "chirpstack", str(path))
    assert code == 2 and out is None
    assert err.startswith("citynode uplink: ") and err.count("\n") == 1


def test_a_missing_file_or_a_broken_registry_exits_2(capsys, tmp_path):
    code, _, err = run(capsys, "--from", "tts", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in err
    bad = tmp_path / "devices.toml"
    bad.write_text('[[device]]\ndev_eui = "nope"\nkind = "soil"\n')
    code, _, err = run(capsys, "--from", "tts", "--registry", str(bad), str(FIXTURES / "tts_up_fill.json"))
    assert code == 2 and "dev_eui" in err


def test_stdin_works_through_the_installed_command():
    result = subprocess.run([sys.executable, "-m", "citynode", "uplink", "--from", "chirpstack", "-"],
                            input=(FIXTURES / "chirpstack_up_fill_defaults_omitted.json").read_bytes(),
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    reading = [p for p in json.loads(result.stdout)["publications"] if p["topic"].endswith("/reading")][0]
    assert reading["payload"]["fcnt"] == 0  # fCnt omitted by ChirpStack means 0


def test_help_is_written_for_a_technician(capsys):
    with pytest.raises(SystemExit):
        main(["uplink", "--help"])
    out = capsys.readouterr().out
    assert "ChirpStack" in out and "Exit status" in out and "--registry" in out
