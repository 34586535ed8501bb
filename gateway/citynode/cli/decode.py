"""Decode citynode payloads the way the bridge and the network server's codec do.

  citynode decode --port 1 1007541b40        one payload, pretty JSON (TS013 shape: data or errors)
  citynode decode 1:10 07 54 1b 40           fPort and hex in one argument; spaces and colons allowed
  citynode decode --base64 --port 2 IFIJGM8=  base64 as shown by ChirpStack and The Things Stack
  citynode decode < uplinks.log              one `fport:hex` per line in, one JSON object per line out

Exit status: 0 when everything decoded, 1 when a payload was refused (the JSON says why), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("payload", nargs="*", help="hex (or fport:hex); omit to read fport:hex lines from stdin")
    p.add_argument("--port", "-p", type=int, help="LoRaWAN fPort of the payload")
    p.add_argument("--base64", action="store_true", help="payload is base64, not hex")
    p.add_argument("--downlink", action="store_true", help="decode a downlink (what the node receives)")


class InputError(ValueError):
    pass


def parse_payload(text: str, port: int | None, b64: bool) -> tuple[int, bytes]:
    """`text` is hex or base64, optionally prefixed `fport:`; returns (fport, bytes)."""
    text = text.strip()
    head, sep, rest = text.partition(":")
    if sep and head.strip().isdigit() and (b64 or len(head.strip()) <= 3):
        port, text = int(head), rest
    if port is None:
        raise InputError("no fPort: use --port N or write fport:hex")
    try:
        if b64:
            return port, base64.b64decode(text.strip(), validate=True)
        cleaned = "".join(ch for ch in text if ch not in " :-\t")
        if cleaned.lower().startswith("0x"):
            cleaned = cleaned[2:]
        return port, bytes.fromhex(cleaned)
    except (ValueError, binascii.Error) as e:
        raise InputError(f"not {'base64' if b64 else 'hex'}: {text.strip()[:40]!r} ({e})") from None


def decode_one(port: int, payload: bytes, downlink: bool) -> dict:
    from citynode_codec import decode_downlink, decode_uplink

    return (decode_downlink if downlink else decode_uplink)(port, payload)


def run(args: argparse.Namespace) -> int:
    if args.payload:
        try:
            port, payload = parse_payload(" ".join(args.payload), args.port, args.base64)
        except InputError as e:
            print(f"citynode decode: {e}", file=sys.stderr)
            return 2
        out = decode_one(port, payload, args.downlink)
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0 if "data" in out else 1
    status = 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            port, payload = parse_payload(line, args.port, args.base64)
            out = {"line": n, "fPort": port, "hex": payload.hex(), **decode_one(port, payload, args.downlink)}
        except InputError as e:
            out = {"line": n, "errors": [f"line {n}: {e}"]}
        if "data" not in out:
            status = 1
        print(json.dumps(out, ensure_ascii=False), flush=True)
    return status
