"""Paths and binaries the tests share (import this, not conftest: several conftest modules exist)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CODECS = ROOT / "codecs"
FIRMWARE = ROOT / "firmware"
EXAMPLES = CODECS / "js" / "examples.json"


def micropython_binary() -> str:
    """The MicroPython Unix port, found as the emulation finds it; a test fails, saying what to install, without."""
    from citynode.emulation.micropython import MicroPythonMissing
    from citynode.emulation.micropython import micropython_binary as find

    try:
        return find()
    except MicroPythonMissing as e:
        pytest.fail(str(e), pytrace=False)


def node_binary() -> str:
    found = shutil.which("node")
    if not found:
        pytest.fail("Node.js is needed for the JavaScript codec tests (apt-get install nodejs)", pytrace=False)
    return found


def open_descriptors() -> set[str]:
    """This process's open file descriptors, after a garbage collection: objects earlier tests dropped close
    theirs when collected, so only a collected snapshot says what a test itself left open."""
    import gc

    gc.collect()
    return set(os.listdir("/proc/self/fd"))
