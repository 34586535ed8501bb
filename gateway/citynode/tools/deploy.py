"""Put files on a MicroPython board with mpremote, copying only what differs.

One `mpremote exec` asks the board for the SHA-256 of every file it should have (and which folders exist, its
platform and its config.json); the plan then copies only new or changed files, in one mpremote session. Files
marked atomic (config.json, secrets.json) are copied under a temporary name and renamed on the board, so a
cable pulled half-way leaves the old file, never half of the new one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .board_link import BoardLink
from .errors import BoardNotAnswering

STATE_MARK = "CN-STATE "

# Runs on the board (MicroPython; also CPython): nothing here may need more than the standard firmware.
_PROBE = """
import sys, os, json
import hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    b = bytearray(1024)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(memoryview(b)[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
def _d(p):
    try:
        return (os.stat(p)[0] & 0x4000) != 0
    except OSError:
        return False
def _t(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return None
try:
    import machine
    _u = binascii.hexlify(machine.unique_id()).decode()
except Exception:
    _u = ''
print(%(mark)r + json.dumps({'platform': sys.platform, 'machine': getattr(sys.implementation, '_machine', ''),
    'version': sys.version, 'uid': _u, 'config': _t('config.json'),
    'files': dict((p, _h(p)) for p in %(paths)r), 'dirs': dict((d, _d(d)) for d in %(dirs)r)}))
"""


@dataclass
class BoardState:
    """What is on the board: SHA-256 per asked file (None: missing), which folders exist, its config.json."""

    platform: str
    machine: str
    version: str
    uid: str
    config_text: str | None
    files: dict[str, str | None]
    dirs: dict[str, bool]

    @property
    def emulated(self) -> bool:
        return self.platform == "linux"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def parents(remote: str) -> list[str]:
    """Folders a remote path needs, outermost first ('lib/a/b.mpy' -> ['lib', 'lib/a'])."""
    parts = PurePosixPath(remote).parts[:-1]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def read_state(link: BoardLink, paths: list[str]) -> BoardState:
    dirs = sorted({d for p in paths for d in parents(p)})
    out = link.exec(_PROBE % {"mark": STATE_MARK, "paths": list(paths), "dirs": dirs}, timeout=120,
                    action="read what is on the board")
    for line in out.splitlines():
        if line.startswith(STATE_MARK):
            data: dict[str, Any] = json.loads(line[len(STATE_MARK):])
            return BoardState(platform=data["platform"], machine=data.get("machine", ""),
                              version=data.get("version", ""), uid=data.get("uid", ""),
                              config_text=data.get("config"), files=data["files"], dirs=data["dirs"])
    raise BoardNotAnswering(link.port, "it did not report its files; is MicroPython running on it?")


@dataclass(frozen=True)
class Wanted:
    """A file the board should have."""

    remote: str
    local: Path
    sha256: str
    atomic: bool = False


@dataclass
class Plan:
    copies: list[Wanted] = field(default_factory=list)
    mkdirs: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.copies)

    def reason(self, state: BoardState, remote: str) -> str:
        return "new" if state.files.get(remote) is None else "changed"


def plan(wanted: list[Wanted], state: BoardState) -> Plan:
    """Which files to copy (missing or different SHA-256) and which folders to make first."""
    out = Plan()
    for w in wanted:
        if state.files.get(w.remote) == w.sha256:
            out.unchanged.append(w.remote)
        else:
            out.copies.append(w)
    needed = {d for w in out.copies for d in parents(w.remote)}
    out.mkdirs = sorted((d for d in needed if not state.dirs.get(d)), key=lambda d: (d.count("/"), d))
    return out


def apply(link: BoardLink, p: Plan) -> None:
    """Copy the plan's files; atomic ones land under a temporary name and are renamed in one step."""
    if not p.changed:
        return
    pairs = [(w.local, w.remote + ".tmp" if w.atomic else w.remote) for w in p.copies]
    link.copy(pairs, p.mkdirs)
    renames = [w.remote for w in p.copies if w.atomic]
    if renames:
        code = "import os\n" + "".join(f"os.rename({r + '.tmp'!r}, {r!r})\n" for r in renames)
        link.exec(code, action="put the new files in place")


def build_wanted(build_dir: Path, manifest: dict[str, Any], *, frozen: bool = False) -> list[Wanted]:
    """The compiled app from firmware/build.py's manifest; with `frozen` (app frozen into the firmware image,
    firmware/manifest.py) only main.py."""
    out = []
    for rel, info in sorted(manifest["files"].items()):
        if rel == "manifest.json" or (frozen and rel != "main.py"):
            continue
        out.append(Wanted(rel, build_dir / rel, info["sha256"]))
    return out
