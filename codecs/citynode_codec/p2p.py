# citynode LoRa point-to-point frame (spec: "frames.p2p" in codecs/spec/citynode.json).
#
#   byte  0       marker: 0xC1 uplink (node -> receiver), 0xC2 downlink (receiver -> node)
#   bytes 1..8    DevEUI, big-endian
#   bytes 9..12   frame counter, u32 big-endian, strictly increasing per device and direction
#   byte  13      fPort (the same message numbering as LoRaWAN)
#   bytes 14..-5  payload (a citynode message)
#   last 4 bytes  MIC: the first 4 bytes of AES-128-CMAC (RFC 4493) over bytes 0..-5, per-device key
#
# Raw LoRa has no network server to authenticate frames, so the MIC and the counter let the receiver
# refuse forged and replayed frames. The marker byte is covered by the MIC, so an uplink can never be
# replayed as a downlink.
#
# The CMAC here runs over any AES-128 block function; the node uses MicroPython's cryptolib, the bridge
# passes the `cryptography` package's AES (see aes_ecb()).

UPLINK = 0xC1
DOWNLINK = 0xC2
HEADER = 14
MIC_LEN = 4
OVERHEAD = HEADER + MIC_LEN
MAX_PAYLOAD = 222

_RB = 0x87  # RFC 4493 2.3, R_128


class FrameError(ValueError):
    """A frame that is malformed or fails its MIC. str(e) says which."""


def aes_ecb(key):
    """Return encrypt(block16) -> bytes for `key`, with whatever AES this runtime has."""
    try:
        import cryptolib  # MicroPython

        return cryptolib.aes(bytes(key), 1).encrypt
    except ImportError:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        return Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor().update


def _dbl(block):
    # Doubling in GF(2^128) (RFC 4493 2.3, Generate_Subkey)
    n = int.from_bytes(block, 'big') << 1
    if n >> 128:
        n = (n & ((1 << 128) - 1)) ^ _RB
    return n.to_bytes(16, 'big')


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def cmac(encrypt, data):
    """AES-CMAC (RFC 4493) of `data` with the block function `encrypt` (see aes_ecb)."""
    k1 = _dbl(encrypt(bytes(16)))
    n = (len(data) + 15) // 16
    if n == 0:
        n = 1
    last = data[(n - 1) * 16:]
    if len(last) == 16:
        last = _xor(last, k1)
    else:
        k2 = _dbl(k1)
        last = _xor(bytes(last) + b'\x80' + bytes(15 - len(last)), k2)
    x = bytes(16)
    for i in range(n - 1):
        x = encrypt(_xor(x, data[i * 16:(i + 1) * 16]))
    return encrypt(_xor(x, last))


def mic(key, data, encrypt=None):
    """First 4 bytes of AES-CMAC(key, data). On CPython the `cryptography` package computes it."""
    if encrypt is None:
        try:
            import cryptolib  # noqa: F401 - MicroPython: use cmac() below over cryptolib
        except ImportError:
            from cryptography.hazmat.primitives.ciphers.algorithms import AES
            from cryptography.hazmat.primitives.cmac import CMAC

            c = CMAC(AES(bytes(key)))
            c.update(bytes(data))
            return c.finalize()[:MIC_LEN]
        encrypt = aes_ecb(key)
    return cmac(encrypt, data)[:MIC_LEN]


def build(marker, dev_eui, fcnt, fport, payload, key, encrypt=None):
    """Frame `payload` for `dev_eui` (8 bytes) with counter `fcnt` and sign it with `key`."""
    if len(dev_eui) != 8:
        raise FrameError('DevEUI must be 8 bytes')
    if not 0 <= fcnt <= 0xFFFFFFFF or not 1 <= fport <= 223 or len(payload) > MAX_PAYLOAD:
        raise FrameError('counter, fPort or payload size out of range')
    body = bytes([marker]) + bytes(dev_eui) + fcnt.to_bytes(4, 'big') + bytes([fport]) + bytes(payload)
    return body + mic(key, body, encrypt)


def parse(frame):
    """Split a frame without checking its MIC: (marker, dev_eui, fcnt, fport, payload, mic)."""
    frame = bytes(frame)
    if len(frame) < OVERHEAD:
        raise FrameError('frame too short (%d bytes, at least %d)' % (len(frame), OVERHEAD))
    if frame[0] not in (UPLINK, DOWNLINK):
        raise FrameError('not a citynode frame (marker 0x%02x)' % frame[0])
    fport = frame[13]
    if not 1 <= fport <= 223:
        raise FrameError('fPort %d out of range' % fport)
    return (frame[0], frame[1:9], int.from_bytes(frame[9:13], 'big'), fport, frame[HEADER:-MIC_LEN],
            frame[-MIC_LEN:])


def verify(frame, key, encrypt=None):
    """Parse `frame` and check its MIC with `key`; raises FrameError('bad MIC') when forged or corrupt."""
    parts = parse(frame)
    frame = bytes(frame)
    expected = mic(key, frame[:-MIC_LEN], encrypt)
    diff = 0
    for a, b in zip(expected, parts[5]):
        diff |= a ^ b
    if diff:
        raise FrameError('bad MIC')
    return parts
