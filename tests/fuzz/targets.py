"""Fuzz targets: one function per place where bad input enters citynode, each taking bytes.

A target returns None when the input was handled as the code promises, and raises when it was not: either the
code under test raised something it must not (that exception propagates unchanged), or an invariant the code
documents was broken (Broken, with a short stable code). The targets do no atheris-specific work, so pytest can
replay a corpus through them (test_corpus.py) and run.py can hand them to atheris/libFuzzer.

    codec       fPort byte + payload -> decode_uplink / decode_downlink (never raise, one result shape, the
                generated fast path agrees with the reference interpreter, decoded data encodes back)
    chirpstack  "topic\\0payload" (or just the payload, on a default topic) -> chirpstack.parse_event
    tts         the same for tts.parse_event
    serial      flag byte + modem line -> serial_p2p.parse_line -> SerialP2PSource.accept -> Pipeline.handle
                (flag bit 0: re-sign a citynode frame with its device key, so payloads reach the pipeline)
    command     kind/device choice bytes + command payload -> Pipeline.command (+ the node's ack for it)
    config      TOML bytes -> citynode.config.load_config (tomllib + parse_config) -> a Pipeline from it
    registry    bytes as registry.toml and as registry.csv -> Registry.load -> a Pipeline with that registry
    pipeline    1..4 LNS events (raw JSON or built from fuzz bytes) -> parse_event -> Pipeline.handle -> tick

Known findings (FINDINGS) are matched by signature; `run_one(..., known=True)` lets them pass so the fuzzer can
look for new ones, and test_corpus.py holds one strict xfail test per finding.
"""

from __future__ import annotations

import base64
import errno
import json
import math
import os
import re
import shutil
import stat
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PosixPath

import citynode.config as config_module
from citynode.config import ConfigError, load_config
from citynode.core.pipeline import Pipeline, PipelineSettings
from citynode.records import Downlink, Publication, Rejected, Uplink
from citynode.registry import Device, Registry, RegistryError, make_device
from citynode.sinks.sensorthings import SensorThingsSettings
from citynode.sources import chirpstack, serial_p2p, tts
from citynode_codec import _fast, _tables, decode_downlink, decode_uplink, encode, p2p
from citynode_codec import codec as codec_module

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
REPO = HERE.parents[1]

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=timezone.utc)
T0 = NOW.timestamp()
BASE = "citynode"
HEX16 = re.compile(r"[0-9a-f]{16}")
DEVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

# A small registry: two soil nodes (one LoRa P2P, with a key), two fill nodes (one with geometry, one P2P).
P2P_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
REGISTRY_ENTRIES = (
    {"dev_eui": "AC1F09FFFE000001", "name": "tree-0001", "kind": "soil", "asset_id": "T-0001", "lat": 52.52,
     "lon": 13.405, "expected_interval_s": 900, "source": "chirpstack", "labels": {"district": "mitte"},
     "thresholds": {"soil_irrigation_pct": 12}, "datastreams": {"vwc_pct": 101, "soil_temperature_c": "t-1-temp"}},
    {"dev_eui": "ac1f09fffe000002", "name": "glass-0002", "kind": "fill", "asset_id": "GC-0002",
     "empty_distance_m": 1.3, "full_distance_m": 0.25, "expected_interval_s": 3600, "source": "tts",
     "thresholds": {"fill_collection_pct": 75}},
    {"dev_eui": "AC-1F-09-FF-FE-00-00-03", "name": "tree-0003-p2p", "kind": "soil", "source": "serial",
     "p2p_key": P2P_KEY.hex()},
    {"dev_eui": "ac1f09fffe000004", "name": "bin-0004", "kind": "fill", "source": "serial",
     "p2p_key": P2P_KEY.hex()},
)
REGISTRY_TOML = """\
[[device]]
dev_eui = "AC1F09FFFE000001"
name = "tree-0001"
kind = "soil"
datastreams = { vwc_pct = 101 }

[[device]]
dev_eui = "ac1f09fffe000002"
name = "glass-0002"
kind = "fill"
empty_distance_m = 1.30
full_distance_m = 0.25
"""
EUIS = ("ac1f09fffe000001", "ac1f09fffe000002", "ac1f09fffe000003", "ac1f09fffe000004", "70b3d57ed0000abc")
DEVICE_IDS = ("tree-0001", "glass-0002", "tree-0003-p2p", "bin-0004", "AC1F09FFFE000001", "ac-1f-09-ff-fe-00-00-02",
              "70b3d57ed0000abc", "stranger", "")
KIND_CHOICES = ("soil", "fill", "unknown")
# Environment for the config target: {env = "..."} secrets resolve from here, never from the real environment.
ENV_SECRET = "ENV-SECRET-7f3a9c"
FILE_SECRET = "FILE-SECRET-91c2d0"
CONFIG_ENV = {"CITYNODE_OUTPUT_PASSWORD": ENV_SECRET, "CITYNODE_CHIRPSTACK_PASSWORD": ENV_SECRET,
              "CITYNODE_TTS_API_KEY": ENV_SECRET, "CITYNODE_REDIS_URL": "redis://:" + ENV_SECRET + "@redis:6379/0",
              "EMPTY": ""}
SANDBOX_MARK = b"@SANDBOX@"  # in config inputs, replaced by the sandbox directory (registry, secret and CA files)

