"""Optional platform mappings: SensorThings Observations and FIWARE Smart Data Models (units converted)."""

from __future__ import annotations

import json

import pytest

from citynode.sinks import fiware, sensorthings
from citynode.sinks.sensorthings import SensorThingsSettings

SOIL = {
    "message_id": "cbb620ea-6bdc-55b5-8fe0-b43eb512f5ad", "device_id": "tree-0001", "dev_eui": "ac1f09fffe000001",
    "kind": "soil", "asset_id": "T-0001", "location": {"type": "Point", "coordinates": [13.405, 52.52]},
    "time": "2026-05-04T09:19:15.775Z", "received_at": "2026-05-04T09:34:15.775Z", "fcnt": 42,
    "measurements": {"vwc_pct": 23.4, "soil_temperature_c": 12.5, "soil_tension_kpa": 320, "soil_ec_us_cm": 350},
    "rf": {"rssi_dbm": -84, "snr_db": 9.25},
}
FILL = {
    "message_id": "7cec911d-f1d2-518b-a3b9-bf603787abf9", "device_id": "glass-0002", "dev_eui": "ac1f09fffe000002",
    "kind": "fill", "asset_id": "GC-0002", "location": None, "time": "2026-05-04T10:15:45.789Z",
    "received_at": "2026-05-04T10:15:45.789Z", "fcnt": 17,
    "measurements": {"fill_pct": 112.0, "distance_m": 0.12, "temperature_c": 9}, "rf": {"rssi_dbm": -35, "snr_db": 5},
}


def test_observation_per_measurement_to_the_configured_datastreams():
    pubs = sensorthings.observations(SOIL, SensorThingsSettings(), {"vwc_pct": 101, "soil_temperature_c": 102})
    assert [p.topic for p in pubs] == ["v1.1/Datastreams(101)/Observations", "v1.1/Datastreams(102)/Observations"]
    body = json.loads(pubs[0].payload)
    assert body == {"phenomenonTime": SOIL["time"], "resultTime": SOIL["received_at"], "result": 23.4,
                    "parameters": {"rssi": -84, "snr": 9.25, "fcnt": 42, "message_id": SOIL["message_id"]}}
    assert pubs[0].qos == 1 and not pubs[0].retain and pubs[0].key.startswith(SOIL["message_id"])


def test_datastream_ids_from_the_settings_table_or_a_template_with_text_ids_quoted():
    table = SensorThingsSettings(datastreams={"glass-0002": {"fill_pct": 7}})
    assert [p.topic for p in sensorthings.observations(FILL, table)] == ["v1.1/Datastreams(7)/Observations"]
    rule = SensorThingsSettings(version="v1.0", id_template="{device_id}-{measurement}")
    topics = [p.topic for p in sensorthings.observations(FILL, rule)]
    assert "v1.0/Datastreams('glass-0002-fill_pct')/Observations" in topics and len(topics) == 3


def test_missing_values_and_unsafe_ids_make_no_observation():
    reading = dict(SOIL, measurements={"vwc_pct": None, "soil_temperature_c": 12.5})
    pubs = sensorthings.observations(reading, SensorThingsSettings(id_template="x+{measurement}#"))
    assert pubs == []
    assert sensorthings.topic_for("v1.1", "a/b") is None and sensorthings.topic_for("v1.1", -1) is None


def test_fill_reading_becomes_a_waste_container_with_filling_level_as_a_ratio_capped_at_one():
    entity = fiware.entity(FILL)
    assert entity == {"id": "urn:ngsi-ld:WasteContainer:GC-0002", "type": "WasteContainer", "fillingLevel": 1.0,
                      "temperature": 9, "refDevice": ["urn:ngsi-ld:Device:glass-0002"],
                      "dateObserved": FILL["time"], "TimeInstant": FILL["time"]}
    assert fiware.entity(dict(FILL, measurements={"fill_pct": 82, "temperature_c": None}))["fillingLevel"] == 0.82


def test_soil_reading_becomes_a_greenspace_record_with_si_units():
    entity = fiware.entity(SOIL)
    assert entity["type"] == "GreenspaceRecord" and entity["id"] == "urn:ngsi-ld:GreenspaceRecord:tree-0001"
    assert entity["soilMoistureVwc"] == pytest.approx(0.234)
    assert entity["soilMoistureEc"] == pytest.approx(0.035)  # 350 µS/cm = 0.035 S/m
    assert entity["soilMoisturePressure"] == 320 and entity["soilTemperature"] == 12.5
    assert entity["location"] == SOIL["location"] and entity["refDevice"] == "urn:ngsi-ld:Device:tree-0001"


def test_fiware_topic_is_a_template_and_unsafe_results_are_dropped():
    [pub] = fiware.entities(SOIL, "citynode")
    assert pub.topic == "citynode/fiware/GreenspaceRecord/tree-0001"
    assert fiware.entities(SOIL, "citynode", "{base}/#/{type}") == []
    assert fiware.entities(dict(SOIL, kind="unknown"), "citynode") == []
