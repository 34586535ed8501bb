"""Firmware tests are plain functions that run under CPython (here, through pytest) and under the real
MicroPython Unix port (tests/test_firmware_on_micropython.py runs every one of them there too)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT / "firmware", ROOT / "codecs", Path(__file__).parent):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
