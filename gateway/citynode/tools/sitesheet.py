"""The site sheet for bulk provisioning: a CSV file, one row per node and site, as a spreadsheet exports it.

    name;kind;asset_id;lat;lon;sensor;interval_s;empty_distance_m;full_distance_m;labels;notes
    tree-0001;soil;T-0001;52,5200;13,4050;capacitive;900;;;district=mitte;planted 2019
    glass-0002;fill;GC-0002;52.5210;13.4100;a02yyuw;3600;1.30;0.25;district=mitte;brown glass

Columns (header row required, any order and case; ',' ';' or tab separated; decimal commas accepted):
  name       required: the device name in the registry and MQTT topics (a-z 0-9 _ -)
  kind       required: soil | fill
  board      esp32 | rak11200 (default: --board)         port      serial port of this row's board (default: --port)
  asset_id   tree or container number                     lat, lon  location (both or neither)
  sensor     soil: capacitive | smt100 | teros12 | cs650 (SDI-12); fill: a02yyuw | jsn_sr04t_uart | jsn_sr04t_pulse
  interval_s how often to measure (seconds, 60..15300)   dev_eui   a DevEUI to use instead of the modem's
  labels     key=value;key=value for the registry
  any key of the node's config (firmware/citynode_fw/app/config.py), e.g. soil_dry_mv, empty_distance_m,
  batch_size, radio, fill_alarm_pct. Empty cells keep the default. Columns named notes/comment or starting
  with '_' are ignored; any other unknown column is an error, so a typo cannot silently drop a setting.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .board_link import BOARDS
from .errors import SheetError
from .firmware import node_config
from .identity import normalise_hex

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
_IGNORED = ("notes", "note", "comment", "comments")
SOIL_SENSORS = {"capacitive": {"soil_sensor": "capacitive"},
                "smt100": {"soil_sensor": "sdi12", "sdi12_model": "smt100", "soil_temperature_sensor": "sdi12"},
                "teros12": {"soil_sensor": "sdi12", "sdi12_model": "teros12", "soil_temperature_sensor": "sdi12"},
                "cs650": {"soil_sensor": "sdi12", "sdi12_model": "cs650", "soil_temperature_sensor": "sdi12"}}
FILL_SENSORS = {m: {"fill_sensor": m} for m in ("a02yyuw", "jsn_sr04t_uart", "jsn_sr04t_pulse")}
SHEET_ONLY = ("name", "kind", "board", "port", "asset_id", "lat", "lon", "sensor", "interval_s", "dev_eui", "labels")
_NOT_FROM_SHEET = ("board", "dev_eui", "latitude", "longitude", "asset_id", "kind")  # set by SHEET_ONLY columns


@dataclass
class Site:
    """One row: a node at a site. `settings` are config keys; config() makes the validated node config."""

    row: int
    where: str
    name: str
    kind: str
    board: str | None = None
    port: str | None = None
    asset_id: str = ""
    location: tuple[float, float] | None = None
    dev_eui: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def config(self, board_file: str, dev_eui: str = "") -> dict[str, Any]:
        raw = {"kind": self.kind, "board": board_file, "dev_eui": dev_eui, "asset_id": self.asset_id,
               **self.settings}
        if self.location is not None:
            raw["latitude"], raw["longitude"] = self.location
        cfg, errors = node_config().validate(raw)
        if errors:
            key, _, reason = errors[0].partition(": ")
            raise SheetError(self.where, key, reason)
        return cfg


def _number(where: str, column: str, text: str) -> float:
    value = text.strip()
    if value.count(",") == 1 and "." not in value:
        value = value.replace(",", ".")
    try:
        return float(value)
    except ValueError:
        raise SheetError(where, column, f"{text!r} is not a number") from None


def _setting(where: str, key: str, text: str) -> Any:
    """A sheet cell as the config key's type (the node's schema says which)."""
    kind, _, choices, _ = node_config().SCHEMA[key]
    if kind in ("int", "float"):
        n = _number(where, key, text)
        return int(n) if kind == "int" and n == int(n) else n
    if kind == "bool":
        low = text.strip().lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise SheetError(where, key, f"{text!r} must be true or false")
    if kind == "enum" and isinstance(choices[0], int):
        return int(_number(where, key, text))
    return text.strip()


def _labels(where: str, text: str) -> dict[str, str]:
    out = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        k, sep, v = part.partition("=")
        if not sep or not k.strip():
            raise SheetError(where, "labels", f"{part.strip()!r} is not key=value")
        out[k.strip()] = v.strip()
    return out


def make_site(cells: dict[str, str], row: int, where: str) -> Site:
    """Validate one row (column -> cell text) into a Site."""
    get = {k: v.strip() for k, v in cells.items() if v is not None and v.strip()}
    name = get.get("name", "").lower()
    if not name:
        raise SheetError(where, "name", "is required")
    if not _NAME.match(name):
        raise SheetError(where, "name", f"{name!r} may only hold a-z, 0-9, '_' and '-' (at most 64)")
    kind = get.get("kind", "").lower()
    if kind not in ("soil", "fill"):
        raise SheetError(where, "kind", f"{kind!r} must be soil or fill" if kind else "is required")
    board = get.get("board", "").lower() or None
    if board is not None and board not in BOARDS:
        raise SheetError(where, "board", f"{board!r} must be one of {', '.join(sorted(BOARDS))}")
    location = None
    if ("lat" in get) != ("lon" in get):
        raise SheetError(where, "lat" if "lat" not in get else "lon", "lat and lon go together")
    if "lat" in get:
        location = (_number(where, "lat", get["lat"]), _number(where, "lon", get["lon"]))
    dev_eui = None
    if "dev_eui" in get:
        dev_eui = normalise_hex(get["dev_eui"], 8)
        if dev_eui is None:
            raise SheetError(where, "dev_eui", f"{get['dev_eui']!r} is not 16 hex digits")
    settings: dict[str, Any] = {}
    if "sensor" in get:
        models = SOIL_SENSORS if kind == "soil" else FILL_SENSORS
        model = get["sensor"].lower()
        if model not in models:
            raise SheetError(where, "sensor", f"{model!r} is not a {kind} sensor ({', '.join(models)})")
        settings.update(models[model])
    if "interval_s" in get:
        settings["sample_interval_s"] = _setting(where, "sample_interval_s", get["interval_s"])
    for key, text in get.items():
        if key in node_config().SCHEMA and key not in _NOT_FROM_SHEET:
            settings[key] = _setting(where, key, text)
    site = Site(row=row, where=where, name=name, kind=kind, board=board, port=get.get("port"),
                asset_id=get.get("asset_id", ""), location=location, dev_eui=dev_eui,
                labels=_labels(where, get.get("labels", "")), settings=settings)
    site.config("esp32_devkit")  # every setting checked by the node's schema now, before any board is touched
    return site


def parse_sheet(text: str, origin: str = "sheet") -> list[Site]:
    text = text.lstrip("\ufeff")  # spreadsheet programs write a BOM
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise SheetError(origin, None, "the sheet is empty")
    try:
        dialect: Any = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO("\n".join(lines)), dialect))
    header = [h.strip().lower() for h in rows[0]]
    allowed = set(SHEET_ONLY) | (set(node_config().SCHEMA) - set(_NOT_FROM_SHEET))
    for column in header:
        if column and column not in allowed and column not in _IGNORED and not column.startswith("_"):
            raise SheetError(f"{origin} header", column, "unknown column (see `citynode provision --help`)")
        if header.count(column) > 1 and column:
            raise SheetError(f"{origin} header", column, "appears twice")
    for needed in ("name", "kind"):
        if needed not in header:
            raise SheetError(f"{origin} header", needed, "column is required")
    sites, names, euis = [], set(), set()
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        where = f"{origin} row {n}"
        if len(row) > len(header):
            raise SheetError(where, None, f"{len(row)} cells but the header names {len(header)} columns")
        cells = {col: cell for col, cell in zip(header, row, strict=False)
                 if col and col not in _IGNORED and not col.startswith("_")}
        site = make_site(cells, n, where)
        if site.name in names:
            raise SheetError(where, "name", f"{site.name!r} is used by another row")
        if site.dev_eui and site.dev_eui in euis:
            raise SheetError(where, "dev_eui", f"{site.dev_eui} is used by another row")
        names.add(site.name)
        if site.dev_eui:
            euis.add(site.dev_eui)
        sites.append(site)
    if not sites:
        raise SheetError(origin, None, "the sheet has a header but no rows")
    return sites


def load_sheet(path: str | Path) -> list[Site]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SheetError(str(path), None, f"cannot read it ({e})") from None
    return parse_sheet(text, path.name)
