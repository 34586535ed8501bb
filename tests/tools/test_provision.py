"""`citynode provision`: identities from the modem, keys made once and never shown, boards provisioned one after
another from a sheet, resumable, and files the bridge and the network servers can import."""

from __future__ import annotations

import json
import re
import stat

from citynode.registry import Registry
from citynode.tools.keystore import KeyStore

SHEET = "name;kind;asset_id;lat;lon;sensor;empty_distance_m;labels\n" \
        "tree-0001;soil;T-0001;52,5200;13,4050;capacitive;;district=mitte\n" \
        "glass-0002;fill;GC-0002;52.5210;13.4100;a02yyuw;1.35;district=mitte\n"


def all_keys(out_dir) -> list[str]:
    keys = []
    for ident in KeyStore(out_dir).all().values():
        keys += [ident.app_key, ident.p2p_key]
    return keys


def leaked(text: str, keys: list[str]) -> list[str]:
    """Keys found in `text` in any case, with or without separators."""
    flat = re.sub(r"[^0-9a-f]", "", text.lower())
    return [k for k in keys if k in text.lower() or k in flat]


class SwapBoards:
    """stdin of a technician: at each prompt the next board is plugged into the same port (a stable link)."""

    def __init__(self, make_rig, link, kinds):
        self.make_rig, self.link, self.kinds, self.rigs = make_rig, link, list(kinds), []

    def readline(self) -> str:
        if self.rigs:
            self.rigs[-1].board.close()  # the previous board is unplugged ...
        n = len(self.rigs)
        self.rigs.append(self.make_rig(self.kinds[n], dev_eui=f"AC1F09FFFE00C10{n + 1}", link=self.link))
        return "\n"  # ... and the next one plugged in before Enter

    def isatty(self) -> bool:
        return True


def test_bulk_provisioning_sets_up_boards_one_after_another_and_never_prints_a_key(make_rig, cli, tmp_path):
    sheet, out = tmp_path / "sites.csv", tmp_path / "out"
    sheet.write_text(SHEET)
    link = tmp_path / "ttyUSB0"
    stdin = SwapBoards(make_rig, link, ["soil", "fill"])
    res = cli("provision", "--port", link, "--sheet", sheet, "--out", out, "--network", "tts", stdin=stdin)
    assert res.code == 0, res.out + res.err
    assert res.out.count("Connect the board for") == 2 and "2 of 2 node(s) done" in res.out
    keys = all_keys(out)
    assert len(keys) == 4 and leaked(res.out + res.err, keys) == []
    reg = Registry.load(out / "registry.toml")
    tree, glass = reg.by_name("tree-0001"), reg.by_name("glass-0002")
    assert (tree.dev_eui, glass.dev_eui) == ("ac1f09fffe00c101", "ac1f09fffe00c102")  # the modems' own DevEUIs
    assert (tree.location, tree.source, glass.empty_distance_m) == ((52.52, 13.405), "tts", 1.35)
    store = KeyStore(out)
    for rig, name in zip(stdin.rigs, ("tree-0001", "glass-0002"), strict=True):
        on_board = json.loads(rig.flash_file("secrets.json").read_text())
        assert on_board == {"join_eui": "0000000000000000", "app_key": store.get(name).app_key}
        assert json.loads(rig.flash_file("config.json").read_text())["dev_eui"] == store.get(name).dev_eui
        assert stat.S_IMODE(store.path(name).stat().st_mode) == 0o600
    tts = (out / "tts-devices.json").read_text()
    assert store.get("glass-0002").app_key.upper() in tts and "glass-0002" in tts


def test_an_interrupted_run_continues_at_the_first_unfinished_row_and_keeps_the_keys(make_rig, cli, tmp_path):
    sheet, out = tmp_path / "sites.csv", tmp_path / "out"
    first = make_rig("soil", dev_eui="AC1F09FFFE00C101")
    missing = tmp_path / "ttyUSB1"  # the second board is not plugged in yet
    sheet.write_text(f"name,kind,port\ntree-0001,soil,{first.port}\ntree-0002,soil,{missing}\n")
    res = cli("provision", "--sheet", sheet, "--out", out, "--yes", "--json", "--no-check")
    assert res.code == 2
    rows = {r["name"]: r for r in json.loads(res.out)["rows"]}
    assert rows["tree-0001"]["status"] == "done" and rows["tree-0002"]["error"]["error"] == "port_missing"
    kept = KeyStore(out).path("tree-0001").read_text()
    first.board.close()  # board 1 is gone: a second run must not need it
    second = make_rig("soil", dev_eui="AC1F09FFFE00C102", link=missing)
    again = cli("provision", "--sheet", sheet, "--out", out, "--yes", "--json", "--no-check")
    assert again.code == 0, again.out + again.err
    rows = {r["name"]: r for r in json.loads(again.out)["rows"]}
    assert (rows["tree-0001"]["status"], rows["tree-0002"]["status"]) == ("already_done", "done")
    assert KeyStore(out).path("tree-0001").read_text() == kept
    assert json.loads(second.flash_file("config.json").read_text())["dev_eui"] == "ac1f09fffe00c102"
    assert {d.name for d in Registry.load(out / "registry.toml")} == {"tree-0001", "tree-0002"}
    assert leaked(res.out + res.err + again.out + again.err, all_keys(out)) == []


def test_without_a_board_identities_and_files_are_made_once_and_reused(cli, tmp_path):
    out = tmp_path / "out"
    args = ["provision", "--no-flash", "--name", "tree-0009", "--kind", "soil", "--lat", "52.5", "--lon", "13.4",
            "--set", "soil_dry_mv=2480", "--set", "soil_wet_mv=1210", "--out", out, "--json"]
    res = cli(*args)
    assert res.code == 0, res.err
    row = json.loads(res.out)["rows"][0]
    ident = KeyStore(out).get("tree-0009")
    assert row["identity"]["dev_eui_source"] == "generated" and row["identity"]["app_key"] == ident.app_key[:4] + \
        "…" + ident.app_key[-2:]
    cfg = json.loads((out / "nodes" / "tree-0009" / "config.json").read_text())
    assert (cfg["soil_dry_mv"], cfg["latitude"], cfg["dev_eui"]) == (2480, 52.5, ident.dev_eui)
    assert stat.S_IMODE((out / "nodes" / "tree-0009" / "secrets.json").stat().st_mode) == 0o600
    assert leaked(res.out + res.err, [ident.app_key, ident.p2p_key]) == []
    again = json.loads(cli(*args).out)["rows"][0]
    assert again["status"] == "already_done" and KeyStore(out).get("tree-0009") == ident


def test_a_dry_run_makes_no_keys_and_writes_no_files(make_rig, cli, tmp_path):
    rig = make_rig("soil")
    out = tmp_path / "out"
    res = cli("provision", "--port", rig.port, "--name", "tree-0001", "--kind", "soil", "--out", out, "--dry-run",
              "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["rows"][0]["status"] == "would"
    assert not out.exists() and rig.listing() == {}


def test_a_sheet_error_stops_before_any_board_is_touched(make_rig, cli, tmp_path):
    rig = make_rig("soil")
    sheet = tmp_path / "sites.csv"
    sheet.write_text(f"name,kind,port,sample_interval_s\nt1,soil,{rig.port},900\nt2,soil,{rig.port},5\n")
    res = cli("provision", "--sheet", sheet, "--out", tmp_path / "out", "--yes")
    assert res.code == 2 and "sites.csv row 3: sample_interval_s" in res.err
    assert rig.listing() == {}
