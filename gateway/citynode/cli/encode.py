"""Encode a citynode message, e.g. to craft a downlink or a test payload.

  citynode encode set_interval '{"sample_interval_s": 900}'          -> 20:100f
  citynode encode set_thresholds '{"fill_alarm_pct": 80}' --json      -> {"fPort": 21, "hex": ..., "base64": ...}
  echo '{"vwc_pct": 23.4, ...}' | citynode encode soil_reading -

Messages and their fields: codecs/spec/citynode.json (`citynode encode --list` shows them).
Exit status: 0 encoded, 1 refused (the reason is printed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("message", nargs="?", help="message name, e.g. set_interval or soil_reading")
    p.add_argument("data", nargs="?", default="{}", help="the fields as JSON, or - to read them from stdin")
    p.add_argument("--json", action="store_true", help="print {fPort, hex, base64} as JSON")
    p.add_argument("--list", action="store_true", help="list the messages and their fields")


def run(args: argparse.Namespace) -> int:
    from citynode_codec import MESSAGES, CodecError, encode

    if args.list or not args.message:
        for name, m in MESSAGES.items():
            print(f"{name:16} {'uplink  ' if m[1] == 0 else 'downlink'} fPort {m[2]}")
        return 0 if args.list else 2
    raw = sys.stdin.read() if args.data == "-" else args.data
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        print(f"citynode encode: the data is not JSON ({e})", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print("citynode encode: the data must be a JSON object", file=sys.stderr)
        return 2
    try:
        fport, payload = encode(args.message, {k: v for k, v in data.items() if k != "message"})
    except CodecError as e:
        print(f"citynode encode: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"message": args.message, "fPort": fport, "hex": payload.hex(),
                          "base64": base64.b64encode(payload).decode()}))
    else:
        print(f"{fport}:{payload.hex()}")
    return 0
