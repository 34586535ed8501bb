"""Device identity and keys: DevEUI, JoinEUI, AppKey, P2P key.

ETSI EN 303 645 5.4: keys are unique per device (generated here with `secrets`, never derived), live only in
files of mode 0600 (the node's secrets.json, the provisioning key store, the network-server import files) and
are never printed: people and logs see them masked (`a1b2…ef`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SecretsInvalid

# secrets.json keys the node reads (firmware/citynode_fw/app/cycle.py, app/radios.py): name -> bytes
SECRET_KEYS = {"join_eui": 8, "app_key": 16, "p2p_key": 16, "dev_eui": 8}
_HEX = re.compile(r"^[0-9a-f]*\Z")
DEFAULT_JOIN_EUI = "0000000000000000"
# Where a DevEUI came from, for people.
EUI_SOURCES = {"modem": "read from the modem", "board": "made from the board's MAC address",
               "sheet": "given in the sheet", "generated": "generated (random, locally administered)",
               "dry_run": "placeholder: the real run reads the modem"}


def normalise_hex(value: object, nbytes: int) -> str | None:
    """Lower-case hex of exactly `nbytes` bytes from text with any case and '-', ':' or ' ' separators."""
    if not isinstance(value, str):
        return None
    text = re.sub(r"[-: ]", "", value.strip()).lower()
    return text if len(text) == 2 * nbytes and _HEX.match(text) else None


def mask(value: str | None) -> str:
    """A key or EUI as people may see it: the first 4 and last 2 hex digits (`a1b2…ef`)."""
    if not value:
        return ""
    return value[:4] + "…" + value[-2:] if len(value) > 6 else "…"


def generate_key() -> str:
    """A fresh 128-bit key (AppKey, P2P key) from the operating system's CSPRNG."""
    return secrets.token_hex(16)


def generate_dev_eui() -> str:
    """A random EUI-64 with the locally-administered bit set and the group bit clear (IEEE EUI-64 rules), for
    boards whose modem and chip offer none."""
    raw = bytearray(secrets.token_bytes(8))
    raw[0] = (raw[0] | 0x02) & 0xFE
    return raw.hex()


def eui_from_mac(mac: str) -> str | None:
    """The EUI-64 of a MAC-48 (the ESP32's base MAC): OUI + FFFE + the device part (IEEE's MAC-48 mapping)."""
    text = normalise_hex(mac, 6)
    return None if text is None else text[:6] + "fffe" + text[6:]


@dataclass
class Identity:
    """One node's identity. repr() and masked() never show a key."""

    dev_eui: str
    join_eui: str = DEFAULT_JOIN_EUI
    app_key: str = field(default="", repr=False)
    p2p_key: str = field(default="", repr=False)
    dev_eui_source: str = "generated"  # a key of EUI_SOURCES

    @classmethod
    def new(cls, dev_eui: str, source: str, join_eui: str = DEFAULT_JOIN_EUI) -> Identity:
        return cls(dev_eui=dev_eui, join_eui=join_eui, app_key=generate_key(), p2p_key=generate_key(),
                   dev_eui_source=source)

    def board_secrets(self, radio: str) -> dict[str, str]:
        """What goes into the node's secrets.json: only the keys its radio uses."""
        if radio == "rak3172_lorawan":
            return {"join_eui": self.join_eui, "app_key": self.app_key}
        return {"p2p_key": self.p2p_key}

    def masked(self) -> dict[str, str]:
        return {"dev_eui": self.dev_eui, "dev_eui_source": self.dev_eui_source, "join_eui": self.join_eui,
                "app_key": mask(self.app_key), "p2p_key": mask(self.p2p_key)}

    def to_json(self) -> dict[str, str]:
        """The full record, for the 0600 key store only."""
        return {"dev_eui": self.dev_eui, "join_eui": self.join_eui, "app_key": self.app_key,
                "p2p_key": self.p2p_key, "dev_eui_source": self.dev_eui_source}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> Identity:
        checked = validate_secrets({k: data.get(k) for k in ("dev_eui", "join_eui", "app_key", "p2p_key")}, source)
        if "dev_eui" not in checked:
            raise SecretsInvalid(source, "dev_eui", "missing")
        return cls(dev_eui=checked["dev_eui"], join_eui=checked.get("join_eui", DEFAULT_JOIN_EUI),
                   app_key=checked.get("app_key", ""), p2p_key=checked.get("p2p_key", ""),
                   dev_eui_source=str(data.get("dev_eui_source") or "generated"))


def validate_secrets(raw: object, source: str) -> dict[str, str]:
    """secrets.json content, normalised to lower-case hex. Never echoes a value in an error."""
    if not isinstance(raw, dict):
        raise SecretsInvalid(source, None, "not a JSON object")
    out = {}
    for key, value in raw.items():
        if key not in SECRET_KEYS:
            raise SecretsInvalid(source, key, f"unknown key (allowed: {', '.join(SECRET_KEYS)})")
        if value is None or value == "":
            continue
        text = normalise_hex(value, SECRET_KEYS[key])
        if text is None:
            raise SecretsInvalid(source, key, f"must be {SECRET_KEYS[key]} bytes of hex")
        out[key] = text
    return out


def load_secrets(path: str | Path) -> tuple[dict[str, str], list[str]]:
    """(secrets, warnings) from a secrets.json file; a file others can read earns a warning."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as e:
        raise SecretsInvalid(str(path), None, f"cannot read it: {e.strerror or e}") from None
    try:
        raw = json.loads(text)
    except ValueError:
        raise SecretsInvalid(str(path), None, "not valid JSON") from None
    warnings = []
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(f"{path} can be read by other users of this computer: run chmod 600 {path}")
    return validate_secrets(raw, str(path)), warnings


def secrets_text(values: dict[str, str]) -> str:
    """Canonical secrets.json text (sorted keys), so the same keys always give the same SHA-256."""
    return json.dumps(dict(sorted(values.items())), indent=1) + "\n"


def write_private(path: str | Path, text: str) -> Path:
    """Write `text` atomically to a file only its owner can read or write (0600); a missing parent folder is
    created 0700."""
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
