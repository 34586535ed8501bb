# Sleep memory: a packed state round-trips; anything damaged is refused as a whole.
from citynode_fw.app import state
from fakes import raises


def test_a_packed_state_comes_back_unchanged():
    st = state.fresh()
    st['wake'] = 41
    st['pending'] = [[1700000000, 23.4, 12.5]]
    st['radio'] = {'lw_joined': 1}
    back, lost = state.unpack(state.pack(st))
    assert not lost and back == st


def test_empty_corrupt_or_foreign_memory_gives_a_fresh_state_and_says_so():
    good = state.pack(state.fresh())
    flipped = bytearray(good)
    flipped[-2] ^= 0x40
    for blob in (None, b'', b'\x00' * 64, good[:-1], bytes(flipped), b'XY' + good[2:], good[:2] + b'\x09' + good[3:]):
        st, lost = state.unpack(blob)
        assert lost and st == state.fresh()


def test_keys_of_the_wrong_type_fall_back_to_fresh_values():
    import json

    body = json.dumps({'wake': 'many', 'pending': [[1, 2, 3]]}).encode()
    from citynode_codec.crc import crc16

    crc = crc16(body)
    blob = b'CN\x01' + bytes([crc >> 8, crc & 0xFF, len(body) >> 8, len(body) & 0xFF]) + body
    st, lost = state.unpack(blob)
    assert not lost and st['wake'] == 0 and st['pending'] == [[1, 2, 3]]


def test_a_state_too_large_for_rtc_memory_is_refused_before_writing():
    st = state.fresh()
    st['pending'] = [[1700000000, 23.456, 12.345, 1234, 5678]] * 80
    raises(ValueError, state.pack, st)
