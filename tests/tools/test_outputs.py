"""What provisioning writes for the bridge and the network servers: the registry the bridge really loads, and
the documented TTS and ChirpStack import formats."""

from __future__ import annotations

import csv
import io
import json
import stat

import pytest

from citynode.registry import Registry
from citynode.tools.errors import OutputConflict
from citynode.tools.identity import Identity
from citynode.tools.outputs import NetworkSettings, record, write_outputs
from citynode.tools.sitesheet import parse_sheet

SHEET = """name,kind,asset_id,lat,lon,radio,empty_distance_m,full_distance_m,batch_size,labels
tree-0001,soil,T-0001,52.52,13.405,,,,4,district=mitte;species=tilia
glass-0002,fill,GC-0002,52.521,13.41,,1.3,0.25,1,
tree-0003-p2p,soil,T-0003,,,rak3172_p2p,,,1,
"""


def json_stream(text: str) -> list[dict]:
    """Objects one after another, as `ttn-lw-cli end-devices create` reads them."""
    decoder, pos, out = json.JSONDecoder(), 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return out
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)


@pytest.fixture
def done(tmp_path):
    sites = parse_sheet(SHEET, "s.csv")
    idents, recs = {}, {}
    for n, site in enumerate(sites, start=1):
        ident = Identity.new(f"ac1f09fffe00000{n}", "modem", "70b3d57ed005c17e")
        cfg = site.config("esp32_devkit", ident.dev_eui)
        idents[site.name] = ident
        recs[site.name] = record(site.name, ident, cfg, site.labels, "tts", site.row)
    return recs, idents


@pytest.mark.parametrize("suffix", ["toml", "csv"])
def test_the_registry_written_loads_with_the_bridges_own_loader(tmp_path, done, suffix):
    recs, idents = done
    path = tmp_path / f"registry.{suffix}"
    write_outputs(tmp_path, path, recs, idents, NetworkSettings("tts"))
    reg = Registry.load(path)
    tree, glass, p2p = reg.get("ac1f09fffe000001"), reg.get("ac1f09fffe000002"), reg.get("ac1f09fffe000003")
    assert (tree.name, tree.kind, tree.asset_id, tree.location, tree.source) == \
        ("tree-0001", "soil", "T-0001", (52.52, 13.405), "tts")
    assert tree.labels == {"district": "mitte", "species": "tilia"} and tree.expected_interval_s == 3600
    assert (glass.empty_distance_m, glass.full_distance_m) == (1.3, 0.25)
    assert p2p.source == "serial" and p2p.p2p_key == bytes.fromhex(idents["tree-0003-p2p"].p2p_key)
    assert tree.p2p_key is None  # LoRaWAN nodes' P2P keys stay out of the registry
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a P2P key


def test_tts_json_is_a_stream_of_end_devices_with_the_documented_fields(tmp_path, done):
    recs, idents = done
    paths = write_outputs(tmp_path, tmp_path / "registry.toml", recs, idents, NetworkSettings("tts"))
    devices = json_stream(open(paths["tts_json"]).read())
    assert [d["ids"]["device_id"] for d in devices] == ["tree-0001", "glass-0002"]  # P2P nodes need no LNS
    d = devices[0]
    assert d["ids"] == {"device_id": "tree-0001", "dev_eui": "AC1F09FFFE000001", "join_eui": "70B3D57ED005C17E"}
    assert (d["lorawan_version"], d["lorawan_phy_version"], d["frequency_plan_id"], d["supports_join"]) == \
        ("MAC_V1_0_3", "PHY_V1_0_3_REV_A", "EU_863_870_TTN", True)
    assert d["root_keys"]["app_key"]["key"] == idents["tree-0001"].app_key.upper()
    assert d["locations"]["user"] == {"latitude": 52.52, "longitude": 13.405, "source": "SOURCE_REGISTRY"}


def test_tts_csv_is_semicolon_separated_with_the_required_columns(tmp_path, done):
    recs, idents = done
    paths = write_outputs(tmp_path, tmp_path / "registry.toml", recs, idents, NetworkSettings("tts"))
    rows = list(csv.DictReader(io.StringIO(open(paths["tts_csv"]).read()), delimiter=";"))
    assert {"dev_eui", "join_eui", "app_key", "frequency_plan_id", "lorawan_version", "lorawan_phy_version"} <= \
        set(rows[0])
    assert (rows[1]["id"], rows[1]["dev_eui"], rows[1]["app_key"]) == \
        ("glass-0002", "AC1F09FFFE000002", idents["glass-0002"].app_key.upper())


def test_chirpstack_requests_create_the_device_then_its_keys_with_the_appkey_as_nwk_key(tmp_path, done):
    recs, idents = done
    net = NetworkSettings("chirpstack", chirpstack_application="app-uuid", chirpstack_profile="profile-uuid")
    paths = write_outputs(tmp_path, tmp_path / "registry.toml", recs, idents, net)
    reqs = [json.loads(line) for line in open(paths["chirpstack"])]
    create, keys = reqs[0], reqs[1]
    assert (create["method"], create["path"]) == ("POST", "/api/devices")
    assert create["body"]["device"] == {
        "devEui": "ac1f09fffe000001", "name": "tree-0001", "description": "citynode soil node, asset T-0001",
        "applicationId": "app-uuid", "deviceProfileId": "profile-uuid", "joinEui": "70b3d57ed005c17e",
        "tags": {"kind": "soil", "asset_id": "T-0001", "district": "mitte", "species": "tilia"},
        "skipFcntCheck": False, "isDisabled": False}
    assert keys == {"method": "POST", "path": "/api/devices/ac1f09fffe000001/keys",
                    "body": {"deviceKeys": {"devEui": "ac1f09fffe000001", "nwkKey": idents["tree-0001"].app_key}}}
    assert stat.S_IMODE((tmp_path / "chirpstack-devices.jsonl").stat().st_mode) == 0o600


def test_a_registry_citynode_did_not_write_is_never_overwritten(tmp_path, done):
    recs, idents = done
    theirs = tmp_path / "registry.toml"
    theirs.write_text('[[device]]\ndev_eui = "AC1F09FFFE0000FF"\nkind = "soil"\n')
    with pytest.raises(OutputConflict):
        write_outputs(tmp_path, theirs, recs, idents, NetworkSettings())
    assert "0000FF" in theirs.read_text()
