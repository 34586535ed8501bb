# SDI-12 probes: command bytes on the wire, break/marking timing, service request, paging, CRC, retries,
# value parsing and mapping, and every failure becoming a flag.

from citynode_fw.drivers import sdi12
from citynode_fw.drivers.sdi12 import CS650, SDI12, TEROS12, crc16, crc_ascii, parse_values
from fakes import FakeClock
from sensor_fakes import FakeSDI12Line, FakeSDI12Sensor, TimedPin, sdi12_crc


def _bus(sensor=None, echo=False, fail_on_write=None, **kw):
    clock = FakeClock()
    sensors = [sensor] if sensor is not None else []
    line = FakeSDI12Line(clock, sensors, echo=echo, fail_on_write=fail_on_write)
    return SDI12(line, clock, **kw), line, clock


def _close(a, b, eps=1e-6):
    return a is not None and abs(a - b) < eps


# --- the measurement on the wire ------------------------------------------------------------------------

def test_measurement_sends_aM_then_aD0_and_maps_the_values():
    driver, line, _ = _bus(FakeSDI12Sensor(values=['+23.45', '+18.20']))
    r = driver.measure()
    assert line.written == [b'0M!', b'0D0!']
    assert r == {'vwc_pct': 23.45, 'soil_temperature_c': 18.2, 'raw_values': [23.45, 18.2], 'flags': [],
                 'error': None}


def test_every_command_follows_a_break_of_12_ms_and_a_marking_of_8_33_ms():
    driver, line, _ = _bus(FakeSDI12Sensor())
    driver.measure()
    ev = line.events
    writes = [i for i in range(len(ev)) if ev[i][0] == 'write']
    assert len(writes) == 2
    for i in writes:
        brk = ev[i - 1]
        assert brk[0] == 'break'
        assert brk[1] >= 12
        assert ev[i][2] - brk[2] >= 8.33  # marking between the end of the break and the command


def test_the_address_is_part_of_every_command():
    driver, line, _ = _bus(FakeSDI12Sensor(address='b'), address='b')
    r = driver.measure()
    assert line.written == [b'bM!', b'bD0!']
    assert r['error'] is None


def test_data_are_requested_as_soon_as_the_service_request_arrives():
    driver, line, _ = _bus(FakeSDI12Sensor(ttt=5, sr_ms=300))
    driver.measure()
    (m, _), (d0, t_d0) = line.writes_at()
    assert d0 == b'0D0!'
    assert 300 <= t_d0 < 1000  # not the announced 5 s


def test_without_a_service_request_data_are_requested_after_ttt_seconds():
    driver, line, _ = _bus(FakeSDI12Sensor(ttt=2, sr_ms=None))
    r = driver.measure()
    (_, t_m), (d0, t_d0) = line.writes_at()
    assert d0 == b'0D0!'
    assert t_d0 - t_m >= 2000
    assert r['error'] is None


def test_ttt_of_zero_means_the_data_are_ready_at_once():
    driver, line, _ = _bus(FakeSDI12Sensor(ttt=0))
    driver.measure()
    (_, t_m), (_, t_d0) = line.writes_at()
    assert t_d0 - t_m < 200


def test_values_spread_over_pages_are_collected_with_aD1():
    sensor = FakeSDI12Sensor(values=['+1877.57', '+22.4', '+123'], per_page=2)
    driver, line, _ = _bus(sensor, fields=TEROS12)
    r = driver.measure()
    assert line.written == [b'0M!', b'0D0!', b'0D1!']
    assert r['raw_values'] == [1877.57, 22.4, 123]


def test_additional_measurement_commands_carry_their_number():
    driver, line, _ = _bus(FakeSDI12Sensor(), measurement=1)
    driver.measure()
    assert line.written[0] == b'0M1!'
    driver, line, _ = _bus(FakeSDI12Sensor(), measurement=2, crc=True)
    driver.measure()
    assert line.written[0] == b'0MC2!'


def test_an_echo_of_the_command_is_stripped_from_the_reply():
    driver, line, _ = _bus(FakeSDI12Sensor(), echo=True)
    r = driver.measure()
    assert r['error'] is None
    assert r['vwc_pct'] == 23.45


def test_power_pin_is_on_for_the_warm_up_before_the_first_break_and_off_after():
    clock = FakeClock()
    line = FakeSDI12Line(clock, [FakeSDI12Sensor()])
    power = TimedPin(clock)
    r = SDI12(line, clock, power_pin=power, warmup_ms=500).measure()
    assert r['error'] is None
    assert [lv for _, lv in power.events] == [1, 0]
    first_break_end_ms = line.events[0][2]
    assert first_break_end_ms - power.events[0][0] // 1000 >= 500 + 12
    assert power.events[1][0] // 1000 >= line.writes_at()[-1][1]


