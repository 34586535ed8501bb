# CRC-16/CCITT-FALSE used for config_crc and the sleep memory: table-driven, checked against the bitwise
# definition and the standard check value.
from citynode_codec.crc import _TABLE, crc16


def _bitwise(data, crc=0xFFFF):
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def test_the_standard_check_value():
    assert crc16(b'123456789') == 0x29B1


def test_the_table_is_the_crc_of_each_single_byte():
    for i in range(256):
        expected = _bitwise(bytes([i]), 0) if i else 0
        assert (_TABLE[2 * i] << 8 | _TABLE[2 * i + 1]) == expected


def test_table_and_bitwise_agree_on_varied_data():
    data = bytes((i * 37 + 11) & 0xFF for i in range(600))
    for n in (0, 1, 2, 17, 255, 600):
        assert crc16(data[:n]) == _bitwise(data[:n])
    assert crc16(data[100:], crc16(data[:100])) == crc16(data)
