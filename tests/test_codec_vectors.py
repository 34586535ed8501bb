"""The spec's example vectors, run on every codec runtime: CPython, the real MicroPython, Node.

Vectors live in codecs/spec/citynode.json and are rendered to codecs/js/examples.json (TS013 layout) by
codecs/generate.py; all three runtimes read that one file.
"""

from __future__ import annotations

import json

import pytest

from citynode_codec import _tables as T
from citynode_codec import decode_uplink

import generate
from codec_peers import VECTOR_FN, micropython_peer, node_peer, python_call
from helpers import EXAMPLES

VECTORS = json.loads(EXAMPLES.read_text(encoding="utf-8"))


def _ids(v: dict) -> str:
    return f"{v['type']}:{v['description']}"


def test_generated_artefacts_match_the_spec():
    assert generate.main(["--check"]) == 0, "run `make codecs` and commit the result"


@pytest.mark.parametrize("vector", VECTORS, ids=_ids)
def test_cpython_codec_gives_the_documented_output(vector):
    assert python_call(VECTOR_FN[vector["type"]], vector["input"]) == vector["output"]


def _mismatches(results: list[dict]) -> list[str]:
    return [f"{v['description']}: expected {v['output']}, got {got}" for v, got in zip(VECTORS, results, strict=True)
            if got != v["output"]]


def test_micropython_codec_gives_the_documented_output(micropython):
    peer = micropython_peer(micropython)
    try:
        results = peer.call_many((VECTOR_FN[v["type"]], v["input"]) for v in VECTORS)
    finally:
        peer.close()
    assert _mismatches(results) == []


def test_javascript_codec_gives_the_documented_output(node):
    peer = node_peer(node)
    try:
        results = peer.call_many((VECTOR_FN[v["type"]], v["input"]) for v in VECTORS)
    finally:
        peer.close()
    assert _mismatches(results) == []


def test_every_message_has_an_example_and_every_error_kind_is_exercised():
    spec = generate.load_spec()
    assert all(m.get("examples") for m in spec["messages"].values())
    texts = " | ".join(e for v in VECTORS for e in v["output"].get("errors", []))
    for needle in ("unknown fPort", "empty payload", "truncated", "wrong length", "unsupported format",
                   "out of range", "unknown code", "padding", "cbor:"):
        assert needle in texts, f"no error vector contains {needle!r}"


UPLINK_DATA_VECTORS = [v for v in VECTORS if v["type"] == "uplink" and "data" in v["output"]]


@pytest.mark.parametrize("vector", UPLINK_DATA_VECTORS, ids=_ids)
def test_only_the_messages_own_decoder_accepts_a_vector(vector):
    own = vector["input"]["fPort"]
    payload = bytes(vector["input"]["bytes"])
    accepted = [port for port in T.UPLINK_PORTS if "data" in decode_uplink(port, payload)]
    assert accepted == [own]


def test_the_ttn_codec_definition_lists_every_vector():
    import yaml

    ttn = yaml.safe_load((EXAMPLES.parent.parent / "ttn" / "citynode-codec.yaml").read_text(encoding="utf-8"))
    counted = sum(len(ttn[k]["examples"]) for k in ("uplinkDecoder", "downlinkEncoder", "downlinkDecoder"))
    assert counted == len(VECTORS)
    assert ttn["uplinkDecoder"]["examples"][0]["output"] == VECTORS[0]["output"]
