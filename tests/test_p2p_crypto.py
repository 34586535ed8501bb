"""On the host the MIC comes from the `cryptography` package; the board computes it with its own CMAC over
cryptolib. Both must agree on every input."""

from hypothesis import given, settings
from hypothesis import strategies as st

from citynode_codec import p2p


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=100))
def test_board_cmac_equals_the_cryptography_package(key, data):
    assert p2p.cmac(p2p.aes_ecb(key), data)[:4] == p2p.mic(key, data)
