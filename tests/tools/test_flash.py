"""`citynode flash` against an emulated board: the app deployed by SHA-256, config and keys written, one wake
cycle proving the node measures and sends; idempotent, a dry run touches nothing, and errors a technician can
act on."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from citynode.tools.board_link import BOARDS, BoardLink, BoardType, Result
from citynode.tools.errors import WrongBoard
from citynode.tools.firmware import cached_build
from citynode.tools.flashing import Flasher, FlashJob

SECRETS = {"join_eui": "70b3d57ed005c17e", "app_key": "2b7e151628aed2a6abf7158809cf4f3c"}
CONFIG = {"kind": "soil", "batch_size": 1, "soil_dry_mv": 2480, "soil_wet_mv": 1210, "soil_wet_vwc_pct": 45.0,
          "asset_id": "T-0001"}


@pytest.fixture
def site_files(tmp_path):
    """The files `citynode provision` writes for a node: config.json and a 0600 secrets.json."""
    cfg, sec = tmp_path / "config.json", tmp_path / "secrets.json"
    cfg.write_text(json.dumps(CONFIG))
    sec.write_text(json.dumps(SECRETS))
    sec.chmod(0o600)
    return cfg, sec


def test_flash_deploys_the_app_writes_config_and_keys_and_shows_the_decoded_reading(make_rig, cli, site_files):
    rig = make_rig("soil")
    cfg, sec = site_files
    res = cli("flash", "--port", rig.port, "--board", "esp32", "--config", cfg, "--secrets", sec, "--json")
    assert res.code == 0, res.out + res.err
    report = json.loads(res.out)
    assert [s["status"] for s in report["steps"]] == ["done", "skipped", "done", "done", "skipped", "done", "done",
                                                      "done", "done"]
    build, manifest = cached_build()
    for rel, info in manifest["files"].items():  # every compiled file on the board, byte for byte
        assert hashlib.sha256(rig.flash_file(rel).read_bytes()).hexdigest() == info["sha256"]
    on_board = json.loads(rig.flash_file("config.json").read_text())
    assert (on_board["board"], on_board["asset_id"], on_board["soil_dry_mv"]) == ("esp32_devkit", "T-0001", 2480)
    assert json.loads(rig.flash_file("secrets.json").read_text()) == SECRETS
    check = report["check"]
    assert check["ok"] and 20 < check["sample"]["vwc_pct"] < 40  # the world's soil is at 30 %
    sent = [u for u in check["uplinks"] if u["result"] == "ok"]
    assert sent[0]["decoded"]["data"]["message"] == "soil_reading"
    assert rig.network.uplinks[0].payload.hex() == sent[0]["hex"]  # what the network heard is what was shown
    assert SECRETS["app_key"] not in res.out + res.err


def test_a_second_flash_changes_nothing_and_says_so(make_rig, cli, site_files):
    rig = make_rig("soil")
    cfg, sec = site_files
    assert cli("flash", "-p", rig.port, "-b", "esp32", "--config", cfg, "--secrets", sec).code == 0
    before = rig.listing()
    again = cli("flash", "-p", rig.port, "-b", "esp32", "--config", cfg, "--secrets", sec)
    assert again.code == 0, again.out + again.err
    assert "Nothing to change" in again.out
    assert "all 39 files up to date" in again.out or "files up to date" in again.out
    changed = {k for k in rig.listing() if rig.listing()[k] != before.get(k)}
    assert changed <= {"counters.json"}  # only what the node itself keeps between wakes


def test_a_dry_run_writes_nothing_to_the_board_and_lists_what_it_would_copy(make_rig, cli, site_files):
    rig = make_rig("soil")
    cfg, sec = site_files
    res = cli("flash", "-p", rig.port, "-b", "esp32", "--config", cfg, "--secrets", sec, "--dry-run", "--json")
    assert res.code == 0, res.err
    report = json.loads(res.out)
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["app"]["status"] == "would" and len(steps["app"]["files"]) == 39
    assert steps["config"]["status"] == steps["secrets"]["status"] == "would"
    assert rig.listing() == {}
    assert rig.network.uplinks == []


def test_a_config_the_node_would_reject_stops_before_the_board_is_touched(make_rig, cli, tmp_path):
    rig = make_rig("soil")
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"kind": "soil", "sample_interval_s": 10, "colour": "red"}))
    res = cli("flash", "-p", rig.port, "-b", "esp32", "--config", bad)
    assert res.code == 2
    assert "sample_interval_s: must be 60..15300" in res.err and "colour: unknown key" in res.err
    assert "nothing was written" in res.err
    assert rig.listing() == {}


def test_a_config_written_for_another_board_is_refused(make_rig, cli, tmp_path):
    rig = make_rig("soil")
    other = tmp_path / "config.json"
    other.write_text(json.dumps({"kind": "soil", "board": "rak11200"}))
    res = cli("flash", "-p", rig.port, "-b", "esp32", "--config", other, "--json")
    assert res.code == 2
    err = json.loads(res.out)
    assert (err["error"], err["expected"], err["found"]) == ("wrong_board", "esp32", "rak11200")


def test_a_board_configured_as_another_board_type_is_refused(make_rig, cli):
    rig = make_rig("soil")
    rig.flash_file("config.json").write_text(json.dumps({"kind": "soil", "board": "rak11200"}))
    res = cli("flash", "-p", rig.port, "-b", "esp32", "--no-check")
    assert res.code == 2 and "is not a esp32" in res.err and "config.json" in res.err


def test_a_port_held_by_another_program_is_named_and_nothing_is_written(make_rig, cli, port_holder):
    rig = make_rig("soil")
    holder = port_holder(rig.port)
    res = cli("flash", "-p", rig.port, "-b", "esp32", "--json")
    assert res.code == 2
    err = json.loads(res.out)
    assert err["error"] == "port_busy" and err["holders"][0]["pid"] == holder.pid
    assert rig.listing() == {}


def test_a_missing_port_is_explained(cli, tmp_path):
    res = cli("flash", "-p", tmp_path / "ttyUSB7", "-b", "esp32")
    assert res.code == 2 and "There is no serial port" in res.err and "What to do" in res.err


def test_a_node_the_network_does_not_accept_fails_the_check_with_advice(make_rig, cli, site_files):
    rig = make_rig("soil", accept_joins=False)
    cfg, sec = site_files
    res = cli("flash", "-p", rig.port, "-b", "esp32", "--config", cfg, "--secrets", sec)
    assert res.code == 1
    assert "could not join the network" in res.out and "registered in the network server" in res.out
    assert "reading:" in res.out  # the sensor side is still shown


def test_an_sx1262_node_gets_the_lora_packages_and_a_frozen_build_only_main_py(make_rig, cli, tmp_path):
    rig = make_rig("soil", modem=False)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"kind": "soil", "radio": "sx126x_p2p"}))
    res = json.loads(cli("flash", "-p", rig.port, "-b", "rak11200", "--config", cfg, "--dry-run", "--json").out)
    steps = {s["step"]: s for s in res["steps"]}
    assert steps["packages"]["command"][-4:] == ["mip", "install", "lora-sync", "lora-sx126x"]
    frozen = json.loads(cli("flash", "-p", rig.port, "-b", "rak11200", "--config", cfg, "--dry-run", "--frozen",
                            "--json").out)
    steps = {s["step"]: s for s in frozen["steps"]}
    assert [f["path"] for f in steps["app"]["files"]] == ["main.py"]
    assert steps["packages"]["status"] == "skipped"


def test_with_firmware_the_dry_run_shows_the_exact_esptool_commands(make_rig, cli, tmp_path):
    rig = make_rig("soil")
    fw = tmp_path / "ESP32_GENERIC.bin"
    fw.write_bytes(b"\xe9" + bytes(1000))
    res = json.loads(cli("flash", "-p", rig.port, "-b", "esp32", "--firmware", fw, "--dry-run", "--json").out)
    commands = {s["step"]: s for s in res["steps"]}["firmware"]["commands"]
    assert [c[c.index("--chip"):] for c in commands] == [
        ["--chip", "esp32", "--port", rig.port, "verify-flash", "0x1000", str(fw)],
        ["--chip", "esp32", "--port", rig.port, "erase-flash"],
        ["--chip", "esp32", "--port", rig.port, "--baud", "460800", "write-flash", "0x1000", str(fw)]]


def test_a_file_that_is_no_esp32_image_is_refused_before_anything_runs(make_rig, cli, tmp_path):
    rig = make_rig("soil")
    fw = tmp_path / "firmware.uf2"
    fw.write_bytes(b"UF2\n" + bytes(100))
    res = cli("flash", "-p", rig.port, "-b", "esp32", "--firmware", fw)
    assert res.code == 2 and "not an ESP32 firmware image" in res.err


def test_micropython_on_another_chip_is_refused_as_the_wrong_board():
    master, slave = os.openpty()
    state = "CN-STATE " + json.dumps({"platform": "rp2", "machine": "Raspberry Pi Pico with RP2040", "version": "",
                                      "uid": "", "config": None, "files": {}, "dirs": {}})
    runs = []

    def runner(args, timeout):
        runs.append(args)
        return Result(0, state)

    flasher = Flasher(link_factory=lambda port: BoardLink(port, runner=runner, mpremote=["mpremote"]),
                      wait_repl=lambda port, timeout: ">>> ")
    try:
        with flasher, pytest.raises(WrongBoard) as e:
            flasher.run(FlashJob(os.ttyname(slave), BOARDS["esp32"], config=CONFIG, secrets=SECRETS))
    finally:
        os.close(master)
        os.close(slave)
    assert (e.value.expected, e.value.found, e.value.source) == ("ESP32", "Raspberry Pi Pico with RP2040",
                                                                 "MicroPython")
    assert len(runs) == 1  # it only looked: nothing was copied


class SplitLink(BoardLink):
    """esptool talks to a mock ROM bootloader, mpremote to the emulated board: the whole pipeline in one test."""

    def __init__(self, port: str, rom_port: str):
        super().__init__(port)
        self.rom_port = rom_port

    def esptool_args(self, board: BoardType, *command: str, baud: int | None = None) -> list[str]:
        args = super().esptool_args(board, *command, baud=baud)
        args[args.index("--port") + 1] = self.rom_port
        return args


def test_firmware_is_written_once_and_found_in_place_on_the_next_run(make_rig, mock_rom, firmware_image):
    rom = mock_rom("esp32")
    rig = make_rig("soil")
    fw = firmware_image("fw.bin", 3)
    job = FlashJob(rig.port, BOARDS["esp32"], firmware=fw, config=CONFIG, secrets=SECRETS, check=False)
    with Flasher(link_factory=lambda port: SplitLink(port, rom)) as flasher:
        first = {s.name: s.status for s in flasher.run(job).steps}
        second = {s.name: s.status for s in flasher.run(job).steps}
    assert (first["firmware"], first["app"]) == ("done", "done")
    assert (second["firmware"], second["app"], second["config"]) == ("unchanged", "unchanged", "unchanged")
