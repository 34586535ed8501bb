"""The serial port and the programs that talk over it: mpremote (MicroPython's REPL) and esptool (the ESP32 ROM
bootloader), always run with argument lists (never a shell) and with their failures turned into errors a
technician can act on: a missing port, a busy port, a wrong board, a board that does not answer.

Commands (esptool v5 and mpremote 1.2x, see /work/shared/reference/device_modems.md):
  esptool --chip esp32 --port P verify-flash 0x1000 fw.bin          is this image already on the board?
  esptool --chip esp32 --port P erase-flash
  esptool --chip esp32 --port P --baud 460800 write-flash 0x1000 fw.bin   (again without --baud if that fails)
  mpremote connect P exec CODE | fs mkdir :DIR + fs cp FILE :PATH ... | mip install PKG ... | reset
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import BoardNotAnswering, CommandFailed, PortBusy, PortDenied, PortMissing, WrongBoard

WRITE_BAUD = 460800


@dataclass(frozen=True)
class BoardType:
    """A board the tools know: its pin map in firmware/citynode_fw/hal/boards/, its chip and how to flash it."""

    name: str  # what --board takes
    board_file: str  # hal/boards/<board_file>.json, and the config's 'board' key
    chip: str  # esptool --chip
    chip_name: str  # how esptool names the chip in its messages
    flash_offset: int  # where MicroPython's image starts (ports/esp32/boards/ESP32_GENERIC/board.json)
    boot_hint: str  # how to get the board into its ROM bootloader


BOARDS = {
    "esp32": BoardType("esp32", "esp32_devkit", "esp32", "ESP32", 0x1000,
                       "Hold the BOOT button, press and release EN/RESET, release BOOT, then run the command again."),
    "rak11200": BoardType("rak11200", "rak11200", "esp32", "ESP32", 0x1000,
                          "Tie BOOT0 to GND and press RESET (RAK11200 datasheet), then run the command again; "
                          "afterwards remove the BOOT0 link and press RESET so MicroPython starts."),
}
BOARD_BY_FILE = {b.board_file: b for b in BOARDS.values()}


class Result:
    """What a program printed (stdout and stderr together) and its exit status."""

    def __init__(self, returncode: int, output: str):
        self.returncode, self.output = returncode, output


Runner = Callable[[list[str], float], Result]


def run_program(args: list[str], timeout: float) -> Result:
    """Run `args`; a program still running after `timeout` seconds is killed and reported as status -9."""
    try:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return Result(-9, out + f"\n(no answer within {timeout:g} s)")
    return Result(proc.returncode, proc.stdout)


def program(name: str, module: str) -> list[str]:
    """How to start a tool installed with this Python: its script beside the interpreter, else `python -m`."""
    beside = Path(sys.executable).with_name(name)
    return [str(beside)] if beside.exists() else [sys.executable, "-m", module]


def available_ports() -> list[str]:
    try:
        from serial.tools import list_ports
    except ImportError:  # pragma: no cover - pyserial is a dependency
        return []
    return sorted(p.device for p in list_ports.comports())


def lock_holders(path: str) -> list[tuple[int, str]]:
    """Processes holding a flock on the device at `path` (Linux /proc/locks), as (pid, program name)."""
    try:
        st = os.stat(path)
        locks = Path("/proc/locks").read_text()
    except OSError:
        return []
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    out = []
    for line in locks.splitlines():
        parts = line.split()
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        if parts[5] == dev and parts[4].isdigit():
            pid = int(parts[4])
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                name = "?"
            out.append((pid, name))
    return out


def check_port(port: str) -> None:
    """Raise PortMissing or PortBusy; URLs (socket://, rfc2217://) are left to the programs."""
    if "://" in port:
        return
    if not os.path.exists(port):
        raise PortMissing(port, available_ports())
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        raise PortDenied(port) from None
    except OSError as e:
        raise PortMissing(port, available_ports()) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what pyserial's exclusive=True (mpremote, esptool) does
    except BlockingIOError:
        raise PortBusy(port, lock_holders(port)) from None
    finally:
        os.close(fd)


def wait_for_repl(port: str, timeout: float = 15.0) -> str:
    """Interrupt whatever runs (Ctrl-C, as mpremote does) and wait for MicroPython's prompt; returns what the
    board printed. mpremote itself would wait forever on a silent port."""
    import serial

    deadline = time.monotonic() + timeout
    got = b""
    try:
        with serial.Serial(port, 115200, timeout=0.1, exclusive=True) as s:
            s.write(b"\r\x03\x03")
            next_poke = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                got += s.read(256)
                if b">>> " in got or b"raw REPL" in got or got.rstrip().endswith(b">"):
                    return got.decode(errors="replace")
                if time.monotonic() >= next_poke:  # a board still booting misses the first Ctrl-C
                    s.write(b"\r\x03")
                    next_poke += 1.0
    except serial.SerialException as e:
        if "lock" in str(e).lower():
            raise PortBusy(port, lock_holders(port)) from None
        raise BoardNotAnswering(port, f"the port failed: {e}") from None
    detail = "no MicroPython prompt" + (f"; it printed {got[-60:]!r}" if got else ", it printed nothing")
    raise BoardNotAnswering(port, detail)


_WRONG_CHIP = re.compile(r"This chip is (\S+(?: \S+)?), not (\S+)")


class BoardLink:
    """One board on one serial port. Every program run goes through `runner` (tests record the arguments)."""

    def __init__(self, port: str, *, runner: Runner = run_program, mpremote: list[str] | None = None,
                 esptool: list[str] | None = None):
        self.port = port
        self.runner = runner
        self.mpremote = mpremote or program("mpremote", "mpremote")
        self.esptool = esptool or program("esptool", "esptool")

    # -- mpremote -----------------------------------------------------------------------------------------------

    @property
    def device(self) -> str:
        """The port with symlinks (/dev/serial/by-id/...) resolved: mpremote picks its write pacing by the real
        device (a pseudo-terminal needs none)."""
        return self.port if "://" in self.port else os.path.realpath(self.port)

    def mpremote_args(self, *command: str) -> list[str]:
        return [*self.mpremote, "connect", self.device, *command]

    def _mpremote(self, action: str, command: list[str], timeout: float) -> str:
        res = self.runner(self.mpremote_args(*command), timeout)
        if res.returncode == 0:
            return res.output
        out = res.output
        if "failed to access" in out:
            check_port(self.port)  # raises PortMissing or PortBusy when that is why
        if res.returncode == -9 or "could not enter raw repl" in out or "timeout waiting" in out:
            raise BoardNotAnswering(self.port, f"mpremote could not {action}")
        raise CommandFailed("mpremote", action, res.returncode, out)

    def exec(self, code: str, *, timeout: float = 60.0, action: str = "run code on the board") -> str:
        """Run MicroPython code on the board; what it printed."""
        return self._mpremote(action, ["exec", code], timeout)

    def exec_lines(self, code: str, *, timeout: float = 120.0) -> Iterator[str]:
        """Run code on the board and yield its output lines as they arrive."""
        proc = subprocess.Popen(self.mpremote_args("exec", code), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        tail: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail = (tail + [line])[-6:]
                yield line.rstrip("\r\n")
            rc = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if rc != 0:
            if rc < 0:
                raise BoardNotAnswering(self.port, f"no end of output within {timeout:g} s")
            raise CommandFailed("mpremote", "run code on the board", rc, "".join(tail))

    def copy(self, files: list[tuple[Path, str]], mkdirs: list[str] = (), *, timeout: float = 300.0) -> None:
        """Make the folders and copy (local file, remote path) pairs, in one mpremote session."""
        command: list[str] = []
        for d in mkdirs:
            command += [*(["+"] if command else []), "fs", "mkdir", ":" + d]
        for local, remote in files:
            command += [*(["+"] if command else []), "fs", "cp", str(local), ":" + remote]
        if command:
            self._mpremote("copy files to the board", command, timeout)

    def mip_install(self, packages: list[str], *, timeout: float = 300.0) -> None:
        self._mpremote("install " + " ".join(packages), ["mip", "install", *packages], timeout)

    def reset(self, *, timeout: float = 30.0) -> None:
        """A hard reset (machine.reset()): the board restarts and runs main.py on its own."""
        self._mpremote("reset the board", ["reset"], timeout)

    # -- esptool ------------------------------------------------------------------------------------------------

    def esptool_args(self, board: BoardType, *command: str, baud: int | None = None) -> list[str]:
        return [*self.esptool, "--chip", board.chip, "--port", self.port,
                *(["--baud", str(baud)] if baud else []), *command]

    def verify_flash_args(self, board: BoardType, firmware: Path) -> list[str]:
        return self.esptool_args(board, "verify-flash", hex(board.flash_offset), str(firmware))

    def erase_flash_args(self, board: BoardType) -> list[str]:
        return self.esptool_args(board, "erase-flash")

    def write_flash_args(self, board: BoardType, firmware: Path, baud: int | None = WRITE_BAUD) -> list[str]:
        return self.esptool_args(board, "write-flash", hex(board.flash_offset), str(firmware), baud=baud)

    def _esptool(self, board: BoardType, action: str, args: list[str], timeout: float) -> Result:
        res = self.runner(args, timeout)
        out = res.output
        m = _WRONG_CHIP.search(out)
        if m:
            raise WrongBoard(self.port, board.chip_name, m.group(1), "esptool",
                             f"This is not a {board.name} board. Plug in the right board, or choose the matching "
                             "--board.")
        if "lock" in out.lower() and "port" in out.lower() and res.returncode:
            raise PortBusy(self.port, lock_holders(self.port))
        if res.returncode and ("Failed to connect" in out or "No serial data received" in out):
            raise BoardNotAnswering(self.port, "its ROM bootloader did not answer esptool", board.boot_hint)
        return res

    def verify_flash(self, board: BoardType, firmware: Path, *, timeout: float = 180.0) -> bool:
        """True when the board's flash already holds exactly this image (esptool compares digests)."""
        res = self._esptool(board, "verify the firmware", self.verify_flash_args(board, firmware), timeout)
        return res.returncode == 0

    def erase_flash(self, board: BoardType, *, timeout: float = 180.0) -> None:
        res = self._esptool(board, "erase the flash", self.erase_flash_args(board), timeout)
        if res.returncode:
            raise CommandFailed("esptool", "erase the flash", res.returncode, res.output)

    def write_flash(self, board: BoardType, firmware: Path, *, timeout: float = 300.0) -> None:
        """Write at 460800 baud; some USB adapters cannot, so a failure is retried at the default rate."""
        res = self._esptool(board, "write the firmware", self.write_flash_args(board, firmware), timeout)
        if res.returncode:
            res = self._esptool(board, "write the firmware", self.write_flash_args(board, firmware, None), timeout)
        if res.returncode:
            raise CommandFailed("esptool", "write the firmware", res.returncode, res.output)
