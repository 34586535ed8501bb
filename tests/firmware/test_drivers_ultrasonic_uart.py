# UART ultrasonic sensors (A02YYUW free-running, JSN-SR04T mode 2 triggered): framing, checksum,
# resynchronisation, timeouts, outliers, blind zone, stuck values.

from citynode_fw.drivers.ultrasonic_uart import UltrasonicUART
from fakes import FakeClock, FakeUART
from sensor_fakes import ExplodingUART, TriggeredSensor, a02_frame, bad_sum, frame_stream


def _a02(chunks, **kw):
    clock = FakeClock()
    uart = frame_stream(clock, chunks, period_ms=kw.pop('period_ms', 100))
    return UltrasonicUART(uart, clock, **kw), uart, clock


def test_frame_helper_matches_the_datasheet_example():
    assert a02_frame(1953) == b'\xff\x07\xa1\xa7'


def test_datasheet_frame_decodes_to_1953_mm():
    sensor, _, _ = _a02([b'\xff\x07\xa1\xa7'] * 5)
    r = sensor.measure()
    assert r == {'distance_m': 1.953, 'raw_mm': 1953, 'raw_frames': 5, 'raw_checksum_errors': 0, 'flags': [],
                 'error': None}


def test_checksum_errors_are_skipped_and_the_next_good_frame_is_used():
    sensor, _, _ = _a02([bad_sum(a02_frame(1000)), a02_frame(2000), a02_frame(2000), a02_frame(2000)], frames=3)
    r = sensor.measure()
    assert r['distance_m'] == 2.0
    assert r['raw_frames'] == 3
    assert r['raw_checksum_errors'] == 1
    assert r['flags'] == []


def test_parser_resynchronises_on_0xff_in_a_noisy_stream():
    f = a02_frame
    chunks = [
        b'\x00\x12' + f(1500),  # noise before a header
        b'\xff' + f(1501),  # a stray 0xFF right before a real frame: one bad sum, then resync
        f(1502)[:2],  # a frame split across two reads
        f(1502)[2:] + f(1499),
        f(1500),
    ]
    sensor, _, _ = _a02(chunks)
    r = sensor.measure()
    assert r['raw_frames'] == 5
    assert r['raw_checksum_errors'] == 1
    assert r['raw_mm'] == 1500
    assert r['distance_m'] == 1.5


def test_only_bad_frames_is_a_checksum_fault():
    sensor, _, _ = _a02([bad_sum(a02_frame(1200))] * 8)
    r = sensor.measure()
    assert r['distance_m'] is None
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'checksum'
    assert r['raw_checksum_errors'] == 8


def test_silent_sensor_is_a_timeout_fault_after_the_timeout():
    sensor, _, clock = _a02([], frames=5)
    r = sensor.measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'timeout'
    assert r['raw_frames'] == 0
    assert 1800 <= clock.ticks_ms() < 1900  # 300 ms per frame + one period of slack


def test_garbage_without_any_header_is_a_timeout_fault():
    sensor, _, _ = _a02([b'\x01\x02\x03\x04\x05\x06'] * 4)
    r = sensor.measure()
    assert r['error'] == 'timeout'
    assert r['raw_checksum_errors'] == 0


def test_bytes_waiting_before_the_measurement_are_discarded():
    clock = FakeClock()
    uart = FakeUART(clock=clock)
    uart.feed(a02_frame(500) * 3)  # stale, already in the receive buffer
    for i in range(3):
        uart.feed(a02_frame(2000), after_ms=100 * (i + 1))
    r = UltrasonicUART(uart, clock, frames=3).measure()
    assert r['distance_m'] == 2.0


def test_outlier_frames_are_rejected_before_the_median():
    # plain median of the five is 2010 mm; without the two far frames it is 2000 mm
    f = a02_frame
    sensor, _, _ = _a02([f(2000), f(4000), f(2000), f(4100), f(2010)])
    r = sensor.measure()
    assert r['raw_mm'] == 2000


def test_frames_that_disagree_are_a_noisy_fault():
    f = a02_frame
    sensor, _, _ = _a02([f(500), f(1000), f(1500), f(2000), f(2500)])
    r = sensor.measure()
    assert r['distance_m'] is None
    assert r['error'] == 'noisy'


