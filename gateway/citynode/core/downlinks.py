"""Commands from the platform (`<base>/<kind>/<device>/set`) -> validated, encoded downlinks.

A command is JSON such as {"command": "set_interval", "sample_interval_s": 900, "request_id": "abc"}: the
codec's downlink messages (set_interval, set_thresholds, set_batch_size, set_geometry, set_calibration,
request_status, reboot) with their fields, an optional request_id (echoed in every response) and an optional
"confirmed" (LoRaWAN confirmed downlink). Everything is checked before anything is sent: JSON shape, unknown
and missing fields, types, the device's kind, the codec's ranges, and that the value survives the encoding
exactly (910 s cannot be sent: the node counts whole minutes). The seq (0..15) is the bridge's: it is echoed
by the node's downlink_ack, which is how the final response finds its request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from citynode_codec import MESSAGES, CodecError, decode_downlink, encode

from .. import jsontext

MAX_COMMAND_BYTES = 4096
MAX_REQUEST_ID = 128
SEQ_MODULO = 16

# command -> (node kinds it applies to, "all" fields required | "any": at least one non-null)
COMMAND_RULES: dict[str, tuple[tuple[str, ...], str]] = {
    "set_interval": (("soil", "fill"), "all"),
    "set_thresholds": (("soil", "fill"), "any"),
    "set_batch_size": (("soil", "fill"), "all"),
    "set_geometry": (("fill",), "any"),
    "set_calibration": (("soil",), "any"),
    "request_status": (("soil", "fill"), "all"),
    "reboot": (("soil", "fill"), "all"),
}
FIELD_KINDS = {"fill_alarm_pct": "fill", "soil_dry_pct": "soil"}  # fields that make sense for one kind only
_OP_FIELD = 0


class CommandError(ValueError):
    """A command that is refused before anything is sent. `request_id` is echoed in the response."""

    def __init__(self, message: str, request_id: str | None = None, command: str | None = None):
        super().__init__(message)
        self.request_id, self.command = request_id, command


def command_fields(name: str) -> tuple[str, ...]:
    """The fields of a downlink message in the codec's tables, without seq."""
    msg = MESSAGES[name]
    return tuple(op[1][0] for op in msg[5] if op[0] == _OP_FIELD and op[1][0] != "seq")


@dataclass(frozen=True)
class Command:
    name: str
    fields: Mapping[str, float | int | None]
    request_id: str | None
    confirmed: bool = False

    def encode(self, seq: int) -> tuple[int, bytes]:
        return encode(self.name, {**self.fields, "seq": seq})


