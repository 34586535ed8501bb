# DS18B20: conversion wait, rounding, field naming, the 85 C / -127 C error values, bus failures.

from citynode_fw.drivers.ds18b20 import DS18B20
from fakes import FakeClock
from sensor_fakes import FakeDS, OneWireError

ROM = b'\x28\xaa\xbb\xcc\xdd\xee\xff\x01'


def _sensor(temps, field='soil_temperature_c', **kw):
    clock = FakeClock()
    ds = FakeDS(clock, roms=kw.pop('roms', [ROM]), temps=temps, scan_error=kw.pop('scan_error', None))
    return DS18B20(ds, clock, field=field, **kw), ds, clock


def test_temperature_is_reported_under_the_configured_field_rounded_to_a_tenth():
    sensor, ds, _ = _sensor([21.5625])
    r = sensor.measure()
    assert r == {'soil_temperature_c': 21.6, 'raw_c': 21.5625, 'flags': [], 'error': None}
    assert ds.reads[0][0] == ROM


def test_default_field_is_the_container_temperature():
    clock = FakeClock()
    r = DS18B20(FakeDS(clock, temps=[18.0]), clock).measure()
    assert r['temperature_c'] == 18.0


def test_reading_waits_the_750_ms_twelve_bit_conversion_time():
    sensor, ds, clock = _sensor([20.0])
    sensor.measure()
    assert ds.converts == [0]
    assert ds.reads[0][1] - ds.converts[0] >= 750
    assert clock.slept_ms == 750


def test_negative_temperatures_round_away_from_zero():
    sensor, _, _ = _sensor([-10.0625])  # 0xFF5F / 16
    assert sensor.measure()['soil_temperature_c'] == -10.1


def test_no_device_on_the_bus_is_a_fault():
    sensor, ds, _ = _sensor([20.0], roms=[])
    r = sensor.measure()
    assert r['soil_temperature_c'] is None
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'absent'
    assert ds.converts == []


def test_scan_exception_is_a_fault_not_an_exception():
    sensor, _, _ = _sensor([20.0], scan_error=OneWireError())
    r = sensor.measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'absent'


def test_a_crc_error_is_retried_once_and_the_good_reading_used():
    sensor, ds, _ = _sensor([Exception('CRC error'), 22.25])
    r = sensor.measure()
    assert r['soil_temperature_c'] == 22.3
    assert r['flags'] == []
    assert len(ds.converts) == 2


def test_crc_errors_on_every_attempt_are_a_crc_fault():
    sensor, ds, _ = _sensor([Exception('CRC error')])
    r = sensor.measure()
    assert r['soil_temperature_c'] is None
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'crc'
    assert len(ds.converts) == 2


def test_device_vanishing_during_the_read_is_absent_without_a_retry():
    sensor, ds, _ = _sensor([OneWireError()])
    r = sensor.measure()
    assert r['error'] == 'absent'
    assert len(ds.converts) == 1


def test_other_read_exceptions_are_read_faults():
    sensor, _, _ = _sensor([OSError(19)])
    r = sensor.measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'read'


def test_power_on_value_85_is_converted_again_before_it_is_believed():
    sensor, ds, _ = _sensor([85.0, 23.5])
    r = sensor.measure()
    assert r['soil_temperature_c'] == 23.5
    assert r['flags'] == []
    assert len(ds.converts) == 2


def test_power_on_value_85_twice_is_a_fault():
    sensor, _, _ = _sensor([85.0])
    r = sensor.measure()
    assert r['soil_temperature_c'] is None
    assert r['raw_c'] == 85.0
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'power_on_value'


def test_minus_127_is_a_disconnected_fault():
    sensor, _, _ = _sensor([-127.0])
    r = sensor.measure()
    assert r['soil_temperature_c'] is None
    assert r['error'] == 'disconnected'
    assert r['flags'] == ['sensor_fault']


def test_values_outside_the_datasheet_range_are_faults():
    sensor, _, _ = _sensor([130.0])
    r = sensor.measure()
    assert r['error'] == 'range'
    assert r['flags'] == ['sensor_fault']


def test_a_none_reading_is_a_fault():
    sensor, _, _ = _sensor([None])
    r = sensor.measure()
    assert r['error'] == 'read'
    assert r['flags'] == ['sensor_fault']


def test_a_configured_rom_skips_the_bus_scan():
    sensor, ds, _ = _sensor([19.0], scan_error=OSError(5), rom=ROM)
    r = sensor.measure()
    assert r['soil_temperature_c'] == 19.0
    assert ds.reads[0][0] == ROM
