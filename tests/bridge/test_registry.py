"""The device registry: TOML and a technician's CSV, validated with errors that name the row and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citynode.registry import Registry, RegistryError, load_devices, make_device, parse_csv, parse_toml

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "000102030405060708090a0b0c0d0e0f"


def test_toml_registry_loads_devices_with_geometry_labels_thresholds_and_keys():
    reg = Registry.load(FIXTURES / "registry.toml")
    assert len(reg) == 3
    tree = reg.get("AC1F09FFFE000001")
    assert tree.name == "tree-0001" and tree.kind == "soil" and tree.asset_id == "T-0001"
    assert tree.location == (52.52, 13.405)
    assert tree.labels == {"district": "mitte", "species": "tilia"}
    assert tree.datastreams == {"vwc_pct": 101, "soil_temperature_c": 102}
    glass = reg.by_name("glass-0002")
    assert glass.empty_distance_m == 1.3 and glass.full_distance_m == 0.25 and glass.has_geometry
    assert glass.thresholds == {"fill_collection_pct": 75.0}
    p2p = reg.get("ac1f09fffe000003")
    assert p2p.p2p_key == bytes.fromhex(KEY) and p2p.source == "serial"


def test_csv_sheet_with_semicolons_decimal_commas_and_a_notes_column_loads_like_toml():
    reg = Registry.load(FIXTURES / "registry.csv")
    tree, glass = reg.get("ac1f09fffe000001"), reg.get("ac1f09fffe000002")
    assert tree.location == (52.52, 13.405) and tree.expected_interval_s == 900
    assert glass.thresholds == {"fill_collection_pct": 75.0} and glass.labels == {"district": "mitte"}


def test_lookups_ignore_case_and_separators_in_dev_eui_and_case_in_names():
    reg = Registry.load(FIXTURES / "registry.toml")
    assert reg.get("ac-1f-09-ff-fe-00-00-01").name == "tree-0001"
    assert reg.get("AC:1F:09:FF:FE:00:00:02").name == "glass-0002"
    assert reg.by_name("TREE-0001").dev_eui == "ac1f09fffe000001"
    assert reg.find("ac1f09fffe000002").name == "glass-0002"
    assert reg.get("nonsense") is None and reg.by_name("nobody") is None


def test_p2p_key_never_appears_in_repr_or_errors():
    device = make_device({"dev_eui": "AC1F09FFFE000003", "kind": "soil", "p2p_key": KEY}, "x")
    assert KEY not in repr(device) and "p2p_key" not in repr(device)
    with pytest.raises(RegistryError) as e:
        make_device({"dev_eui": "AC1F09FFFE000003", "kind": "soil", "p2p_key": KEY[:-2] + "zz"}, "x")
    assert KEY[:-2] not in str(e.value)


@pytest.mark.parametrize("entry, key, fragment", [
    ({"kind": "soil"}, "dev_eui", "required"),
    ({"dev_eui": "12345", "kind": "soil"}, "dev_eui", "16 hex"),
    ({"dev_eui": "AC1F09FFFE000001"}, "kind", "required"),
    ({"dev_eui": "AC1F09FFFE000001", "kind": "glass"}, "kind", "soil, fill"),
    ({"dev_eui": "AC1F09FFFE000001", "kind": "soil", "name": "Tree 1"}, "name", "a-z"),
    ({"dev_eui": "AC1F09FFFE000001", "kind": "soil", "lat": 52.5}, "lon", "together"),
    ({"dev_eui": "AC1F09FFFE000001", "kind": "soil", "lat": 95, "lon": 0}, "lat", "outside"),
    ({"dev_eui": "AC1F09FFFE000001", "kind": "fill", "empty_distance_m": 0.2, "full_distance_m": 1.0},
     "full_distance_m", "less than"),
    ({"dev_eui": "AC1F09FFFE000001", "kind": "soil", "empty_distance_m": 1.2, "full_distance_m": 0.2},
     "empty_distance_m", "fill nodes"),
    ({"dev_eui": "AC1F09FFFE000001", "kind": "soil", "expected_interval_s": 5}, "expected_interval_s", "outside"),
    ({"dev_eui": "AC1F09FFFE000001", "kind": "soil", "source": "lorawan"}, "source", "chirpstack"),
    ({"dev_eui": "AC1F09FFFE000001", "kind": "soil", "thresholds": {"fill_pct": 3}}, "thresholds.fill_pct",
     "unknown threshold"),
    ({"dev_eui": "AC1F09FFFE000001", "kind": "soil", "colour": "red"}, "colour", "unknown key"),
    ({"dev_eui": "AC1F09FFFE000001", "kind": "soil", "lat": "north", "lon": 1}, "lat", "not a number"),
    ({"dev_eui": "ac1f09fffe00000\n-", "kind": "soil"}, "dev_eui", "16 hex"),  # a newline is not a separator
    ({"dev_eui": "AC1F09FFFE000001", "kind": "soil", "datastreams": {"vwc_pct": "\u00b2"}}, "datastreams.vwc_pct",
     "text id"),  # "²" is a digit to str.isdigit() but not to int()
])
def test_invalid_entries_raise_errors_naming_where_and_which_key(entry, key, fragment):
    with pytest.raises(RegistryError) as e:
        make_device(entry, "devices.toml [[device]] #4")
    assert e.value.key == key
    assert "devices.toml [[device]] #4" in str(e.value) and fragment in str(e.value)


def test_csv_errors_name_the_row_number_of_the_sheet():
    text = "dev_eui,kind,name\nAC1F09FFFE000001,soil,tree-1\nAC1F09FFFE000002,bin,c-2\n"
    with pytest.raises(RegistryError) as e:
        parse_csv(text, "sheet.csv")
    assert "sheet.csv row 3" in str(e.value) and e.value.key == "kind"


def test_a_misspelt_csv_column_is_an_error_not_a_silently_dropped_setting():
    with pytest.raises(RegistryError) as e:
        parse_csv("dev_eui,kind,expected_intervall_s\nAC1F09FFFE000001,soil,900\n", "sheet.csv")
    assert e.value.key == "expected_intervall_s"


def test_duplicate_dev_euis_and_names_are_refused():
    a = make_device({"dev_eui": "AC1F09FFFE000001", "kind": "soil", "name": "a"}, "x")
    b = make_device({"dev_eui": "ac1f09fffe000001", "kind": "soil", "name": "b"}, "x")
    c = make_device({"dev_eui": "AC1F09FFFE000002", "kind": "soil", "name": "a"}, "x")
    with pytest.raises(RegistryError, match="listed twice"):
        Registry([a, b])
    with pytest.raises(RegistryError, match="used by"):
        Registry([a, c])


def test_name_defaults_to_the_dev_eui():
    assert make_device({"dev_eui": "AC1F09FFFE00000A", "kind": "fill"}, "x").name == "ac1f09fffe00000a"


def test_reload_picks_up_changes_and_keeps_the_old_table_when_the_file_is_broken(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text('[[device]]\ndev_eui = "AC1F09FFFE000001"\nkind = "soil"\nname = "t1"\n')
    reg = Registry.load(path)
    assert reg.reload() is False
    path.write_text('[[device]]\ndev_eui = "AC1F09FFFE000001"\nkind = "soil"\nname = "t1-renamed"\n')
    assert reg.reload() is True and reg.get("ac1f09fffe000001").name == "t1-renamed"
    path.write_text('[[device]]\ndev_eui = "oops"\nkind = "soil"\n')
    with pytest.raises(RegistryError):
        reg.reload()
    assert reg.get("ac1f09fffe000001").name == "t1-renamed"


def test_unreadable_or_unknown_files_raise_registry_errors(tmp_path):
    with pytest.raises(RegistryError, match="cannot read"):
        load_devices(tmp_path / "missing.toml")
    (tmp_path / "devices.json").write_text("{}")
    with pytest.raises(RegistryError, match="format"):
        load_devices(tmp_path / "devices.json")
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe[[device]]")
    with pytest.raises(RegistryError, match="UTF-8"):
        load_devices(tmp_path / "bad.toml")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_toml_text_loads_or_raises_registry_error_only(text):
    try:
        devices = parse_toml(text, "fuzz.toml")
    except RegistryError:
        return
    assert all(d.kind in ("soil", "fill") for d in devices)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_csv_text_loads_or_raises_registry_error_only(text):
    try:
        parse_csv(text, "fuzz.csv")
    except RegistryError:
        pass


_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40),
                    st.lists(st.integers(), max_size=3),
                    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3))
_keys = st.sampled_from(["dev_eui", "name", "kind", "asset_id", "lat", "lon", "empty_distance_m", "full_distance_m",
                         "expected_interval_s", "labels", "p2p_key", "source", "thresholds", "datastreams", "bogus"])


@settings(max_examples=400)
@given(st.dictionaries(_keys, _values, max_size=10))
def test_any_entry_with_wrong_types_gives_a_device_or_a_registry_error(entry):
    try:
        device = make_device(entry, "fuzz")
    except RegistryError:
        return
    assert len(device.dev_eui) == 16
