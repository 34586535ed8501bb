# Time on air and the EU868 duty-cycle tracker (firmware/citynode_fw/radio/dutycycle.py).
from citynode_fw.radio import dutycycle


def test_airtime_check_value_13_bytes_sf9_125khz_is_164_864_ms():
    # AN1200.13 calculator: Tsym 4.096 ms, 8 + 12.25 preamble and 20 payload symbols -> 164.864 ms
    assert dutycycle.symbol_us(9, 125000) == 4096
    assert dutycycle.time_on_air_us(9, 125000, 13) == 164864
    assert dutycycle.time_on_air_ms(9, 125000, 13) == 165  # rounded up


def test_airtime_matches_the_reference_table_for_a_6_byte_lorawan_payload():
    # perf_reliability.md §1a: 6 application bytes + 13 LoRaWAN bytes, SF7..SF12 at 125 kHz
    expected_us = {7: 51456, 8: 102912, 9: 185344, 10: 329728, 11: 741376, 12: 1318912}
    for sf in expected_us:
        assert dutycycle.time_on_air_us(sf, 125000, 19) == expected_us[sf], sf


def test_airtime_switches_on_low_data_rate_optimisation_at_sf11_and_sf12_on_125khz():
    # 19 bytes at SF11: 8*19 - 44 + 28 + 16 = 152 bits; with DE ceil(152/36)*5 = 25 payload symbols (+8), without
    # DE it would be ceil(152/44)*5 = 20.
    sym = dutycycle.symbol_us(11, 125000)
    assert sym == 16384
    assert dutycycle.time_on_air_us(11, 125000, 19) == (4 * (8 + 8 + 25) + 17) * sym // 4
    # SF10 has 8.192 ms symbols: no DE
    assert dutycycle.time_on_air_us(10, 125000, 19) == (4 * (8 + 8 + 20) + 17) * 8192 // 4


def test_airtime_matches_semtech_calculator_for_other_preambles_coding_rates_and_bandwidths():
    # Semtech SX1261 calculator values as quoted in micropython-lib lora/tests/test_time_on_air.py
    assert dutycycle.time_on_air_us(12, 500000, 64, cr=5, preamble=12) == 649216
    assert dutycycle.time_on_air_us(8, 125000, 253, cr=6, preamble=8) == 827904
    assert dutycycle.time_on_air_us(8, 125000, 5, cr=6, preamble=12, crc=False, explicit=False) == 61952


def test_lorawan_airtime_adds_13_bytes_of_mac_overhead():
    assert dutycycle.lorawan_airtime_ms(3, 0) == dutycycle.time_on_air_ms(9, 125000, 13)
    assert dutycycle.lorawan_airtime_ms(5, 6) == 52  # 51.456 ms rounded up


def test_lorawan_airtime_of_an_unknown_data_rate_assumes_the_slowest():
    assert dutycycle.lorawan_airtime_ms(99, 6) == dutycycle.lorawan_airtime_ms(0, 6)
    assert dutycycle.lorawan_airtime_ms(True, 6) == dutycycle.lorawan_airtime_ms(0, 6)


def test_max_application_payload_per_eu868_data_rate():
    assert [dutycycle.max_payload(dr) for dr in range(6)] == [51, 51, 51, 115, 222, 222]
    assert dutycycle.max_payload(-1) == 51
    assert dutycycle.max_payload('5') == 51


def test_subband_divisor_follows_the_eu868_sub_bands():
    assert dutycycle.subband_divisor(868100000) == 100  # g1, 1 %
    assert dutycycle.subband_divisor(868500000) == 100
    assert dutycycle.subband_divisor(867100000) == 100  # 865-868 MHz, 1 %
    assert dutycycle.subband_divisor(868800000) == 1000  # g2, 0.1 %
    assert dutycycle.subband_divisor(869525000) == 10  # g3, 10 %
    assert dutycycle.subband_divisor(869300000) == 1000  # between sub-bands: the strictest
    assert dutycycle.subband_divisor(915000000) == 0  # not EU868


def test_duty_cycle_allows_the_first_transmission_at_once():
    dc = dutycycle.DutyCycle({})
    assert dc.allowed_at(1000) == 0
    assert dc.wait_s(1_700_000_000, 1000) == 0


def test_duty_cycle_refuses_a_send_before_100_times_the_airtime_has_passed():
    state = {}
    dc = dutycycle.DutyCycle(state, 100)
    t0 = 1_700_000_000
    dc.record(t0, 1319)  # SF12, 6-byte payload
    assert dc.allowed_at(1319) == t0 + 132  # 131.9 s rounded up
    assert dc.wait_s(t0 + 60, 1319) == 72
    assert dc.wait_s(t0 + 131, 1319) == 1
    assert dc.wait_s(t0 + 132, 1319) == 0
    assert state == {'dc_s': t0, 'dc_ms': 1319}


def test_duty_cycle_spacing_uses_the_longer_of_the_last_and_the_next_airtime():
    dc = dutycycle.DutyCycle({}, 100)
    dc.record(1000, 52)
    assert dc.allowed_at(52) == 1000 + 6
    assert dc.allowed_at(1319) == 1000 + 132


def test_duty_cycle_on_the_10_percent_band_allows_ten_times_more():
    dc = dutycycle.DutyCycle({}, 10)
    dc.record(1000, 1319)
    assert dc.allowed_at(1319) == 1000 + 14


def test_duty_cycle_survives_the_clock_being_set_back():
    state = {}
    dc = dutycycle.DutyCycle(state, 100)
    dc.record(1_700_000_000, 500)
    assert dc.wait_s(1000, 500) == 0  # an RTC reset to 1970 must not block sending for decades
    assert 'dc_s' not in state


def test_duty_cycle_state_keys_can_be_namespaced():
    state = {}
    dutycycle.DutyCycle(state, 100, key='p2pdc').record(5, 100)
    assert state == {'p2pdc_s': 5, 'p2pdc_ms': 100}
