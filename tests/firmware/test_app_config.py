# The node's config: validation falls back key by key to safe defaults and says what it replaced.
from citynode_fw.app import config


def test_an_empty_object_gives_the_defaults_without_errors():
    cfg, errors = config.validate({})
    assert errors == [] and cfg == config.defaults()


def test_each_bad_value_is_replaced_by_its_default_and_reported_by_key():
    cfg, errors = config.validate({'kind': 'tank', 'batch_size': 40, 'adr': 'yes', 'sample_interval_s': 1800,
                                   'dev_eui': 'xyz', 'colour': 'red'})
    assert cfg['kind'] == 'soil' and cfg['batch_size'] == 4 and cfg['adr'] is True and cfg['dev_eui'] == ''
    assert cfg['sample_interval_s'] == 1800
    assert sorted(e.split(':')[0] for e in errors) == ['adr', 'batch_size', 'colour', 'dev_eui', 'kind']


def test_a_full_distance_beyond_the_empty_distance_reverts_both():
    cfg, errors = config.validate({'empty_distance_m': 0.5, 'full_distance_m': 0.9})
    assert (cfg['empty_distance_m'], cfg['full_distance_m']) == (1.2, 0.2) and errors


def test_soil_calibration_must_read_higher_when_dry():
    cfg, errors = config.validate({'soil_dry_mv': 1200, 'soil_wet_mv': 2400})
    assert (cfg['soil_dry_mv'], cfg['soil_wet_mv']) == (0, 0) and errors
    cfg, errors = config.validate({'soil_dry_mv': 2400, 'soil_wet_mv': 1200})
    assert (cfg['soil_dry_mv'], cfg['soil_wet_mv']) == (2400, 1200) and errors == []


def test_intervals_are_whole_minutes_because_the_payload_carries_minutes():
    cfg, _ = config.validate({'sample_interval_s': 1000})
    assert cfg['sample_interval_s'] == 960


def test_unreadable_or_missing_files_mean_defaults_and_an_error():
    assert config.parse(None)[1] and config.parse('{not json')[1] and config.parse('[1, 2]')[1]
    assert config.parse(None)[0] == config.defaults()


def test_the_file_text_round_trips():
    cfg, _ = config.validate({'kind': 'fill', 'fill_alarm_pct': 80})
    again, errors = config.parse(config.dumps(cfg))
    assert again == cfg and errors == []


def test_the_checksum_follows_operational_keys_only():
    base = config.defaults()
    c0 = config.checksum(base)
    assert config.checksum(dict(base, asset_id='container-17')) == c0
    assert config.checksum(dict(base, batch_size=5)) != c0
    assert config.checksum(dict(base, battery_low_v=3.3000001)) == c0  # milli-units: float noise ignored