CHIRPSTACK_REASONS = frozenset(("invalid_json", "invalid_message", "too_large", "bad_topic", "bad_dev_eui",
                                "dev_eui_mismatch", "invalid_field", "no_payload", "mac_only", "encrypted"))
TTS_REASONS = frozenset(("invalid_json", "invalid_message", "too_large", "bad_topic", "bad_dev_eui", "no_dev_eui",
                         "device_id_mismatch", "invalid_field", "no_payload", "mac_only"))
SERIAL_REASONS = frozenset(("unknown_device", "bad_mic", "replayed_fcnt", "not_citynode", "not_uplink",
                            "malformed_line"))
RESPONSE_STATUSES = frozenset(("queued", "rejected"))


class Broken(Exception):
    """An invariant the code documents does not hold. `code` is short and stable (findings match on it)."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


def _require(ok: object, code: str, detail: str = "") -> None:
    if not ok:
        raise Broken(code, detail)


# -- shared state (built once per process, never mutated by a target) ------------------------------------------


class _Shared:
    registry: Registry | None = None
    sandbox: str | None = None
    serial_source: serial_p2p.SerialP2PSource | None = None


def registry() -> Registry:
    if _Shared.registry is None:
        _Shared.registry = Registry([make_device(e, f"fuzz #{i}") for i, e in enumerate(REGISTRY_ENTRIES)])
    return _Shared.registry


def sandbox() -> str:
    """A private directory for the files the config and registry targets write or point at. Under the runner it
    lives in the worker's temporary directory (CITYNODE_FUZZ_TMP, removed by the runner: libFuzzer exits without
    Python's atexit); otherwise it is removed at exit."""
    if _Shared.sandbox is None:
        import atexit

        parent = os.environ.get("CITYNODE_FUZZ_TMP")
        if not parent and os.access("/dev/shm", os.W_OK):
            parent = "/dev/shm"  # RAM-backed: the config and registry targets write a file per input
        path = tempfile.mkdtemp(prefix="citynode-fuzz-", dir=parent or None)
        atexit.register(shutil.rmtree, path, True)
        Path(path, "registry.toml").write_text(REGISTRY_TOML, encoding="utf-8")
        Path(path, "secret.txt").write_text(FILE_SECRET + "\n", encoding="utf-8")
        Path(path, "empty.txt").write_text("", encoding="utf-8")
        Path(path, "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", encoding="utf-8")
        _Shared.sandbox = os.path.realpath(path)
    return _Shared.sandbox


def pipeline_settings() -> PipelineSettings:
    # Both optional platform mappings on: their topics and payloads are part of what must stay safe.
    return PipelineSettings(sensorthings=SensorThingsSettings(id_template="{device_id}-{measurement}"), fiware=True)


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def new_pipeline(reg: Registry | None = None, settings: PipelineSettings | None = None) -> tuple[Pipeline, Clock]:
    clock = Clock()
    return Pipeline(reg if reg is not None else registry(), settings or pipeline_settings(), clock=clock), clock


# -- reading structured values out of fuzz bytes ----------------------------------------------------------------


