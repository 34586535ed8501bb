"""citynode payload codec, generated from codecs/spec/citynode.json; the same code runs on the node
(MicroPython) and in the bridge (CPython).

    decode_uplink(fport, payload)  -> {'data': {...}} or {'errors': [...]}   (never raises)
    decode_downlink(fport, payload) -> same shape
    encode_uplink(data) / encode_downlink(data) -> {'fPort': n, 'bytes': b} or {'errors': [...]}
    encode(message, data) -> (fport, bytes), raising CodecError
"""

from ._tables import FIELDS, MESSAGES, SPEC_VERSION
from .codec import (
    CodecError,
    decode_downlink,
    decode_uplink,
    encode,
    encode_downlink,
    encode_uplink,
)

__all__ = [
    "CodecError",
    "FIELDS",
    "MESSAGES",
    "SPEC_VERSION",
    "decode_downlink",
    "decode_uplink",
    "encode",
    "encode_downlink",
    "encode_uplink",
]