# --- CRC ------------------------------------------------------------------------------------------------

def test_crc_matches_the_specification_example():
    assert crc_ascii(crc16(b'0+3.14')) == b'OqZ'


def test_crc_is_crc16_arc():
    assert crc16(b'123456789') == 0xBB3D  # the CRC-16/ARC check value


def test_crc_characters_are_printable_six_bit_groups():
    assert crc_ascii(0xFFFF) == bytes((0x4F, 0x7F, 0x7F))
    assert crc_ascii(0) == b'@@@'


def test_driver_and_test_sensor_crc_agree():
    for text in ('0+3.14', '1+23.45+18.20', 'z-0.001+9999999'):
        assert crc_ascii(crc16(text.encode())) == sdi12_crc(text).encode()


def test_aMC_replies_are_checked_and_the_crc_stripped():
    driver, line, _ = _bus(FakeSDI12Sensor(values=['+23.45', '+18.20']), crc=True)
    r = driver.measure()
    assert line.written == [b'0MC!', b'0D0!']
    assert r['vwc_pct'] == 23.45
    assert r['soil_temperature_c'] == 18.2
    assert r['error'] is None


def test_a_crc_mismatch_repeats_the_data_command():
    driver, line, _ = _bus(FakeSDI12Sensor(bad_crc=1), crc=True)
    r = driver.measure()
    assert line.written == [b'0MC!', b'0D0!', b'0D0!']
    assert r['error'] is None
    assert r['vwc_pct'] == 23.45


def test_persistent_crc_mismatch_is_a_crc_fault_after_three_retries():
    driver, line, _ = _bus(FakeSDI12Sensor(bad_crc=99), crc=True)
    r = driver.measure()
    assert line.written == [b'0MC!'] + [b'0D0!'] * 4
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'crc'
    assert r['vwc_pct'] is None


# --- retries and failures -------------------------------------------------------------------------------

def test_a_silent_sensor_is_a_timeout_fault_after_three_retries():
    driver, line, _ = _bus(FakeSDI12Sensor(silent=99))
    r = driver.measure()
    assert line.written == [b'0M!'] * 4
    assert r == {'vwc_pct': None, 'soil_temperature_c': None, 'raw_values': [], 'flags': ['sensor_fault'],
                 'error': 'timeout'}


def test_no_sensor_at_all_is_a_timeout_fault():
    driver, _, _ = _bus(None)
    r = driver.measure()
    assert r['error'] == 'timeout'
    assert r['flags'] == ['sensor_fault']


def test_a_retry_recovers_a_missed_command():
    driver, line, _ = _bus(FakeSDI12Sensor(silent=2))
    r = driver.measure()
    assert line.written == [b'0M!', b'0M!', b'0M!', b'0D0!']
    assert r['error'] is None


def test_retries_back_off_and_are_capped_at_three():
    driver, line, _ = _bus(FakeSDI12Sensor(silent=99), retries=10)
    driver.measure()
    writes = line.writes_at()
    assert len(writes) == 4
    gaps = [writes[i + 1][1] - writes[i][1] for i in range(len(writes) - 1)]
    assert gaps[0] < gaps[1] < gaps[2]


def test_garbage_replies_are_a_garbage_fault():
    driver, _, _ = _bus(FakeSDI12Sensor(garbage=99))
    r = driver.measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'garbage'


def test_a_reply_from_another_address_is_an_address_fault():
    driver, _, _ = _bus(FakeSDI12Sensor(foreign=99))
    r = driver.measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'address'


def test_a_sensor_with_no_values_is_a_no_data_fault():
    driver, line, _ = _bus(FakeSDI12Sensor(values=[], ttt=0))
    r = driver.measure()
    assert line.written == [b'0M!']
    assert r['error'] == 'no_data'


def test_fewer_values_than_announced_is_a_count_fault():
    driver, line, _ = _bus(FakeSDI12Sensor(values=['+23.45'], n=2, per_page=1))
    r = driver.measure()
    assert line.written == [b'0M!', b'0D0!', b'0D1!']  # aD1! comes back empty
    assert r['vwc_pct'] == 23.45
    assert r['soil_temperature_c'] is None
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'count'


def test_fewer_values_than_the_mapping_needs_is_a_count_fault():
    driver, _, _ = _bus(FakeSDI12Sensor(values=['+23.45']))
    r = driver.measure()
    assert r['vwc_pct'] == 23.45
    assert r['soil_temperature_c'] is None
    assert r['error'] == 'count'


def test_a_measurement_slower_than_allowed_is_refused():
    driver, line, _ = _bus(FakeSDI12Sensor(ttt=120), max_wait_s=15)
    r = driver.measure()
    assert line.written == [b'0M!']
    assert r['error'] == 'slow'