class Input:
    """Consumes fuzz bytes front to back; reads past the end give zeros and empty strings."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return (self.u8() << 8) | self.u8()

    def u32(self) -> int:
        return (self.u16() << 16) | self.u16()

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    def text(self, n: int) -> str:
        return self.take(n).decode("utf-8", "replace")

    def choice(self, options: tuple):
        return options[self.u8() % len(options)]

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


# -- invariants shared by several targets ------------------------------------------------------------------------


def _strict_json(payload: bytes) -> object:
    def no_constant(name: str):
        raise Broken("json_constant", name)

    try:
        return json.loads(payload.decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise Broken("publication_not_json", str(e)[:200]) from None


def check_topic(topic: object) -> None:
    """MQTT topic name we may publish (checked independently of citynode.core.topics)."""
    _require(isinstance(topic, str) and topic, "unsafe_topic", repr(topic)[:200])
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        raise Broken("unsafe_topic", f"not UTF-8 encodable: {topic[:200]!r}") from None
    _require(size <= 65535, "unsafe_topic", "longer than 65535 bytes")
    _require("+" not in topic and "#" not in topic and "\x00" not in topic and not topic.startswith("$"),
             "unsafe_topic", repr(topic[:200]))
    _require(all(topic.split("/")), "unsafe_topic", f"empty level in {topic[:200]!r}")


def check_filter(topic_filter: object) -> None:
    """An MQTT topic filter a broker accepts: UTF-8 without NUL, "+" and "#" only as whole levels, "#" last."""
    _require(isinstance(topic_filter, str) and topic_filter, "bad_subscription", repr(topic_filter)[:200])
    try:
        size = len(topic_filter.encode("utf-8"))
    except UnicodeEncodeError:
        raise Broken("bad_subscription", f"not UTF-8 encodable: {topic_filter[:200]!r}") from None
    levels = topic_filter.split("/")
    if levels[0] == "$share" and len(levels) > 2:  # $share/<group>/<filter>
        _require(levels[1] and "+" not in levels[1] and "#" not in levels[1], "bad_subscription", topic_filter[:200])
        levels = levels[2:]
    _require(size <= 65535 and "\x00" not in topic_filter, "bad_subscription", repr(topic_filter[:200]))
    for i, level in enumerate(levels):
        _require(level in ("+", "#") or ("+" not in level and "#" not in level), "bad_subscription",
                 f"wildcard inside a level: {topic_filter[:200]!r}")
        _require(level != "#" or i == len(levels) - 1, "bad_subscription", f"'#' not last: {topic_filter[:200]!r}")


def check_publications(pubs: object, item: object = None) -> list[dict]:
    """Every publication has a safe topic, QoS 0..2, a key and a strict-JSON body; every dead letter has a
    reason and none is an internal error (a swallowed exception); a Rejected becomes exactly one dead letter."""
    _require(isinstance(pubs, list), "publications_not_a_list", type(pubs).__name__)
    bodies = []
    for pub in pubs:
        _require(isinstance(pub, Publication), "not_a_publication", type(pub).__name__)
        check_topic(pub.topic)
        _require(pub.qos in (0, 1, 2), "bad_qos", f"{pub.qos!r} on {pub.topic}")
        _require(isinstance(pub.key, str) and pub.key, "publication_without_key", pub.topic)
        _require(isinstance(pub.payload, bytes), "payload_not_bytes", pub.topic)
        body = _strict_json(pub.payload)
        _require(isinstance(body, dict), "publication_not_object", pub.topic)
        eui = body.get("dev_eui")
        _require(eui is None or (isinstance(eui, str) and HEX16.fullmatch(eui)), "published_dev_eui_not_hex",
                 f"{eui!r} on {pub.topic}")
        if pub.topic.endswith("/deadletter"):
            reason = body.get("reason")
            _require(isinstance(reason, str) and reason, "deadletter_without_reason", repr(body)[:300])
            _require(reason != "internal_error", "internal_error", str(body.get("detail"))[:300])
        bodies.append(body)
    if isinstance(item, Rejected):
        _require(len(pubs) == 1 and pubs[0].topic == f"{BASE}/deadletter", "rejection_not_one_deadletter",
                 f"{len(pubs)} publications for {item.reason}")
        _require(bodies[0].get("reason") == item.reason, "deadletter_reason_differs",
                 f"{bodies[0].get('reason')!r} != {item.reason!r}")
    return bodies


def _check_aware(t: object, code: str) -> None:
    _require(isinstance(t, datetime) and t.tzinfo is not None and t.utcoffset() == timedelta(0), code, repr(t))


def check_source_item(item: object, source: str, reasons: frozenset, payload: bytes) -> None:
    """What an LNS parser may return: None, a Rejected with a documented reason, or an Uplink that keeps the
    record's contract (records.py)."""
    if item is None:
        return
    if isinstance(item, Rejected):
        _require(item.source == source, "wrong_source", item.source)
        _require(item.reason in reasons, "undocumented_reason", item.reason)
        _require(isinstance(item.detail, str) and item.detail, "rejection_without_detail", item.reason)
        _check_aware(item.received_at, "rejection_time_not_utc")
        _require(item.dev_eui is None or (isinstance(item.dev_eui, str) and HEX16.fullmatch(item.dev_eui)),
                 "rejected_dev_eui_not_hex", repr(item.dev_eui))
        _require(item.raw is None or item.raw == bytes(payload), "raw_differs", item.reason)
        return
    _require(isinstance(item, Uplink), "not_an_item", type(item).__name__)
    _require(item.source == source, "wrong_source", item.source)
    _require(isinstance(item.dev_eui, str) and HEX16.fullmatch(item.dev_eui), "uplink_dev_eui_not_hex",
             repr(item.dev_eui))
    _require(isinstance(item.fport, int) and 1 <= item.fport <= 255, "uplink_fport", repr(item.fport))
    _require(isinstance(item.fcnt, int) and 0 <= item.fcnt <= 0xFFFFFFFF, "uplink_fcnt", repr(item.fcnt))
    _require(isinstance(item.payload, bytes) and item.payload, "uplink_payload", repr(item.payload)[:80])
    _check_aware(item.received_at, "uplink_time_not_utc")
    _require(NOW - timedelta(days=366) <= item.received_at <= NOW + timedelta(days=1, seconds=1),
             "uplink_time_unbelievable", item.received_at.isoformat())
    _require(isinstance(item.rx, tuple) and len(item.rx) <= 64, "uplink_rx", str(len(item.rx)))
    for rx in item.rx:
        _require(isinstance(rx.gateway_id, str), "rx_gateway_id", repr(rx.gateway_id))
        for v in (rx.rssi_dbm, rx.snr_db):
            _require(v is None or (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)),
                     "rx_number", repr(v))
    _require(item.spreading_factor is None or 5 <= item.spreading_factor <= 12, "uplink_sf",
             repr(item.spreading_factor))
    _require(item.frequency_hz is None or 1 <= item.frequency_hz <= 10_000_000_000, "uplink_frequency",
             repr(item.frequency_hz))
    _require(item.confirmed in (True, False), "uplink_confirmed", repr(item.confirmed))
    _require(item.raw == bytes(payload), "raw_differs", "uplink")


# -- (1) the payload codec ---------------------------------------------------------------------------------------


