"""`citynode calibrate` on an emulated board whose probe voltage and container distance the test controls."""

from __future__ import annotations

import json

import pytest

from citynode.tools.board_link import BOARDS
from citynode.tools.flashing import Flasher, FlashJob

PROBE = {"dry_mv": 2400, "wet_mv": 1300, "wet_vwc": 45}


def soil_world(vwc: float) -> dict:
    """Soil at a fixed moisture: the probe reads dry_mv - vwc / wet_vwc * (dry_mv - wet_mv), +-3 mV of noise."""
    return {"kind": "soil", "vwc_start": vwc, "vwc_min": 0, "dry_per_day": 0, "probe": PROBE,
            "soil_temp_swing": 0, "battery_drop_per_day": 0}


@pytest.fixture
def deployed(make_rig):
    """deployed(kind, world, **config) -> a rig with the app and config.json on its board (no modem)."""

    def make(kind: str, world: dict, **config):
        rig = make_rig(kind, modem=False, world=world)
        with Flasher() as flasher:
            flasher.run(FlashJob(rig.port, BOARDS["esp32"], config={"kind": kind, **config}, check=False,
                                 restart=False))
        return rig

    return make


class Technician:
    """stdin of the technician: at each 'press Enter' the probe is moved into the next medium."""

    def __init__(self, rig, worlds):
        self.rig, self.worlds = rig, list(worlds)

    def readline(self) -> str:
        self.rig.board.set_scenario(self.worlds.pop(0))
        return "\n"


def test_soil_calibration_takes_the_dry_and_wet_points_from_the_probe_and_stores_them(deployed, cli):
    rig = deployed("soil", soil_world(0), batch_size=1)
    tech = Technician(rig, [soil_world(0), soil_world(45)])  # in the air, then in water
    res = cli("calibrate", "soil", "--port", rig.port, "--wet-vwc-pct", "45", "--readings", "3", stdin=tech)
    assert res.code == 0, res.out + res.err
    assert "DRY point" in res.out and "WET point" in res.out and "stable" in res.out
    cfg = json.loads(rig.flash_file("config.json").read_text())
    assert abs(cfg["soil_dry_mv"] - 2400) <= 5 and abs(cfg["soil_wet_mv"] - 1300) <= 5
    assert cfg["soil_wet_vwc_pct"] == 45.0 and cfg["batch_size"] == 1  # the rest of the config is kept


def test_soil_calibration_for_scripts_measures_one_point_and_keeps_the_other(deployed, cli):
    rig = deployed("soil", soil_world(45), soil_dry_mv=2400, soil_wet_mv=1000)
    res = cli("calibrate", "soil", "-p", rig.port, "--yes", "--only", "wet", "--readings", "3", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["changed"] and set(out["points"]) == {"wet", "dry"}
    assert len(out["points"]["wet"]["readings"]) >= 3 and out["points"]["dry"]["readings"] == []
    cfg = json.loads(rig.flash_file("config.json").read_text())
    assert cfg["soil_dry_mv"] == 2400 and abs(cfg["soil_wet_mv"] - 1300) <= 5


def test_a_probe_that_reads_the_same_wet_and_dry_is_refused_and_nothing_is_written(deployed, cli):
    rig = deployed("soil", soil_world(20))
    before = rig.flash_file("config.json").read_text()
    res = cli("calibrate", "soil", "-p", rig.port, "--readings", "3", stdin=Technician(rig, [soil_world(20)] * 2))
    assert res.code == 2 and "too close" in res.err
    assert rig.flash_file("config.json").read_text() == before


def test_fill_calibration_sets_the_empty_distance_from_the_median_reading(deployed, cli):
    world = {"kind": "fill", "fill_start": 0, "fill_per_day": 0, "empty_m": 1.42, "temp_swing": 0}
    rig = deployed("fill", world, fill_sensor="a02yyuw")
    res = cli("calibrate", "fill", "-p", rig.port, "--yes", "--readings", "3", "--json")
    assert res.code == 0, res.err
    settings = json.loads(res.out)["settings"]
    assert abs(settings["empty_distance_m"] - 1.42) <= 0.005 and settings["full_distance_m"] == 0.10
    cfg = json.loads(rig.flash_file("config.json").read_text())
    assert (cfg["empty_distance_m"], cfg["full_distance_m"]) == (settings["empty_distance_m"], 0.1)


def test_calibrating_a_board_set_up_for_the_other_kind_is_refused(deployed, cli):
    rig = deployed("soil", soil_world(20))
    res = cli("calibrate", "fill", "-p", rig.port, "--yes")
    assert res.code == 2 and "configured as a soil node" in res.err


def test_a_dry_run_measures_but_leaves_the_config_alone(deployed, cli):
    world = {"kind": "fill", "fill_start": 0, "fill_per_day": 0, "empty_m": 1.1, "temp_swing": 0}
    rig = deployed("fill", world)
    before = rig.flash_file("config.json").read_text()
    res = cli("calibrate", "fill", "-p", rig.port, "--yes", "--readings", "3", "--dry-run")
    assert res.code == 0 and "nothing written" in res.out
    assert rig.flash_file("config.json").read_text() == before
