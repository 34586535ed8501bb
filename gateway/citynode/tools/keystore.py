"""What provisioning keeps between runs, in its output folder:

  keys/<name>.json          each node's identity and keys (0600, folder 0700): made once, reused on every run,
                            so a node whose board was already written never gets new keys
  provision-state.json      which rows are done, with what the registry and the network servers need (no keys):
                            an interrupted bulk run continues at the first row not done
  nodes/<name>/config.json  the node's files as written to its board (secrets.json there is 0600)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .errors import OutputConflict, SecretsInvalid
from .identity import Identity, write_private

STATE_FILE = "provision-state.json"
STATE_VERSION = 1


class KeyStore:
    """Identities by node name, one 0600 file each."""

    def __init__(self, out_dir: Path):
        self.folder = Path(out_dir) / "keys"

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def get(self, name: str) -> Identity | None:
        path = self.path(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise SecretsInvalid(str(path), None, f"unreadable ({type(e).__name__})") from None
        return Identity.from_json(data, str(path))

    def put(self, name: str, identity: Identity) -> None:
        if not self.folder.exists():
            self.folder.mkdir(parents=True, mode=0o700)
        write_private(self.path(name), json.dumps(identity.to_json(), indent=1) + "\n")

    def all(self) -> dict[str, Identity]:
        if not self.folder.exists():
            return {}
        return {p.stem: ident for p in sorted(self.folder.glob("*.json")) if (ident := self.get(p.stem))}


class RunState:
    """Rows done, by node name, with their registry data (no keys)."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / STATE_FILE
        self.done: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise OutputConflict(f"{self.path} is damaged ({e}).",
                                     "Move it away to start over; keys in keys/ are kept and reused.") from None
            if data.get("version") != STATE_VERSION:
                raise OutputConflict(f"{self.path} was written by another version of citynode.",
                                     "Use a new --out folder.")
            self.done = data.get("done", {})

    def is_done(self, name: str) -> bool:
        return name in self.done

    def mark_done(self, name: str, record: dict[str, Any]) -> None:
        """Record a finished row; written atomically at once, so an interruption never loses a finished row."""
        self.done[name] = {**record, "done_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.save()

    def save(self) -> None:
        write_private(self.path, json.dumps({"version": STATE_VERSION, "done": self.done}, indent=1,
                                            ensure_ascii=False) + "\n")