def _same(a: object, b: object) -> bool:
    """Equality that also tells 1 from 1.0 and True from 1 (they print differently as JSON)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _check_codec_result(result: object, what: str) -> dict | None:
    _require(isinstance(result, dict) and len(result) == 1 and ("data" in result or "errors" in result),
             "codec_result_shape", f"{what}: {result!r}"[:300])
    if "errors" in result:
        errors = result["errors"]
        _require(isinstance(errors, list) and errors and all(isinstance(e, str) and e for e in errors),
                 "codec_errors_shape", f"{what}: {errors!r}"[:300])
        _require(not any(e.startswith(("internal decoder error", "internal encoder error")) for e in errors),
                 "codec_internal_error", f"{what}: {errors[0]}"[:300])
        return None
    data = result["data"]
    _require(isinstance(data, dict) and isinstance(data.get("message"), str), "codec_data_shape",
             f"{what}: {data!r}"[:300])
    return data


_DIRECTIONS = (("uplink", decode_uplink, _tables.UPLINK_PORTS, _fast.UPLINK),
               ("downlink", decode_downlink, _tables.DOWNLINK_PORTS, _fast.DOWNLINK))


def codec(data: bytes) -> None:
    """fPort = first byte, payload = the rest, through the decoder of the fPort's direction (both for an fPort
    that is neither direction's)."""
    if not data:
        return
    fport, payload = data[0], data[1:]
    known = fport in _tables.UPLINK_PORTS or fport in _tables.DOWNLINK_PORTS
    for direction, decode, ports, fast in _DIRECTIONS:
        if known and fport not in ports:
            continue
        what = f"{direction} fPort {fport} {payload.hex()}"
        result = decode(fport, payload)
        decoded = _check_codec_result(result, what)
        entry = fast.get(fport)
        if entry is not None and payload and payload[0] >> 4 == entry[0] and entry[1](payload) is not None:
            # What the generated straight-line decoder accepts, the reference interpreter decodes the same way.
            reference = codec_module._decode_port(ports, fport, payload)
            _require(_same(result, reference), "fast_path_disagrees",
                     f"{what}: fast {result!r} vs interpreter {reference!r}"[:400])
        if decoded is None:
            continue
        # What the codec decodes, it can encode again, and that decodes to the same data.
        name = ports[fport][codec_module.M_NAME]
        try:
            port2, frame = encode(name, decoded)
        except Exception as e:  # noqa: BLE001 - any failure to re-encode decoded data is the finding
            raise Broken("decoded_data_does_not_encode", f"{what}: {type(e).__name__}: {e}"[:300]) from None
        _require(port2 == fport, "reencoded_on_other_fport", f"{what}: {port2}")
        again = _check_codec_result(decode(port2, frame), f"{what} re-encoded as {frame.hex()}")
        _require(again is not None and _same(again, decoded), "roundtrip_differs",
                 f"{what}: {decoded!r} -> {frame.hex()} -> {again!r}"[:400])


# -- (2, 3) LNS events -------------------------------------------------------------------------------------------

CHIRPSTACK_TOPIC = "application/17c82e96/device/-/event/up"  # no DevEUI in the topic: the body's is used
TTS_TOPIC = "v3/city@ttn/devices/tree-0001/up"


def split_event(data: bytes, default_topic: str) -> tuple[str, bytes]:
    """"topic\\0payload", or the whole input as the payload on the default topic."""
    cut = data.find(b"\0")
    if cut < 0:
        return default_topic, data
    return data[:cut].decode("utf-8", "replace"), data[cut + 1:]


def _expect_uplink_data(payload: bytes, item: Uplink, path: tuple[str, ...]) -> None:
    """An independent reading of the JSON: the uplink's bytes are the base64 the document holds."""
    doc = json.loads(payload)
    for key in path[:-1]:
        doc = doc[key]
    _require(base64.b64decode(doc[path[-1]], validate=True) == item.payload, "payload_not_from_json", path[-1])


def chirpstack_event(data: bytes) -> None:
    topic, payload = split_event(data, CHIRPSTACK_TOPIC)
    item = chirpstack.parse_event(topic, payload, NOW)
    check_source_item(item, "chirpstack", CHIRPSTACK_REASONS, payload)
    parts = topic.split("/")
    if len(parts) == 6 and parts[0] == "application" and parts[2] == "device" and parts[4] == "event":
        if parts[5] == "up":
            _require(item is not None, "up_event_without_result", topic[:120])
        else:
            _require(item is None, "other_event_gave_result", topic[:120])
    else:
        _require(isinstance(item, Rejected) and item.reason == "bad_topic", "bad_topic_not_rejected", topic[:120])
    if isinstance(item, Uplink):
        _expect_uplink_data(payload, item, ("data",))


def tts_event(data: bytes) -> None:
    topic, payload = split_event(data, TTS_TOPIC)
    item = tts.parse_event(topic, payload, NOW)
    check_source_item(item, "tts", TTS_REASONS, payload)
    parts = topic.split("/")
    if len(parts) >= 5 and parts[0] == "v3" and parts[2] == "devices" and parts[1] and parts[3]:
        if "/".join(parts[4:]) == "up":
            _require(item is not None, "up_event_without_result", topic[:120])
        else:
            _require(item is None, "other_event_gave_result", topic[:120])
    else:
        _require(isinstance(item, Rejected) and item.reason == "bad_topic", "bad_topic_not_rejected", topic[:120])
    if isinstance(item, Uplink):
        _expect_uplink_data(payload, item, ("uplink_message", "frm_payload"))