def test_line_exceptions_are_a_bus_fault_not_an_exception():
    driver, _, _ = _bus(FakeSDI12Sensor(), fail_on_write=OSError(5))
    r = driver.measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'bus'


def test_an_invalid_address_is_a_config_fault_without_bus_traffic():
    driver, line, _ = _bus(FakeSDI12Sensor(), address='#')
    r = driver.measure()
    assert r['error'] == 'config'
    assert line.events == []


def test_a_malformed_field_mapping_is_a_config_fault():
    driver, line, _ = _bus(FakeSDI12Sensor(), fields=[('vwc_pct',)])
    r = driver.measure()
    assert r['error'] == 'config'
    assert line.events == []


# --- values and mapping ---------------------------------------------------------------------------------

def test_values_are_split_at_each_sign():
    assert parse_values('+1.23-4.5+7') == [1.23, -4.5, 7]
    assert parse_values('-0.001+1234567') == [-0.001, 1234567]
    assert parse_values('') == []


def test_malformed_values_are_rejected():
    for bad in ('1.23', '+', '+1..2', '+12345678', '+1a', '+.'):
        assert parse_values(bad) is None


def test_teros12_raw_counts_become_vwc_with_the_mineral_soil_calibration():
    # 3.879e-4 * 1877.57 - 0.6956 = 0.03271 m3/m3 = 3.271 %
    driver, _, _ = _bus(FakeSDI12Sensor(values=['+1877.57', '+22.4', '+123']), fields=TEROS12)
    r = driver.measure()
    assert _close(r['vwc_pct'], 3.2709403, 1e-4)
    assert r['soil_temperature_c'] == 22.4
    assert r['soil_ec_us_cm'] == 123
    assert r['flags'] == []


def test_cs650_units_are_scaled_to_the_spec_units():
    driver, _, _ = _bus(FakeSDI12Sensor(values=['+0.254', '+0.12', '+21.3']), fields=CS650)
    r = driver.measure()
    assert _close(r['vwc_pct'], 25.4)  # m3/m3 -> %
    assert _close(r['soil_ec_us_cm'], 120.0)  # dS/m -> uS/cm
    assert r['soil_temperature_c'] == 21.3


def test_vwc_below_zero_is_clamped_and_out_of_range():
    driver, _, _ = _bus(FakeSDI12Sensor(values=['+1700', '+22.4', '+0']), fields=TEROS12)
    r = driver.measure()
    assert r['vwc_pct'] == 0
    assert r['flags'] == ['out_of_range']
    assert r['error'] is None


def test_positions_mapped_to_none_are_skipped_and_extra_values_kept_raw():
    sensor = FakeSDI12Sensor(values=['+9876', '+23.45', '+18.20', '+4.9'])
    driver, _, _ = _bus(sensor, fields=[None, 'vwc_pct', 'soil_temperature_c'])
    r = driver.measure()
    assert r['vwc_pct'] == 23.45
    assert r['soil_temperature_c'] == 18.2
    assert r['raw_values'] == [9876, 23.45, 18.2, 4.9]
    assert set(r.keys()) == {'vwc_pct', 'soil_temperature_c', 'raw_values', 'flags', 'error'}


def test_presets_name_spec_fields():
    for preset in (sdi12.SMT100, TEROS12, CS650):
        for entry in preset:
            name = entry if isinstance(entry, str) else entry[0]
            assert name in ('vwc_pct', 'soil_temperature_c', 'soil_ec_us_cm', 'soil_tension_kpa')


# --- commissioning helpers ------------------------------------------------------------------------------

def test_address_query_returns_the_only_probe_address():
    driver, line, _ = _bus(FakeSDI12Sensor(address='3'))
    assert driver.query_address() == '3'
    assert line.written == [b'?!']


def test_acknowledge_is_true_only_for_a_present_address():
    driver, line, _ = _bus(FakeSDI12Sensor(address='0'))
    assert driver.acknowledge() is True
    assert line.written == [b'0!']
    driver, line, _ = _bus(FakeSDI12Sensor(address='0'), address='5')
    assert driver.acknowledge() is False
    assert line.written == [b'5!'] * 4


def test_identification_is_split_into_its_fields():
    driver, line, _ = _bus(FakeSDI12Sensor(ident='14TRUEBNERSMT100038SN12345'))
    ident = driver.identify()
    assert line.written == [b'0I!']
    assert ident == {'sdi12_version': '14', 'vendor': 'TRUEBNER', 'model': 'SMT100', 'version': '038',
                     'serial': 'SN12345'}


def test_helpers_return_none_instead_of_raising():
    driver, _, _ = _bus(FakeSDI12Sensor(), fail_on_write=OSError(5))
    assert driver.identify() is None
    assert driver.query_address() is None
    assert driver.acknowledge() is False