def test_a02yyuw_blind_zone_is_3_cm():
    sensor, _, _ = _a02([a02_frame(25)] * 5)
    r = sensor.measure()
    assert r['distance_m'] == 0.03
    assert r['raw_mm'] == 25
    assert r['flags'] == ['out_of_range']
    sensor, _, _ = _a02([a02_frame(35)] * 5)
    assert sensor.measure()['flags'] == []


def test_beyond_max_range_is_out_of_range_and_clamped():
    sensor, _, _ = _a02([a02_frame(5000)] * 5)
    r = sensor.measure()
    assert r['distance_m'] == 4.5
    assert r['flags'] == ['out_of_range']


def test_temperature_is_ignored_because_the_sensor_compensates_internally():
    sensor, uart, clock = _a02([a02_frame(1953)] * 5)
    a = sensor.measure(temperature_c=-10)
    for i in range(5):
        uart.feed(a02_frame(1953), after_ms=100 * (i + 1))
    b = sensor.measure(temperature_c=40)
    assert a['distance_m'] == b['distance_m'] == 1.953


def test_jsn_sr04t_mode2_writes_0x55_per_frame_and_reads_the_reply():
    clock = FakeClock()
    uart = FakeUART(TriggeredSensor([a02_frame(1200)] * 5), clock, delay_ms=40)
    r = UltrasonicUART(uart, clock, model='jsn_sr04t_mode2').measure()
    assert uart.writes == [b'\x55'] * 5
    assert r['distance_m'] == 1.2
    assert r['raw_frames'] == 5


def test_jsn_sr04t_mode2_tolerates_unanswered_triggers():
    clock = FakeClock()
    f = a02_frame(1200)
    uart = FakeUART(TriggeredSensor([None, f, None, f, f]), clock, delay_ms=40)
    r = UltrasonicUART(uart, clock, model='jsn_sr04t_mode2').measure()
    assert r['distance_m'] == 1.2
    assert r['raw_frames'] == 3


def test_jsn_sr04t_mode2_without_replies_is_a_timeout_fault():
    clock = FakeClock()
    uart = FakeUART(TriggeredSensor([]), clock)
    r = UltrasonicUART(uart, clock, model='jsn_sr04t_mode2').measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'timeout'
    assert len(uart.writes) == 5


def test_jsn_sr04t_blind_zone_is_25_cm():
    clock = FakeClock()
    uart = FakeUART(TriggeredSensor([a02_frame(200)] * 5), clock)
    r = UltrasonicUART(uart, clock, model='jsn_sr04t_mode2').measure()
    assert r['distance_m'] == 0.25
    assert r['flags'] == ['out_of_range']


def test_same_distance_too_many_times_in_a_row_is_a_stuck_fault():
    clock = FakeClock()
    uart = FakeUART(clock=clock)
    sensor = UltrasonicUART(uart, clock, frames=3, stuck_limit=2)
    results = []
    for _ in range(3):
        for i in range(3):
            uart.feed(a02_frame(1777), after_ms=100 * (i + 1))
        results.append(sensor.measure())
    assert [r['error'] for r in results] == [None, None, 'stuck']
    assert results[2]['flags'] == ['sensor_fault']
    assert results[2]['distance_m'] is None
    assert results[2]['raw_mm'] == 1777


def test_a_changing_distance_is_never_stuck():
    clock = FakeClock()
    uart = FakeUART(clock=clock)
    sensor = UltrasonicUART(uart, clock, frames=3, stuck_limit=2)
    for mm in (1777, 1778, 1777, 1779):
        for i in range(3):
            uart.feed(a02_frame(mm), after_ms=100 * (i + 1))
        assert sensor.measure()['error'] is None


def test_uart_exception_is_a_fault_not_an_exception():
    clock = FakeClock()
    r = UltrasonicUART(ExplodingUART(clock=clock), clock).measure()
    assert r['flags'] == ['sensor_fault']
    assert r['error'] == 'bus'


def test_unknown_model_is_a_config_fault_without_bus_traffic():
    clock = FakeClock()
    uart = FakeUART(clock=clock)
    r = UltrasonicUART(uart, clock, model='nope').measure()
    assert r['error'] == 'config'
    assert r['flags'] == ['sensor_fault']
    assert uart.writes == []