# -- (4) the serial P2P receiver ---------------------------------------------------------------------------------


def serial_source() -> serial_p2p.SerialP2PSource:
    if _Shared.serial_source is None:
        # Not started (no port, no thread): accept() is pure apart from the counter store, here in memory.
        source = serial_p2p.SerialP2PSource(serial_p2p.SerialP2PSettings(port="/dev/null-fuzz"),
                                            lambda item, ack: None, registry())
        source._counters = serial_p2p.CounterStore(":memory:")
        _Shared.serial_source = source
    return _Shared.serial_source


def _resign(rx: serial_p2p.RxFrame) -> tuple[serial_p2p.RxFrame, bytes] | None:
    """The frame with a valid MIC when it names a registry device with a key (so its payload is decoded)."""
    try:
        marker, eui, _, _, _, _ = p2p.parse(rx.frame)
    except p2p.FrameError:
        return None
    device = registry().get(bytes(eui).hex())
    if marker != p2p.UPLINK or device is None or device.p2p_key is None:
        return None
    body = rx.frame[:-p2p.MIC_LEN]
    frame = body + p2p.mic(device.p2p_key, body)
    line = f"+EVT:RXP2P:{rx.rssi_dbm}:{rx.snr_db}:{frame.hex().upper()}".encode("ascii")
    return serial_p2p.RxFrame(rx.rssi_dbm, rx.snr_db, frame), line


def serial_line(data: bytes) -> None:
    """Byte 0: flags (bit 0: re-sign the frame); the rest: one line from the modem."""
    if not data:
        return
    flags, line = data[0], data[1:]
    parsed = serial_p2p.parse_line(line)
    kinds = (serial_p2p.RxFrame, serial_p2p.Reply, serial_p2p.Event, serial_p2p.Garbled, serial_p2p.Text)
    _require(parsed is None or isinstance(parsed, kinds), "serial_line_type", type(parsed).__name__)
    if isinstance(parsed, serial_p2p.Garbled):
        _require(isinstance(parsed.reason, str) and parsed.reason, "garbled_without_reason", repr(parsed))
        return
    if not isinstance(parsed, serial_p2p.RxFrame):
        return
    _require(isinstance(parsed.frame, bytes) and 1 <= len(parsed.frame) <= 255, "rx_frame_size",
             str(len(parsed.frame)))
    _require(isinstance(parsed.rssi_dbm, int) and -9999 <= parsed.rssi_dbm <= 9999, "rx_rssi", repr(parsed.rssi_dbm))
    _require(isinstance(parsed.snr_db, (int, float)) and math.isfinite(parsed.snr_db), "rx_snr", repr(parsed.snr_db))
    if flags & 1:
        signed = _resign(parsed)
        if signed is not None:
            parsed, line = signed
    source = serial_source()
    counters = source._counters  # an in-memory replay store, emptied for each input (see serial_source)
    with counters._lock:
        counters._db.execute("DELETE FROM counters")
    item = source.accept(parsed, line, NOW)
    if isinstance(item, Rejected):
        _require(item.reason in SERIAL_REASONS, "undocumented_reason", item.reason)
        _require(isinstance(item.detail, str) and item.detail, "rejection_without_detail", item.reason)
    else:
        _require(isinstance(item, Uplink), "not_an_item", type(item).__name__)
        device = registry().get(item.dev_eui)
        _require(device is not None and device.p2p_key is not None and HEX16.fullmatch(item.dev_eui),
                 "serial_uplink_from_unkeyed_device", item.dev_eui)
        _require(1 <= item.fport <= 223 and len(item.payload) <= p2p.MAX_PAYLOAD, "serial_uplink_shape",
                 f"{item.fport} {len(item.payload)}")
        again = source.accept(parsed, line, NOW)  # the same frame heard again: a replay
        _require(isinstance(again, Rejected) and again.reason == "replayed_fcnt", "replayed_frame_accepted",
                 repr(again)[:200])
    pipe, _ = new_pipeline()
    check_publications(pipe.handle(item), item)


# -- (5) commands from the platform ------------------------------------------------------------------------------


