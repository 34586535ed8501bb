"""The device registry: what the bridge knows about each node, from a TOML file or a technician's CSV sheet.

TOML, one table per device:

    [[device]]
    dev_eui = "AC1F09FFFE000001"      # key; any case, separators '-' ':' ' ' allowed
    name = "tree-0001"                # device id in topics (a-z 0-9 _ -); default: the dev_eui
    kind = "soil"                     # "soil" or "fill"
    asset_id = "T-0001"               # tree or container number
    lat = 52.5200                     # location (both or neither)
    lon = 13.4050
    expected_interval_s = 900         # how often it should report (availability)
    source = "chirpstack"             # where it is heard: chirpstack | tts | serial (a hint)
    p2p_key = "000102...0f"           # 32 hex chars: LoRa P2P frame key (secret: never printed)
    labels = { district = "mitte" }
    # fill nodes: container geometry (distance from the sensor), empty > full
    # empty_distance_m = 1.30
    # full_distance_m = 0.25
    [device.thresholds]               # per-device alert thresholds (override the bridge's)
    soil_irrigation_pct = 12
    [device.datastreams]              # SensorThings Datastream ids per measurement
    vwc_pct = 101

CSV: a header row naming the same columns (in any order, any case; ',' ';' or tab separated); labels as
"key=value;key=value"; thresholds as their own columns (fill_collection_pct, soil_irrigation_pct,
battery_low_v); datastreams as "measurement=id;...". Columns named notes/comment or starting with '_' are
ignored; any other unknown column is an error, so a typo cannot silently drop a setting.
"""

from __future__ import annotations

import csv
import io
import math
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

KINDS = ("soil", "fill")
SOURCES = ("chirpstack", "tts", "serial")
THRESHOLDS = {  # name -> (min, max)
    "fill_collection_pct": (0.0, 125.0),
    "soil_irrigation_pct": (0.0, 100.0),
    "battery_low_v": (2.0, 4.5),
}
MEASUREMENT_NAMES = ("vwc_pct", "soil_temperature_c", "soil_tension_kpa", "soil_ec_us_cm", "fill_pct",
                     "distance_m", "temperature_c")
FIELDS = ("dev_eui", "name", "kind", "asset_id", "lat", "lon", "empty_distance_m", "full_distance_m",
          "expected_interval_s", "labels", "p2p_key", "source", "thresholds", "datastreams")
MIN_INTERVAL_S, MAX_INTERVAL_S = 60, 7 * 86400
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
_HEX = re.compile(r"^[0-9a-f]*\Z")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
MAX_DEVICES = 100_000


class RegistryError(ValueError):
    """A registry entry that is not valid. `where` names the file and row or table, `key` the field."""

    def __init__(self, where: str, key: str | None, message: str):
        self.where, self.key = where, key
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


@dataclass(frozen=True)
class Device:
    dev_eui: str  # 16 lower-case hex digits
    name: str  # device id in topics
    kind: str  # "soil" | "fill"
    asset_id: str | None = None
    location: tuple[float, float] | None = None  # (lat, lon)
    empty_distance_m: float | None = None
    full_distance_m: float | None = None
    expected_interval_s: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    p2p_key: bytes | None = field(default=None, repr=False)  # secret
    source: str | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    datastreams: Mapping[str, int | str] = field(default_factory=dict)

    @property
    def has_geometry(self) -> bool:
        return self.empty_distance_m is not None and self.full_distance_m is not None

    def __hash__(self) -> int:  # labels/thresholds are dicts: hash on the key
        return hash(self.dev_eui)


def normalise_eui(value: object) -> str | None:
    """16 lower-case hex digits from a DevEUI written with any case and '-', ':' or ' ' separators; else None."""
    if not isinstance(value, str):
        return None
    text = re.sub(r"[-: ]", "", value.strip()).lower()
    return text if len(text) == 16 and _HEX.match(text) else None


# -- validation of one entry ----------------------------------------------------------------------------------


def _text(where: str, key: str, value: Any, *, required: bool = False, max_len: int = 128) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RegistryError(where, key, "is required")
        return None
    if not isinstance(value, str):
        raise RegistryError(where, key, f"must be text, got {type(value).__name__}")
    value = value.strip()
    if len(value) > max_len or any(ord(c) < 32 for c in value):
        raise RegistryError(where, key, f"must be at most {max_len} printable characters")
    return value


