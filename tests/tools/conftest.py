"""Fixtures for the field tools: emulated boards (the real MicroPython behind a pseudo-terminal) with an emulated
RAK3172 modem on a network that accepts them, and the citynode command line run in-process."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from citynode.cli.main import main as citynode_main
from citynode.emulation.board import EmulatedBoard
from citynode.emulation.lns import LoopbackNetwork
from citynode.emulation.pty_device import PtyDevice
from citynode.emulation.rak3172 import RAK3172, Settings

# Short RUI3 receive and join-accept delays (RUI3 keeps them in flash: AT+RX1DL, AT+JN1DL ...): a wake takes
# about a second of real time. DR5 as ADR settles on near a gateway.
FAST_MODEM = {"dr": 5, "rx1dl_ms": 200, "rx2dl_ms": 400, "jn1dl_ms": 300, "jn2dl_ms": 600}
WORLDS = {
    "soil": {"kind": "soil", "vwc_start": 30.0, "dry_per_day": 0.0, "soil_temp_swing": 0, "battery_drop_per_day": 0,
             "probe": {"dry_mv": 2480, "wet_mv": 1210, "wet_vwc": 45}},
    "fill": {"kind": "fill", "fill_start": 0.0, "fill_per_day": 0.0, "empty_m": 1.35, "full_m": 0.2,
             "temp_swing": 0, "battery_drop_per_day": 0},
}


@pytest.fixture(scope="session", autouse=True)
def _private_build_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The compiled app is cached per source version; keep that cache out of the user's home."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@dataclass
class Rig:
    """One emulated board with its modem and network."""

    board: EmulatedBoard
    modem: RAK3172 | None
    network: LoopbackNetwork
    dev_eui: str

    @property
    def port(self) -> str:
        return str(self.board.path)

    def flash_file(self, name: str) -> Path:
        return self.board.flash_dir / name

    def listing(self) -> dict[str, bytes]:
        """Every file on the board's flash and its content, without the emulator's own files."""
        own = {".rtc", ".reset_cause", "hal.json", ".modem"}
        return {str(p.relative_to(self.board.flash_dir)): p.read_bytes() for p in self.board.flash_dir.rglob("*")
                if p.is_file() and p.name not in own}


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    closers: list[Callable[[], None]] = []

    def make(kind: str = "soil", *, dev_eui: str = "AC1F09FFFE00C101", modem: bool = True,
             accept_joins: bool = True, world: dict[str, Any] | None = None, link: Path | None = None) -> Rig:
        network = LoopbackNetwork(accept_joins=accept_joins)
        rak = pty = None
        if modem:
            rak = RAK3172(dev_eui=dev_eui, network=network, booted=True, settings=Settings(**FAST_MODEM))
            pty = PtyDevice(rak)
            closers.append(pty.close)
        board = EmulatedBoard(tmp_path / f"flash-{len(closers)}-{dev_eui}", modem_path=pty.pts if pty else None,
                              scenario=dict(world or WORLDS[kind]), link=link)
        closers.append(board.close)
        return Rig(board, rak, network, dev_eui.lower())

    yield make
    for close in reversed(closers):
        close()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """cli("flash", "--port", ..., stdin=...) -> CliResult: the citynode command run in this process."""

    def run(*argv: str, stdin: Any = None) -> CliResult:
        monkeypatch.setattr(sys, "stdin", stdin if stdin is not None else io.StringIO(""))
        capsys.readouterr()
        code = citynode_main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def port_holder() -> Iterator[Callable[[str], subprocess.Popen]]:
    """hold(port): another program (a serial terminal) opens the port exclusively, as pyserial's exclusive=True
    does; it keeps it until the test ends."""
    procs: list[subprocess.Popen] = []

    def hold(port: str) -> subprocess.Popen:
        code = ("import serial, sys, time\ns = serial.Serial(sys.argv[1], 115200, exclusive=True)\n"
                "print('held', flush=True)\ntime.sleep(120)\n")
        proc = subprocess.Popen([sys.executable, "-c", code, port], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for p in procs:
        p.kill()
        p.wait()


# -- a mock ESP32 ROM bootloader (PyPI esp32-mock-bootloader) for real esptool sessions ---------------------------

MOCK = Path(sys.executable).with_name("esp32-mock-bootloader")


@pytest.fixture
def mock_rom(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """mock_rom(chip) -> the pseudo-terminal of a mock ESP32 ROM bootloader (esptool's SLIP protocol, an in-memory
    flash); the test is skipped where the package is not installed."""
    if importlib.util.find_spec("esp32_mock_bootloader") is None or not MOCK.exists():
        pytest.skip("esp32-mock-bootloader is not installed (pip install esp32-mock-bootloader)")
    procs: list[subprocess.Popen] = []

    def start(chip: str = "esp32") -> str:
        port_file = tmp_path / f"mock-{chip}.port"
        env = dict(os.environ, TMPDIR=str(tmp_path))
        proc = subprocess.Popen([str(MOCK), "run", "--pty", "--port-file", str(port_file), "--chip", chip,
                                 "--timeout", "120"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        procs.append(proc)
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the mock bootloader did not start")
            time.sleep(0.05)
        return port_file.read_text().strip()

    yield start
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def firmware_image(tmp_path: Path) -> Callable[[str, int], Path]:
    """firmware_image(name, seed) -> a file that looks like an ESP32 image (0xE9 first), different per seed."""

    def make(name: str, seed: int) -> Path:
        path = tmp_path / name
        path.write_bytes(bytes([0xE9]) + bytes((i * seed + 7) % 251 for i in range(40_000)))
        return path

    return make