def _is_number(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and (not isinstance(v, float) or math.isfinite(v))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number in JSON")


def _request_id(body: Mapping) -> str | None:
    rid = body.get("request_id")
    if rid is None:
        return None
    if _is_number(rid) and isinstance(rid, int):
        return str(rid)
    if isinstance(rid, str) and 0 < len(rid) <= MAX_REQUEST_ID and rid.isprintable():
        return rid
    raise CommandError(f"request_id must be text of 1..{MAX_REQUEST_ID} printable characters or an integer")


def parse_command(payload: bytes, kind: str, device_id: str = "the device") -> Command:
    """Validate a command for a node of `kind`; raises CommandError saying what is wrong."""
    if not isinstance(payload, (bytes, bytearray)):
        raise CommandError("command must be bytes")
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"command is larger than {MAX_COMMAND_BYTES} bytes")
    try:
        body = jsontext.loads(bytes(payload).decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise CommandError("command is not UTF-8 text") from None
    except (ValueError, RecursionError) as e:
        raise CommandError(f"command is not valid JSON: {str(e)[:100]}") from None
    if not isinstance(body, dict):
        raise CommandError("command must be a JSON object")
    request_id = _request_id(body)
    name = body.get("command")
    if not isinstance(name, str) or name not in COMMAND_RULES:
        raise CommandError(f"command must be one of {', '.join(COMMAND_RULES)}", request_id)
    kinds, need = COMMAND_RULES[name]
    if kind not in kinds:
        raise CommandError(f"{name} is for {' and '.join(kinds)} nodes; {device_id} is a {kind} node", request_id,
                           name)
    confirmed = body.get("confirmed", False)
    if not isinstance(confirmed, bool):
        raise CommandError("confirmed must be true or false", request_id, name)
    allowed = command_fields(name)
    given = {k: v for k, v in body.items() if k not in ("command", "request_id", "confirmed")}
    if "seq" in given:
        raise CommandError("seq is assigned by the bridge; leave it out", request_id, name)
    unknown = sorted(k for k in given if k not in allowed)
    if unknown:
        raise CommandError(f"{name}: unknown field {', '.join(unknown)[:200]} (allowed: "
                           f"{', '.join(allowed) or 'none'})", request_id, name)
    for key, value in given.items():
        if value is not None and not _is_number(value):
            raise CommandError(f"{name}: {key} must be a number" + (" or null" if need == "any" else ""),
                               request_id, name)
        if value is not None and key in FIELD_KINDS and FIELD_KINDS[key] != kind:
            raise CommandError(f"{name}: {key} applies to {FIELD_KINDS[key]} nodes; {device_id} is a {kind} node",
                               request_id, name)
    if need == "all":
        missing = [k for k in allowed if given.get(k) is None]
        if missing:
            raise CommandError(f"{name}: missing field {', '.join(missing)}", request_id, name)
    elif not any(v is not None for v in given.values()):
        raise CommandError(f"{name}: give at least one of {', '.join(allowed)}", request_id, name)
    fields = {k: given.get(k) for k in allowed}
    command = Command(name, fields, request_id, confirmed)
    try:
        fport, frame = command.encode(0)
    except CodecError as e:
        raise CommandError(str(e), request_id, name) from None
    decoded = decode_downlink(fport, frame).get("data") or {}
    for key, value in fields.items():
        if value is None:
            continue
        got = decoded.get(key)
        if not _is_number(got) or abs(got - value) > 1e-9 * max(1.0, abs(value)):
            raise CommandError(f"{name}: {key} {value} cannot be sent exactly (the node would get {got})",
                               request_id, name)
    return command


@dataclass
class Pending:
    dev_eui: str
    device_id: str
    kind: str
    command: str
    seq: int
    request_id: str | None
    created: float
    expires: float


class PendingCommands:
    """Commands sent and waiting for the node's downlink_ack, at most `max_per_device` per device (seqs must stay
    unambiguous) and `max_total` in all; each expires after `ttl_s`."""

    def __init__(self, ttl_s: float = 86400.0, max_per_device: int = 8, max_total: int = 100_000):
        if not 1 <= max_per_device <= SEQ_MODULO // 2:
            raise ValueError(f"max_per_device must be 1..{SEQ_MODULO // 2}")
        self.ttl_s = ttl_s
        self.max_per_device = max_per_device
        self.max_total = max_total
        self._pending: dict[str, dict[int, Pending]] = {}
        self._next_seq: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def for_request(self, dev_eui: str, request_id: str | None) -> Pending | None:
        if request_id is None:
            return None
        return next((p for p in self._pending.get(dev_eui, {}).values() if p.request_id == request_id), None)

    def add(self, dev_eui: str, device_id: str, kind: str, command: str, request_id: str | None,
            now: float) -> Pending:
        waiting = self._pending.setdefault(dev_eui, {})
        if len(waiting) >= self.max_per_device:
            raise CommandError(f"{len(waiting)} commands are already waiting for {device_id}'s acknowledgement; "
                               "try again after the node has answered", request_id, command)
        if len(self) >= self.max_total:
            raise CommandError("too many commands are waiting for acknowledgements", request_id, command)
        seq = self._next_seq.get(dev_eui, int(now) % SEQ_MODULO)
        while seq in waiting:
            seq = (seq + 1) % SEQ_MODULO
        self._next_seq[dev_eui] = (seq + 1) % SEQ_MODULO
        entry = Pending(dev_eui, device_id, kind, command, seq, request_id, now, now + self.ttl_s)
        waiting[seq] = entry
        return entry

    def cancel(self, entry: Pending) -> None:
        waiting = self._pending.get(entry.dev_eui, {})
        if waiting.get(entry.seq) is entry:
            del waiting[entry.seq]

    def match(self, dev_eui: str, seq: object, command: object) -> Pending | None:
        """The pending command a downlink_ack answers (removed), or None."""
        waiting = self._pending.get(dev_eui)
        if not waiting or not isinstance(seq, int):
            return None
        entry = waiting.get(seq)
        if entry is None or entry.command != command:
            return None
        del waiting[seq]
        return entry

    def expire(self, now: float) -> list[Pending]:
        out = []
        for dev_eui, waiting in list(self._pending.items()):
            for seq, entry in list(waiting.items()):
                if entry.expires <= now:
                    out.append(entry)
                    del waiting[seq]
            if not waiting:
                del self._pending[dev_eui]
        return out
