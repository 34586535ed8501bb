"""The CSV sheet of sites: every setting checked by the node's own schema, errors naming row and column."""

from __future__ import annotations

import pytest

from citynode.tools.errors import SheetError
from citynode.tools.sitesheet import parse_sheet

SHEET = """name;kind;asset_id;lat;lon;sensor;interval_s;empty_distance_m;full_distance_m;labels;board;notes
tree-0001;soil;T-0001;52,5200;13,4050;smt100;900;;;district=mitte;;planted 2019
glass-0002;fill;GC-0002;52.5210;13.4100;jsn_sr04t_pulse;3600;1.30;0.25;district=mitte;rak11200;brown glass
"""


def test_sheet_rows_become_node_configs_validated_by_the_firmware_schema():
    tree, glass = parse_sheet(SHEET, "sites.csv")
    cfg = tree.config("esp32_devkit", "ac1f09fffe000001")
    assert (cfg["kind"], cfg["soil_sensor"], cfg["sdi12_model"], cfg["sample_interval_s"]) == \
        ("soil", "sdi12", "smt100", 900)
    assert (cfg["latitude"], cfg["longitude"], cfg["asset_id"], cfg["dev_eui"]) == \
        (52.52, 13.405, "T-0001", "ac1f09fffe000001")
    assert tree.labels == {"district": "mitte"}
    g = glass.config("rak11200")
    assert (glass.board, g["fill_sensor"], g["empty_distance_m"], g["full_distance_m"]) == \
        ("rak11200", "jsn_sr04t_pulse", 1.3, 0.25)


def test_an_unknown_column_is_rejected_by_name():
    with pytest.raises(SheetError) as e:
        parse_sheet("name,kind,intervall_s\nt1,soil,900\n", "sites.csv")
    assert (e.value.where, e.value.column) == ("sites.csv header", "intervall_s")


def test_a_setting_the_node_would_refuse_names_its_row_and_column():
    with pytest.raises(SheetError) as e:
        parse_sheet("name,kind,batch_size\nt1,soil,4\nt2,soil,40\n", "sites.csv")
    assert (e.value.where, e.value.column) == ("sites.csv row 3", "batch_size")
    assert "1..16" in e.value.reason


def test_a_full_distance_not_below_the_empty_distance_is_refused():
    with pytest.raises(SheetError) as e:
        parse_sheet("name,kind,empty_distance_m,full_distance_m\nc1,fill,0.5,0.9\n", "sites.csv")
    assert e.value.column == "full_distance_m"


@pytest.mark.parametrize("row, column", [("t1,soil,x", "sensor"), ("T 1,soil,capacitive", "name"),
                                         ("t1,tree,capacitive", "kind")])
def test_bad_cells_are_reported_with_their_column(row, column):
    with pytest.raises(SheetError) as e:
        parse_sheet(f"name,kind,sensor\n{row}\n", "s.csv")
    assert e.value.column == column


def test_two_rows_with_the_same_name_are_refused():
    with pytest.raises(SheetError) as e:
        parse_sheet("name,kind\nt1,soil\nt1,fill\n", "s.csv")
    assert (e.value.where, e.value.column) == ("s.csv row 3", "name")
