"""The codec as the other runtimes run it: the real `micropython` binary and Node, each behind a pipe."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

from citynode_codec import decode_downlink, decode_uplink, encode_downlink, encode_uplink

ROOT = Path(__file__).resolve().parent.parent


class CodecPeer:
    """A long-running codec process; `call_many` pipelines requests so thousands take well under a second."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def call_many(self, requests: Iterable[tuple[str, dict]]) -> list[dict]:
        reqs = list(requests)
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("".join(json.dumps({"fn": fn, "input": inp}) + "\n" for fn, inp in reqs))
        self.proc.stdin.flush()
        out = []
        for _ in reqs:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"codec process exited with {self.proc.wait()}")
            out.append(json.loads(line))
        return out

    def call(self, fn: str, inp: dict) -> dict:
        return self.call_many([(fn, inp)])[0]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def micropython_peer(binary: str) -> CodecPeer:
    return CodecPeer([binary, str(ROOT / "tests" / "mpy" / "codec_server.py"), str(ROOT / "codecs")])


def node_peer(binary: str) -> CodecPeer:
    return CodecPeer([binary, str(ROOT / "tests" / "js" / "codec_server.js")])


def python_call(fn: str, inp: dict) -> dict:
    """The CPython codec with the same JSON-in, JSON-out contract as the peers."""
    if fn == "decodeUplink":
        return decode_uplink(inp["fPort"], bytes(inp["bytes"]))
    if fn == "decodeDownlink":
        return decode_downlink(inp["fPort"], bytes(inp["bytes"]))
    out = (encode_downlink if fn == "encodeDownlink" else encode_uplink)(inp["data"])
    if "bytes" in out:
        out = {**out, "bytes": list(out["bytes"])}
    return out


VECTOR_FN = {"uplink": "decodeUplink", "downlink-decode": "decodeDownlink", "downlink-encode": "encodeDownlink"}