def command(data: bytes) -> None:
    """Byte 0 picks the topic's kind (or says "text follows"), byte 1 the device, the rest is the payload."""
    r = Input(data)
    k = r.u8()
    kind = KIND_CHOICES[k % 4] if k % 4 < 3 else r.text(r.u8() % 24)
    d = r.u8()
    device = DEVICE_IDS[d % (len(DEVICE_IDS) + 1)] if d % (len(DEVICE_IDS) + 1) < len(DEVICE_IDS) \
        else r.text(r.u8() % 80)
    payload = r.rest()
    pipe, _ = new_pipeline()
    downlink, pubs = pipe.command(kind, device, payload, T0)
    body = _check_response(downlink, pubs)
    if downlink is None:
        return
    # The node's downlink_ack for it completes the request, echoing the request_id.
    decoded = decode_downlink(downlink.fport, downlink.payload).get("data") or {}
    _require(decoded.get("seq") == downlink.seq and decoded.get("message") == body.get("command"),
             "downlink_does_not_decode_to_the_command", f"{decoded!r} vs {body!r}"[:300])
    request = _strict_json(payload)
    if isinstance(request, dict) and request.get("request_id") is not None:
        # The same request again is answered, never sent twice.
        again, pubs2 = pipe.command(kind, device, payload, T0 + 1)
        body2 = _check_response(again, pubs2)
        _require(again is None and body2.get("status") == "queued" and body2.get("seq") == downlink.seq,
                 "repeated_request_sent_again", repr(body2)[:300])
    fport, ack = encode("downlink_ack", {"seq": downlink.seq, "command": body["command"], "result": "applied",
                                         "config_crc": 4660})
    up = Uplink("chirpstack", downlink.dev_eui, fport, ack, NOW, fcnt=7)
    bodies = check_publications(pipe.handle(up), up)
    answers = [b for b in bodies if b.get("schema") == "citynode/set_response/1"]
    _require(len(answers) == 1 and answers[0].get("status") == "applied"
             and answers[0].get("request_id") == body.get("request_id"), "ack_does_not_complete_the_request",
             repr(answers)[:300])


def _check_response(downlink: object, pubs: object) -> dict:
    _require(isinstance(pubs, list) and len(pubs) == 1, "command_not_one_response", repr(pubs)[:200])
    [pub] = check_publications(pubs)
    _require(pubs[0].topic.endswith("/set/response"), "response_topic", pubs[0].topic)
    status = pub.get("status")
    _require(status in RESPONSE_STATUSES, "response_status", repr(status))
    # A downlink is always "queued"; "queued" without one is the answer to a request already waiting.
    _require(downlink is None or status == "queued", "downlink_without_queued_response", f"{status} {downlink!r}"[:200])
    _require(downlink is not None or status == "rejected" or pub.get("seq") is not None, "queued_without_downlink",
             repr(pub)[:200])
    if status == "rejected":
        error = pub.get("error")
        _require(isinstance(error, str) and error, "rejection_without_error", repr(pub)[:200])
        _require(not error.startswith("internal error"), "internal_error", error[:200])
    if downlink is not None:
        _require(isinstance(downlink, Downlink) and downlink.fport in _tables.DOWNLINK_PORTS
                 and isinstance(downlink.payload, bytes) and registry().get(downlink.dev_eui) is not None
                 and HEX16.fullmatch(downlink.dev_eui), "bad_downlink", repr(downlink)[:200])
        _require(pub.get("seq") == downlink.seq and 0 <= downlink.seq <= 15, "response_seq", repr(pub)[:200])
    return pub


# -- (6) the bridge's TOML config --------------------------------------------------------------------------------


class _SandboxPath(PosixPath):
    """citynode.config's Path while the config target runs: secret files are read for real inside the sandbox;
    anywhere else (a FIFO, /dev/zero, a host file) the read fails with PermissionError, an OSError the code
    handles like any unreadable file. Paths the OS refuses (a NUL byte) still reach the real call."""

    def read_text(self, *args, **kwargs):
        path = str(self)
        if "\x00" not in path:
            try:
                st = os.stat(path)
            except (OSError, ValueError):
                pass  # the real call reports it
            else:
                inside = os.path.realpath(path).startswith(sandbox() + os.sep)
                if not inside or not stat.S_ISREG(st.st_mode) or st.st_size > 65536:
                    raise PermissionError(errno.EACCES, "outside the fuzz sandbox", path)
        return super().read_text(*args, **kwargs)


SOURCE_CLASSES: dict[str, Callable] = {"chirpstack": chirpstack.ChirpStackSource, "tts": tts.TTSSource}

CANNED_UPLINKS = (
    Uplink("chirpstack", "ac1f09fffe000001", 1, bytes.fromhex("1007541b40"), NOW, fcnt=42, device_name="tree-0001",
           source_id="cs-1"),
    Uplink("tts", "ac1f09fffe000002", 2, bytes.fromhex("20520918cf"), NOW, fcnt=17, device_name="glass-0002"),
)


def config(data: bytes) -> None:
    """The config file as written by an operator: ConfigError (or a non-UTF-8 file) are the only refusals, and a
    config that loads gives a pipeline that publishes only safe topics and keeps secrets out of repr()."""
    box = sandbox()
    path = os.path.join(box, "bridge.toml")
    with open(path, "wb") as f:
        f.write(data.replace(SANDBOX_MARK, box.encode()))
    real_path = config_module.Path
    config_module.Path = _SandboxPath
    try:
        cfg = load_config(path, env=CONFIG_ENV)
    except (ConfigError, UnicodeDecodeError):
        return
    finally:
        config_module.Path = real_path
    shown = repr(cfg)
    _require(ENV_SECRET not in shown and FILE_SECRET not in shown, "secret_in_repr", "BridgeConfig repr")
    for section in cfg.inputs:
        _require(ENV_SECRET not in repr(section), "secret_in_repr", section.kind)
        settings = section.settings(cfg.bridge.instance, cfg.bridge.shared_group)
        _require(ENV_SECRET not in repr(settings), "secret_in_repr", f"{section.kind} settings")
        if section.kind in SOURCE_CLASSES:
            for topic_filter in SOURCE_CLASSES[section.kind](settings, lambda item, ack: None).subscriptions():
                check_filter(topic_filter)
    pipe, _ = new_pipeline(registry(), cfg.pipeline)
    for up in CANNED_UPLINKS:
        bodies = check_publications(pipe.handle(up), up)
        dead = [b.get("reason") for b in bodies if b.get("schema") == "citynode/deadletter/1"]
        _require(not dead, "valid_uplink_dead_lettered", f"{dead} with {cfg.pipeline!r}"[:300])


