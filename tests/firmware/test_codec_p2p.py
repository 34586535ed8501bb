# The P2P frame and its AES-CMAC, on CPython and on MicroPython (cryptolib), with RFC 4493's vectors.
from binascii import unhexlify

from fakes import raises

from citynode_codec import p2p

KEY = unhexlify('2b7e151628aed2a6abf7158809cf4f3c')
M64 = unhexlify('6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51'
                '30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710')
DEV = unhexlify('70b3d57ed0001234')
DEV_KEY = bytes(range(16))


def test_cmac_matches_rfc4493_examples():
    enc = p2p.aes_ecb(KEY)
    assert p2p.cmac(enc, b'') == unhexlify('bb1d6929e95937287fa37d129b756746')
    assert p2p.cmac(enc, M64[:16]) == unhexlify('070a16b46b4d4144f79bdd9dd04a287c')
    assert p2p.cmac(enc, M64[:40]) == unhexlify('dfa66747de9ae63030ca32611497c827')
    assert p2p.cmac(enc, M64) == unhexlify('51f0bebf7e3b9d92fc49741779363cfe')


def test_a_built_frame_verifies_and_gives_back_its_parts():
    frame = p2p.build(p2p.UPLINK, DEV, 1234567, 1, b'\x10\x07\x54\x1b\x40', DEV_KEY)
    assert len(frame) == p2p.OVERHEAD + 5
    marker, dev, fcnt, fport, payload, mic = p2p.verify(frame, DEV_KEY)
    assert (marker, dev, fcnt, fport, payload) == (p2p.UPLINK, DEV, 1234567, 1, b'\x10\x07\x54\x1b\x40')


def test_any_changed_bit_or_another_key_fails_the_mic():
    frame = p2p.build(p2p.UPLINK, DEV, 7, 2, b'\x20\x52\x09\x18\xcf', DEV_KEY)
    for i in range(len(frame) - p2p.MIC_LEN):
        forged = bytearray(frame)
        forged[i] ^= 0x01
        try:
            p2p.verify(forged, DEV_KEY)
        except p2p.FrameError:
            continue
        raise AssertionError('flipped byte %d was accepted' % i)
    assert str(raises(p2p.FrameError, p2p.verify, frame, bytes(16))) == 'bad MIC'


def test_an_uplink_cannot_pass_as_a_downlink():
    frame = bytearray(p2p.build(p2p.UPLINK, DEV, 7, 2, b'\x01', DEV_KEY))
    frame[0] = p2p.DOWNLINK
    assert str(raises(p2p.FrameError, p2p.verify, frame, DEV_KEY)) == 'bad MIC'


def test_malformed_frames_are_refused_with_a_reason():
    assert 'too short' in str(raises(p2p.FrameError, p2p.parse, b'\xc1\x00'))
    assert 'marker' in str(raises(p2p.FrameError, p2p.parse, bytes(20)))
    assert 'fPort' in str(raises(p2p.FrameError, p2p.parse, b'\xc1' + bytes(12) + b'\x00' + bytes(4)))
    raises(p2p.FrameError, p2p.build, p2p.UPLINK, DEV[:4], 1, 1, b'', DEV_KEY)
    raises(p2p.FrameError, p2p.build, p2p.UPLINK, DEV, 1, 0, b'', DEV_KEY)
