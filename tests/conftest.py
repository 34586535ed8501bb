"""Shared test fixtures: the real MicroPython and Node binaries, the spec's vectors, a Mosquitto broker."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import CODECS, EXAMPLES, micropython_binary, node_binary  # noqa: E402

sys.path.insert(0, str(CODECS))  # generate.py


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
