# Downlinks are validated against the config schema and the node's kind before anything changes.
from citynode_fw.app import config, downlinks

from citynode_codec import encode


def _apply(cfg, message, **data):
    fport, payload = encode(message, data)
    return downlinks.apply(cfg, fport, payload)


def test_set_thresholds_changes_only_the_thresholds_given():
    cfg = config.defaults()
    new, ack, action = _apply(cfg, 'set_thresholds', seq=7, fill_alarm_pct=80, soil_dry_pct=None,
                              battery_low_v=None)
    assert ack == (7, 'set_thresholds', 'applied') and action is None
    assert new['fill_alarm_pct'] == 80 and new['soil_dry_pct'] == cfg['soil_dry_pct']


def test_geometry_is_for_fill_nodes_and_must_be_consistent():
    soil = config.defaults()
    fill = dict(soil, kind='fill')
    assert _apply(soil, 'set_geometry', seq=1, empty_distance_m=1.3, full_distance_m=0.2)[1][2] == 'not_applicable'
    assert _apply(fill, 'set_geometry', seq=1, empty_distance_m=0.3, full_distance_m=0.5)[1][2] == 'invalid'
    new, ack, _ = _apply(fill, 'set_geometry', seq=1, empty_distance_m=1.3, full_distance_m=None)
    assert ack[2] == 'applied' and new['empty_distance_m'] == 1.3 and new['full_distance_m'] == 0.2


def test_calibration_must_read_higher_when_dry():
    soil = config.defaults()
    assert _apply(soil, 'set_calibration', seq=2, soil_dry_mv=1000, soil_wet_mv=2000)[1][2] == 'invalid'
    new, ack, _ = _apply(soil, 'set_calibration', seq=2, soil_dry_mv=2480, soil_wet_mv=1210, soil_wet_vwc_pct=45)
    assert ack[2] == 'applied' and (new['soil_dry_mv'], new['soil_wet_mv']) == (2480, 1210)


def test_status_and_reboot_requests_are_actions_not_config_changes():
    assert _apply(config.defaults(), 'request_status', seq=3) == (None, (3, 'request_status', 'applied'), 'status')
    assert _apply(config.defaults(), 'reboot', seq=4) == (None, (4, 'reboot', 'applied'), 'reboot')


def test_garbage_on_an_unknown_port_is_unsupported_and_changes_nothing():
    assert downlinks.apply(config.defaults(), 99, b'\x15\x0f') == (None, (5, 'none', 'unsupported'), None)
    assert downlinks.apply(config.defaults(), 20, b'\x15') == (None, (5, 'none', 'invalid'), None)
