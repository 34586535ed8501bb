"""The node's console lines, parsed: what `citynode flash` shows after its check cycle and `monitor` prints.

The firmware logs one line per event with the `[cn] ` prefix (firmware/citynode_fw/app/cycle.py):

  sample {"vwc_pct": 23.4, ...} raw_mv=1634     the measured sample (raw_mv: the soil probe's voltage)
  tx 1:1007541b40 ok                             an uplink: fPort, payload hex, ok or the error
  downlink 32:100f -> set_interval ok            a downlink applied: fPort, payload, command, result
  sensor soil absent                             a sensor that failed: role and error
  config sample_interval_s: must be 60..15300    a config key replaced by its default
  radio: not joined (no_reply)                   radio trouble
Other lines (the MicroPython banner, boot messages, tracebacks) are console text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

PREFIX = "[cn] "
_TX = re.compile(r"^tx (\d+):([0-9a-fA-F]*) (\S+)\Z")
_DOWN = re.compile(r"^downlink (\d+):([0-9a-fA-F]*) -> (\S+) (\S+)\Z")
_SAMPLE = re.compile(r"^sample (\{.*\})(?: raw_mv=(-?[\d.]+))?\Z")
_SENSOR = re.compile(r"^sensor (\S+) (.+)\Z")
# What a board prints when it (re)starts: MicroPython's banner, a soft reboot, the ESP32 ROM's reset line.
_RESET = re.compile(r"^(MicroPython v?\S+ on |MPY: soft reboot|rst:0x[0-9a-f]+ \(|ets [A-Z][a-z]{2} )")


@dataclass
class Event:
    """One console line. kind: sample | tx | downlink | sensor_error | config_error | radio | log | reset |
    console."""

    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "text": self.text, **self.data}


def _decode_up(fport: int, payload: bytes) -> dict[str, Any]:
    from citynode_codec import decode_uplink

    return decode_uplink(fport, payload)


def _decode_down(fport: int, payload: bytes) -> dict[str, Any]:
    from citynode_codec import decode_downlink

    return decode_downlink(fport, payload)


def parse_line(line: str) -> Event:
    """One console line (without its line end) as an Event; never raises."""
    line = line.rstrip("\r\n")
    while line.startswith((">>> ", "... ")):  # a REPL prompt has no line end: the next output joins it
        line = line[4:]
    if not line.startswith(PREFIX):
        if _RESET.match(line.strip()):
            return Event("reset", line)
        return Event("console", line)
    body = line[len(PREFIX):]
    m = _SAMPLE.match(body)
    if m:
        try:
            sample = json.loads(m.group(1))
        except ValueError:
            sample = None
        if isinstance(sample, dict):
            data: dict[str, Any] = {"sample": sample}
            if m.group(2) is not None:
                data["raw_mv"] = float(m.group(2))
            return Event("sample", body, data)
    m = _TX.match(body)
    if m:
        fport, payload = int(m.group(1)), bytes.fromhex(m.group(2)) if len(m.group(2)) % 2 == 0 else b""
        return Event("tx", body, {"fport": fport, "hex": payload.hex(), "result": m.group(3),
                                  "decoded": _decode_up(fport, payload)})
    m = _DOWN.match(body)
    if m:
        fport, payload = int(m.group(1)), bytes.fromhex(m.group(2)) if len(m.group(2)) % 2 == 0 else b""
        return Event("downlink", body, {"fport": fport, "hex": payload.hex(), "command": m.group(3),
                                        "result": m.group(4), "decoded": _decode_down(fport, payload)})
    m = _SENSOR.match(body)
    if m:
        return Event("sensor_error", body, {"role": m.group(1), "error": m.group(2)})
    if body.startswith("config "):
        return Event("config_error", body, {"error": body[len("config "):]})
    if body.startswith("radio") or body.startswith("state"):
        return Event("radio" if body.startswith("radio") else "log", body)
    return Event("log", body)


def parse_output(text: str) -> list[Event]:
    """Every line of a chunk of console output."""
    return [parse_line(line) for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def describe(event: Event) -> str:
    """A short line for people: the decoded message instead of hex."""
    d = event.data
    if event.kind == "sample":
        values = ", ".join(f"{k} {v}" for k, v in d["sample"].items() if k != "flags" and v is not None)
        flags = d["sample"].get("flags") or []
        raw = f" (probe {d['raw_mv']:g} mV)" if "raw_mv" in d else ""
        return f"reading: {values}{raw}" + (f" [{', '.join(flags)}]" if flags else "")
    if event.kind in ("tx", "downlink"):
        decoded = d["decoded"]
        arrow = "uplink" if event.kind == "tx" else "downlink"
        if event.kind == "tx":
            result = {"ok": "sent", "duty_cycle": "held back by the duty cycle"}.get(d["result"],
                                                                                  "failed: " + d["result"])
        else:
            result = f"{d['command']} {d['result']}"
        if "data" in decoded:
            data = {k: v for k, v in decoded["data"].items() if k != "message"}
            return f"{arrow} {decoded['data'].get('message', '?')} on port {d['fport']}: " \
                   f"{json.dumps(data, ensure_ascii=False)} -> {result}"
        return f"{arrow} port {d['fport']} {d['hex']} (not decodable: {'; '.join(decoded.get('errors', []))}) " \
               f"-> {result}"
    if event.kind == "sensor_error":
        return f"sensor {d['role']} failed: {d['error']}"
    return event.text