def _float(where: str, key: str, value: Any, lo: float, hi: float) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().replace(",", ".") if value.count(",") == 1 and "." not in value
                          else value.strip())
        except ValueError:
            raise RegistryError(where, key, f"{value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RegistryError(where, key, f"{value!r} is not a number")
    if not lo <= value <= hi:
        raise RegistryError(where, key, f"{value} is outside {lo:g}..{hi:g}")
    return float(value)


def _pairs(where: str, key: str, value: Any) -> dict[str, Any]:
    """A TOML table, or "k=v;k=v" text from a CSV cell."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise RegistryError(where, key, "must be a table (TOML) or 'key=value;key=value' (CSV)")
    out: dict[str, Any] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        k, sep, v = part.partition("=")
        if not sep or not k.strip():
            raise RegistryError(where, key, f"{part.strip()!r} is not key=value")
        out[k.strip()] = v.strip()
    return out


def make_device(entry: Mapping[str, Any], where: str) -> Device:
    """Validate one registry entry (a TOML table or a CSV row as a dict) into a Device."""
    unknown = sorted(k for k in entry if k not in FIELDS)
    if unknown:
        raise RegistryError(where, unknown[0], f"unknown key (allowed: {', '.join(FIELDS)})")
    raw_eui = entry.get("dev_eui")
    dev_eui = normalise_eui(raw_eui)
    if dev_eui is None:
        raise RegistryError(where, "dev_eui", f"{raw_eui!r} is not 16 hex digits" if raw_eui else "is required")
    name = _text(where, "name", entry.get("name")) or dev_eui
    name = name.lower()
    if not _NAME.match(name):
        raise RegistryError(where, "name", f"{name!r} may only hold a-z, 0-9, '_' and '-' (at most 64, "
                                           "starting with a letter or digit)")
    kind = _text(where, "kind", entry.get("kind"), required=True).lower()
    if kind not in KINDS:
        raise RegistryError(where, "kind", f"{kind!r} must be one of {', '.join(KINDS)}")
    lat = _float(where, "lat", entry.get("lat"), -90, 90)
    lon = _float(where, "lon", entry.get("lon"), -180, 180)
    if (lat is None) != (lon is None):
        raise RegistryError(where, "lat" if lat is None else "lon", "lat and lon go together")
    empty = _float(where, "empty_distance_m", entry.get("empty_distance_m"), 0, 10)
    full = _float(where, "full_distance_m", entry.get("full_distance_m"), 0, 10)
    if (empty is None) != (full is None):
        raise RegistryError(where, "empty_distance_m" if empty is None else "full_distance_m",
                            "empty_distance_m and full_distance_m go together")
    if empty is not None:
        if kind != "fill":
            raise RegistryError(where, "empty_distance_m", "container geometry is only for fill nodes")
        if not full < empty:
            raise RegistryError(where, "full_distance_m", f"must be less than empty_distance_m ({full} >= {empty})")
    interval = _float(where, "expected_interval_s", entry.get("expected_interval_s"), MIN_INTERVAL_S,
                      MAX_INTERVAL_S)
    key_text = _text(where, "p2p_key", entry.get("p2p_key"), max_len=64)
    p2p_key = None
    if key_text is not None:
        cleaned = key_text.replace(" ", "").lower()
        if len(cleaned) != 32 or not _HEX.match(cleaned):
            # never echo the value: it is a secret
            raise RegistryError(where, "p2p_key", "must be 32 hex digits")
        p2p_key = bytes.fromhex(cleaned)
    source = _text(where, "source", entry.get("source"))
    if source is not None:
        source = source.lower()
        if source not in SOURCES:
            raise RegistryError(where, "source", f"{source!r} must be one of {', '.join(SOURCES)}")
    labels = {}
    for k, v in _pairs(where, "labels", entry.get("labels")).items():
        if not _LABEL_KEY.match(str(k)):
            raise RegistryError(where, "labels", f"label name {k!r} may only hold letters, digits, '_', '.', '-'")
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise RegistryError(where, "labels", f"label {k!r} must be text or a number")
        labels[str(k)] = _text(where, f"labels.{k}", str(v)) or ""
    thresholds = {}
    for k, v in _pairs(where, "thresholds", entry.get("thresholds")).items():
        if k not in THRESHOLDS:
            raise RegistryError(where, f"thresholds.{k}", f"unknown threshold (allowed: {', '.join(THRESHOLDS)})")
        value = _float(where, f"thresholds.{k}", v, *THRESHOLDS[k])
        if value is not None:
            thresholds[k] = value
    datastreams: dict[str, int | str] = {}
    for k, v in _pairs(where, "datastreams", entry.get("datastreams")).items():
        if k not in MEASUREMENT_NAMES:
            raise RegistryError(where, f"datastreams.{k}", f"unknown measurement (allowed: "
                                                           f"{', '.join(MEASUREMENT_NAMES)})")
        if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit() and len(v.strip()) <= 18:
            v = int(v.strip())  # (isdigit() alone also takes "²"; longer digit strings stay text ids)
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, int) and v < 0):
            raise RegistryError(where, f"datastreams.{k}", "must be a non-negative integer or text id")
        if isinstance(v, str) and (not v.strip() or not re.match(r"^[A-Za-z0-9_.:-]{1,128}\Z", v.strip())):
            raise RegistryError(where, f"datastreams.{k}", "a text id may only hold letters, digits, '_.:-'")
        datastreams[k] = v.strip() if isinstance(v, str) else v
    return Device(dev_eui=dev_eui, name=name, kind=kind, asset_id=_text(where, "asset_id", entry.get("asset_id")),
                  location=(lat, lon) if lat is not None and lon is not None else None,
                  empty_distance_m=empty, full_distance_m=full, expected_interval_s=interval, labels=labels,
                  p2p_key=p2p_key, source=source, thresholds=thresholds, datastreams=datastreams)


# -- files ----------------------------------------------------------------------------------------------------


def parse_toml(text: str, origin: str = "registry") -> list[Device]:
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as e:
        raise RegistryError(origin, None, f"not valid TOML: {e}") from None
    extra = sorted(k for k in doc if k != "device")
    if extra:
        raise RegistryError(origin, extra[0], "unknown top-level key (devices go in [[device]] tables)")
    entries = doc.get("device", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise RegistryError(origin, "device", "must be an array of tables ([[device]])")
    return [make_device(e, f"{origin} [[device]] #{i + 1}") for i, e in enumerate(entries)]


def _csv_row(header: list[str], row: list[str], where: str) -> dict[str, Any]:
    if len(row) > len(header):
        raise RegistryError(where, None, f"{len(row)} cells but the header names {len(header)} columns")
    entry: dict[str, Any] = {}
    thresholds: dict[str, str] = {}
    for column, cell in zip(header, row, strict=False):  # short rows: missing cells are empty
        if not column or column in ("notes", "note", "comment", "comments") or column.startswith("_"):
            continue
        cell = cell.strip()
        if column in THRESHOLDS:
            if cell:
                thresholds[column] = cell
        else:
            entry[column] = cell or None
    if thresholds:
        entry["thresholds"] = thresholds
    return entry


def parse_csv(text: str, origin: str = "registry") -> list[Device]:
    text = text.lstrip("\ufeff")  # spreadsheet programs write a BOM
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO("\n".join(lines)), dialect))
    except csv.Error as e:
        raise RegistryError(origin, None, f"not valid CSV: {e}") from None
    header = [h.strip().lower().lstrip("\ufeff") for h in rows[0]]
    known = set(FIELDS) | set(THRESHOLDS)
    for column in header:
        if column and column not in known and column not in ("notes", "note", "comment", "comments") \
                and not column.startswith("_"):
            raise RegistryError(f"{origin} header", column, f"unknown column (allowed: {', '.join(sorted(known))})")
    if "dev_eui" not in header:
        raise RegistryError(f"{origin} header", "dev_eui", "column is required")
    seen = set()
    for column in header:
        if column and column in seen:
            raise RegistryError(f"{origin} header", column, "column appears twice")
        seen.add(column)
    devices = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{origin} row {n}"
        devices.append(make_device(_csv_row(header, row, where), where))
    return devices


def load_devices(path: str | Path) -> list[Device]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RegistryError(str(path), None, "is not UTF-8 text") from None
    except OSError as e:
        raise RegistryError(str(path), None, f"cannot read: {e.strerror or e}") from None
    if path.suffix.lower() == ".toml":
        return parse_toml(text, path.name)
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return parse_csv(text, path.name)
    raise RegistryError(str(path), None, "unknown registry format (use .toml or .csv)")


# -- the registry ---------------------------------------------------------------------------------------------


class Registry:
    """Devices by DevEUI (case-insensitive) and by name. Safe to read from several threads while reload()
    swaps in a new table."""

    def __init__(self, devices: Iterable[Device] = (), path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._tables = self._index(list(devices), str(self.path or "registry"))
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> Registry:
        return cls(load_devices(path), path)

    @staticmethod
    def _index(devices: list[Device], origin: str) -> tuple[dict[str, Device], dict[str, Device]]:
        if len(devices) > MAX_DEVICES:
            raise RegistryError(origin, None, f"more than {MAX_DEVICES} devices")
        by_eui: dict[str, Device] = {}
        by_name: dict[str, Device] = {}
        for d in devices:
            if d.dev_eui in by_eui:
                raise RegistryError(origin, "dev_eui", f"{d.dev_eui} is listed twice ({by_eui[d.dev_eui].name} "
                                                       f"and {d.name})")
            if d.name in by_name:
                raise RegistryError(origin, "name", f"{d.name!r} is used by {by_name[d.name].dev_eui} and "
                                                    f"{d.dev_eui}")
            by_eui[d.dev_eui] = d
            by_name[d.name] = d
        return by_eui, by_name

    def reload(self) -> bool:
        """Re-read the file. Returns True when something changed; on an error keeps the old table and raises
        RegistryError."""
        if self.path is None:
            return False
        with self._lock:
            tables = self._index(load_devices(self.path), str(self.path))
            changed = tables[0] != self._tables[0]
            self._tables = tables
            return changed

    def get(self, dev_eui: str) -> Device | None:
        eui = normalise_eui(dev_eui)
        return self._tables[0].get(eui) if eui else None

    def by_name(self, name: str) -> Device | None:
        return self._tables[1].get(name.lower()) if isinstance(name, str) else None

    def find(self, ident: str) -> Device | None:
        """By name, else by DevEUI."""
        return self.by_name(ident) or self.get(ident)

    def __iter__(self) -> Iterator[Device]:
        return iter(list(self._tables[0].values()))

    def __len__(self) -> int:
        return len(self._tables[0])

    def __contains__(self, dev_eui: object) -> bool:
        return isinstance(dev_eui, str) and self.get(dev_eui) is not None

    def __repr__(self) -> str:
        return f"Registry({len(self)} devices, path={str(self.path) if self.path else None!r})"