# -- (7) the device registry -------------------------------------------------------------------------------------

_SOIL = bytes.fromhex("1007541b40")
_FILL = bytes.fromhex("20520918cf")


def check_device(reg: Registry, d: Device) -> None:
    _require(isinstance(d.dev_eui, str) and HEX16.fullmatch(d.dev_eui), "device_dev_eui_not_hex", repr(d.dev_eui))
    _require(isinstance(d.name, str) and DEVICE_NAME.fullmatch(d.name), "device_name", repr(d.name))
    _require(d.kind in ("soil", "fill"), "device_kind", repr(d.kind))
    _require(reg.get(d.dev_eui) is d and reg.by_name(d.name) is d, "device_lookup", d.name)
    if d.location is not None:
        lat, lon = d.location
        _require(-90 <= lat <= 90 and -180 <= lon <= 180, "device_location", repr(d.location))
    _require(d.p2p_key is None or (isinstance(d.p2p_key, bytes) and len(d.p2p_key) == 16), "device_p2p_key", d.name)
    _require(d.expected_interval_s is None or 60 <= d.expected_interval_s <= 7 * 86400, "device_interval", d.name)
    if d.has_geometry:
        _require(d.kind == "fill" and 0 <= d.full_distance_m < d.empty_distance_m <= 10, "device_geometry", d.name)
    for k, v in d.labels.items():
        _require(isinstance(k, str) and isinstance(v, str) and not any(ord(c) < 32 for c in k + v), "device_label",
                 repr((k, v)))
    for k, v in d.datastreams.items():
        _require((isinstance(v, int) and not isinstance(v, bool) and v >= 0)
                 or (isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", v)), "device_datastream",
                 repr((k, v)))


def registry_file(data: bytes) -> None:
    """The same bytes as a TOML registry and as a CSV sheet: RegistryError is the only refusal, and a registry
    that loads holds well-formed devices a pipeline can publish for."""
    box = sandbox()
    for name in ("registry-fuzz.toml", "registry-fuzz.csv"):
        path = os.path.join(box, name)
        with open(path, "wb") as f:
            f.write(data)
        try:
            reg = Registry.load(path)
        except RegistryError:
            continue
        devices = list(reg)
        _require(len(devices) == len(reg), "registry_len", name)
        for d in devices:
            check_device(reg, d)
        pipe, clock = new_pipeline(reg)
        for i, d in enumerate(devices[:4]):
            up = Uplink("chirpstack", d.dev_eui, 1 if d.kind == "soil" else 2, _SOIL if d.kind == "soil" else _FILL,
                        NOW, fcnt=i, device_name=d.name)
            bodies = check_publications(pipe.handle(up), up)
            dead = [b.get("reason") for b in bodies if b.get("schema") == "citynode/deadletter/1"]
            _require(not dead, "valid_uplink_dead_lettered", f"{dead} for {d!r}"[:300])
        clock.t += 8 * 86400
        check_publications(pipe.tick())


# -- (8) the whole pipeline --------------------------------------------------------------------------------------


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event(r: Input) -> tuple[str, str, bytes]:
    """(source, topic, payload) for one LNS event: raw JSON bytes, or a document built from fuzz values."""
    mode = r.u8()
    source = "chirpstack" if mode & 1 else "tts"
    if mode & 2:
        payload = r.take(r.u16() % 4096)
        if source == "chirpstack":
            return source, CHIRPSTACK_TOPIC, payload
        return source, TTS_TOPIC if mode & 4 else "v3/city@ttn/devices/glass-0002/up", payload
    eui_pick = r.u8()
    eui = EUIS[eui_pick % len(EUIS)] if eui_pick % 8 < len(EUIS) else r.take(8).hex()
    if eui_pick & 0x80:
        eui = eui.upper()
    name_pick = r.u8()
    name = DEVICE_IDS[name_pick % len(DEVICE_IDS)] if name_pick & 1 else r.text(name_pick >> 3)
    fport = r.u8()
    fcnt_pick = r.u8()
    fcnt: object = fcnt_pick if fcnt_pick < 200 else (None, -1, 2**32, "12", 1.5, True, r.u32(), "x")[fcnt_pick % 8]
    frame = r.take(r.u8() % 64)
    when = _iso(NOW - timedelta(seconds=r.u16() * 60)) if mode & 8 else (None, "", "not a time", "9999-12-31T23:59:59Z",
                                                                       "0001-01-01T00:00:00+23:59")[mode % 5]
    rssi = (None, -120, -30.5, 1e308, "x", True)[r.u8() % 6]
    gateways = r.u8() % 4
    if source == "chirpstack":
        doc: dict = {"deduplicationId": f"dd-{r.u8()}", "deviceInfo": {"devEui": eui, "deviceName": name},
                     "fPort": fport, "data": base64.b64encode(frame).decode(),
                     "rxInfo": [{"gatewayId": f"gw{i}", "rssi": rssi, "snr": 4.5} for i in range(gateways)],
                     "txInfo": {"frequency": 867100000, "modulation": {"lora": {"spreadingFactor": 7}}}}
        if fcnt is not None:
            doc["fCnt"] = fcnt
        if when is not None:
            doc["time"] = when
        return source, CHIRPSTACK_TOPIC, json.dumps(doc).encode()
    device_id = name or "dev"
    up: dict = {"f_port": fport, "frm_payload": base64.b64encode(frame).decode(),
                "rx_metadata": [{"gateway_ids": {"gateway_id": f"gw{i}"}, "rssi": rssi, "snr": -7.25}
                                for i in range(gateways)], "settings": {"frequency": "868100000"}}
    if fcnt is not None:
        up["f_cnt"] = fcnt
    if when is not None:
        up["received_at"] = when
    doc = {"end_device_ids": {"device_id": device_id, "dev_eui": eui}, "uplink_message": up,
           "correlation_ids": [f"as:up:{r.u8()}"]}
    return source, f"v3/city@ttn/devices/{device_id}/up", json.dumps(doc).encode()


PARSERS: dict[str, Callable] = {"chirpstack": chirpstack.parse_event, "tts": tts.parse_event}


def pipeline(data: bytes) -> None:
    """Up to four LNS events through their parser and one pipeline, with time passing, then a tick."""
    r = Input(data)
    pipe, clock = new_pipeline()
    owners: dict[str, str] = {}
    for _ in range(4):
        if not r.left:
            break
        source, topic, payload = _event(r)
        item = PARSERS[source](topic, payload, NOW)
        if item is None:
            continue
        pubs = pipe.handle(item)
        check_owners(owners, pubs, check_publications(pubs, item))
        if isinstance(item, Uplink):
            # The same uplink again (a second gateway, a redelivery) never yields a message with a new id.
            again = pipe.handle(item)
            check_owners(owners, again, check_publications(again, item))
            new_keys = {p.key for p in again} - {p.key for p in pubs}
            _require(not new_keys, "repeat_gave_new_messages", f"{sorted(new_keys)[:3]}")
        clock.t += r.u16()
    clock.t += r.u8() * 3600
    pubs = pipe.tick()
    check_owners(owners, pubs, check_publications(pubs))


def check_owners(owners: dict[str, str], pubs: list[Publication], bodies: list[dict]) -> None:
    """A device topic (<base>/<kind>/<device>/...) belongs to one DevEUI: two devices never share retained state,
    readings or alerts, whatever names the network server gives them."""
    for pub, body in zip(pubs, bodies, strict=True):
        eui = body.get("dev_eui")
        levels = pub.topic.split("/")
        if not isinstance(eui, str) or len(levels) < 4 or levels[1] not in ("soil", "fill", "unknown"):
            continue
        owner = owners.setdefault(levels[2], eui)
        _require(owner == eui, "device_id_shared", f"{levels[2]!r} published for {owner!r} and for {eui!r}")


# -- registry of targets and known findings ----------------------------------------------------------------------

TARGETS: dict[str, Callable[[bytes], None]] = {
    "codec": codec,
    "chirpstack": chirpstack_event,
    "tts": tts_event,
    "serial": serial_line,
    "command": command,
    "config": config,
    "registry": registry_file,
    "pipeline": pipeline,
}
# Inputs longer than this are cut by the fuzzer (-max_len): keeps each run fast and the corpus small.
MAX_LEN = {"codec": 256, "chirpstack": 4096, "tts": 4096, "serial": 600, "command": 1024, "config": 4096,
           "registry": 4096, "pipeline": 4096}


@dataclass(frozen=True)
class Finding:
    """A known bug, matched by target, exception type, a pattern on the innermost project frame ("path:function")
    or on the invariant code, and a pattern on the message. `corpus` is its minimal input in corpus/<target>/."""

    id: str
    target: str
    exception: str
    where: str
    message: str
    corpus: str
    summary: str


# Known findings: none open. The sixteen found so far are fixed (commit b9ef7ea); their inputs stay in the corpus
# as regression-* files and README.md lists them. Add a Finding here, with its input as corpus/<target>/finding-<id>,
# for each new one (README.md, "Triage").
FINDINGS: tuple[Finding, ...] = ()


def _project_frame(exc: BaseException) -> str:
    """'relative/path.py:function' of the innermost traceback frame inside citynode or citynode_codec."""
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        path = frame.filename.replace(os.sep, "/")
        for root in ("/gateway/citynode/", "/codecs/citynode_codec/"):
            if root in path:
                found = path[path.index(root) + 1:] + ":" + frame.name
    return found


def match_finding(target: str, exc: BaseException) -> Finding | None:
    where = exc.code if isinstance(exc, Broken) else _project_frame(exc)
    for f in FINDINGS:
        if f.target == target and type(exc).__name__ == f.exception and re.fullmatch(f.where, where) \
                and re.search(f.message, str(exc)):
            return f
    return None


def run_one(target: str, data: bytes, *, known: bool = True) -> Finding | None:
    """Run one input. With `known`, a known finding is returned instead of raised; anything else propagates."""
    try:
        TARGETS[target](data)
    except Exception as e:
        found = match_finding(target, e) if known else None
        if found is None:
            raise
        return found
    return None
