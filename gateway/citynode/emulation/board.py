"""An emulated MicroPython board on a pseudo-terminal: what `mpremote` and the citynode firmware see as a board.

    with EmulatedBoard(tmp_path / "flash", modem_path=modem_pty.path, scenario={"kind": "soil"},
                       link=tmp_path / "ttyBOARD0") as board:
        subprocess.run(["mpremote", "connect", str(board.path), "cp", "-r", "lib", "main.py", ":"])
        print(board.wake())          # one wake cycle: boot.py, main.py; its console output
        board.power_cycle()          # sleep memory lost, reset cause power_on

Behind the pseudo-terminal a real `micropython` (Unix port) process runs board_agent.py, which mounts the flash
folder at '/' and keeps one interpreter like a board's REPL (board_process.py). The REPL protocols mpremote
speaks (friendly REPL, raw REPL, raw-paste) are emulated byte for byte on the host side (board_repl.py), so
`mpremote connect <path> fs cp/ls/cat/rm/mkdir/sha256sum, exec, eval, run, soft-reset, reset, resume, repl`
work unchanged.

What the board does, as an ESP32 board would:
- soft reset (Ctrl-D, sys.exit(), mpremote's automatic soft reset): "MPY: soft reboot", a fresh interpreter,
  boot.py, and in the friendly REPL main.py when `autorun` is on;
- machine.reset() (`mpremote reset`) and reset(): a fresh interpreter with reset cause hard_reset, boot.py,
  main.py when autorun, the friendly REPL;
- wake(): a deep-sleep wake: reset cause deep_sleep, boot.py and main.py (the citynode firmware: one wake
  cycle, then it returns, which is deep sleep on the Unix port), the board's RTC moved on by the time the node
  asked to sleep;
- power_cycle(): sleep memory (/.rtc) lost, reset cause power_on.
Sleep memory lives in /.rtc and the reset cause in /.reset_cause (firmware/citynode_fw/hal/unix.py reads both);
/hal.json tells the firmware where the emulated modem is (/.modem, a symlink to its pseudo-terminal: the host's
/dev is not visible on the board) and what the simulated world looks like. These files show up in `mpremote ls`,
the price of keeping the board's state on its flash.

The firmware is not on the board until someone deploys it, as on a real board: `mpremote connect <path> cp -r
firmware/build/lib firmware/build/main.py :` (see firmware/build.py); /lib is on sys.path.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .board_process import AgentProcess
from .board_repl import ReplMachine
from .micropython import MicroPythonMissing
from .micropython import micropython_binary as find_micropython
from .pty_device import PtyDevice
from .rak3172 import EmulatorError

RTC_FILE = ".rtc"
CAUSE_FILE = ".reset_cause"
HAL_FILE = "hal.json"
MODEM_LINK = ".modem"  # the modem's serial port as the board sees it: a symlink in the flash folder
CAUSES = ("power_on", "hard_reset", "watchdog", "deep_sleep", "soft_reset", "brownout", "unknown")


class BoardError(EmulatorError):
    """The emulated board cannot do what was asked."""


class BoardTimeout(BoardError):
    """A wake or boot did not finish in time; `output` is what the board printed meanwhile."""

    def __init__(self, what: str, timeout: float, output: str):
        super().__init__(f"{what} did not finish within {timeout:g} s; the board printed:\n{output}")
        self.output = output


def micropython_binary() -> str:
    """The Unix port (citynode.emulation.micropython), a missing one reported as a BoardError."""
    try:
        return find_micropython()
    except MicroPythonMissing as e:
        raise BoardError(str(e)) from None


class EmulatedBoard:
    """One emulated board. Thread-safe; close() leaves no process, thread or descriptor behind.

    flash_dir: the folder that is the board's flash (created when missing).
    modem_path: the serial port of the node's modem (an emulated RAK3172's pseudo-terminal), written to /hal.json.
    scenario: the simulated world (firmware/citynode_fw/hal/sim.py); "start" defaults to now, so the world's hours
        count from the board's creation on the board's RTC.
    micropython: the Unix port binary (default: micropython_binary()).
    link: a stable path kept as a symlink to the pseudo-terminal (like /dev/serial/by-id/...).
    autorun: soft and hard resets run main.py in the friendly REPL, as on a board. Off by default, so that only
        wake() runs the firmware and mpremote sessions stay quick.
    raw_paste: answer mpremote's raw-paste request (MicroPython >= 1.14); False emulates older firmware.
    time_warp: sleeps on the board return at once and its clocks jump ahead instead (board_agent.py). Only for
        a board without a modem: the emulated modem on its pseudo-terminal keeps real time.
    """

    def __init__(self, flash_dir: str | Path, *, modem_path: str | Path | None = None,
                 scenario: dict[str, Any] | None = None, micropython: str | None = None,
                 link: str | Path | None = None, autorun: bool = False, raw_paste: bool = True,
                 name: str = "citynode emulated board", heap_size: str | None = None, time_warp: bool = False):
        self.flash_dir = Path(flash_dir).resolve()
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.last_sleep_ms: int | None = None  # what the firmware asked for at its last deep sleep
        self.resets: list[str] = []  # every (re)start of the interpreter: power_on, hard_reset, soft_reset, ...
        self._rtc_offset_s = 0
        self._ahead_ms = 0  # time warp: how far the board's clocks had run ahead when the node went to sleep
        self._modem_path = str(modem_path) if modem_path is not None else None
        self._scenario = dict(scenario or {})
        self._scenario.setdefault("start", int(time.time()))
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._wakeup: Callable[[], None] | None = None
        self._closed = False
        self._write_hal()
        self._power_loss()
        self._agent = AgentProcess(self.flash_dir, _AgentEvents(self), micropython=micropython or micropython_binary(),
                                   name=name, heap_size=heap_size, time_warp=time_warp)
        self._repl = ReplMachine(_Interpreter(self), banner=self._agent.banner, autorun=autorun,
                                 raw_paste=raw_paste)
        try:
            self._pty = PtyDevice(_Serial(self), link=link)
        except BaseException:
            self._agent.close()
            raise
        with self._lock:
            self.resets.append("power_on")
            self._repl.hard_reset()

    # -- what tests and tools use ------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The serial port to open: the stable link when one was given, else /dev/pts/N."""
        return self._pty.path

    @property
    def pts(self) -> str:
        """The current /dev/pts/N. mpremote reads a /dev/pts/ path without polling (it knows QEMU's ptys), which
        makes `cp` several times faster than through the link."""
        return self._pty.pts

    @property
    def banner(self) -> str:
        """The first line of the friendly REPL banner."""
        return self._repl.banner

    @property
    def autorun(self) -> bool:
        return self._repl.autorun

    @autorun.setter
    def autorun(self, value: bool) -> None:
        with self._lock:
            self._repl.autorun = bool(value)

    @property
    def rtc_offset_s(self) -> int:
        """How far the board's RTC is ahead of the host clock (the deep sleeps it skipped)."""
        return self._rtc_offset_s

    def board_time(self) -> int:
        """The board's RTC, in epoch seconds."""
        return int(time.time()) + self._rtc_offset_s

    @property
    def scenario(self) -> dict[str, Any]:
        return dict(self._scenario)

    def set_scenario(self, scenario: dict[str, Any]) -> None:
        """Change the simulated world (the firmware reads /hal.json at every wake)."""
        with self._lock:
            self._scenario = dict(scenario)
            self._scenario.setdefault("start", int(time.time()))
            self._write_hal()

    def set_modem(self, modem_path: str | Path | None) -> None:
        with self._lock:
            self._modem_path = str(modem_path) if modem_path is not None else None
            self._write_hal()

    def reset_cause(self) -> str:
        """What the firmware will read as its reset cause."""
        try:
            return (self.flash_dir / CAUSE_FILE).read_text().strip() or "power_on"
        except OSError:
            return "power_on"

    def sleep_memory(self) -> bytes | None:
        """The node's sleep memory (RTC memory), None when empty."""
        try:
            return (self.flash_dir / RTC_FILE).read_bytes() or None
        except OSError:
            return None

    def wake(self, cause: str = "deep_sleep", timeout: float = 60.0, sleep_s: float | None = None) -> str:
        """One wake cycle: the board restarts with `cause`, runs boot.py and main.py, and this returns what they
        printed ("\\n" line ends). Before a deep-sleep wake the RTC moves on by the time the firmware asked to
        sleep (or by `sleep_s`; 0 keeps it); a power_on wake starts with empty sleep memory. The REPL must be
        idle (no mpremote command running)."""
        if cause not in CAUSES:
            raise BoardError(f"cause must be one of {CAUSES}, not {cause!r}")
        with self._changed:
            if not self._changed.wait_for(lambda: self._repl.idle, 5.0):
                raise BoardError("the board is busy: a program is running")
            if sleep_s is None:
                sleep_s = self.last_sleep_ms / 1000 if cause == "deep_sleep" and self.last_sleep_ms else 0
            # The RTC kept counting through the sleep, from where the node left it (time warp ran it ahead).
            self._rtc_offset_s += int(round(sleep_s + self._ahead_ms / 1000))
            self.last_sleep_ms = None
            self._ahead_ms = 0
            if cause == "power_on":
                self._power_loss()  # a power-on starts with empty sleep memory
            return self._restart(cause, run_main=True, wait=timeout, what="wake")

    def power_cycle(self, *, wait: float | None = 30.0) -> str:
        """Power off and on: sleep memory is lost, the reset cause is power_on, boot.py (and main.py with
        autorun) run. Returns what they printed (waits up to `wait` seconds; None: does not wait)."""
        with self._changed:
            self._power_loss()
            self.last_sleep_ms = None
            return self._restart("power_on", run_main=None, wait=wait, what="power cycle")

    def reset(self, *, wait: float | None = 30.0) -> str:
        """The reset button: reset cause hard_reset, sleep memory kept."""
        with self._changed:
            return self._restart("hard_reset", run_main=None, wait=wait, what="reset")

    def soft_reset(self) -> None:
        """What Ctrl-D does in the friendly REPL."""
        with self._lock:
            self._repl.soft_reset()
        self._poke()

    def boot_output(self) -> str:
        """What boot.py and main.py printed in the latest boot (power-on, reset, wake), "\\n" line ends."""
        with self._lock:
            return self._repl.boot_output.decode(errors="replace").replace("\r\n", "\n")

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until the REPL waits at a prompt with nothing running."""
        with self._changed:
            return self._changed.wait_for(lambda: self._repl.idle, timeout)

    def unplug(self) -> None:
        """The USB cable comes out: the port disappears (and the board loses power)."""
        self._pty.unplug()

    def replug(self) -> None:
        """The cable goes back in: a new port, and a power-on boot."""
        self._pty.replug()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pty.close()
        self._agent.close()

    def __enter__(self) -> EmulatedBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------------

    def _restart(self, cause: str, *, run_main: bool | None, wait: float | None, what: str) -> str:
        """A fresh interpreter with `cause` and a boot sequence; with `wait`, its output. Lock held."""
        (self.flash_dir / CAUSE_FILE).write_text(cause)
        boots = self._repl.boots
        self.resets.append(cause)
        self._agent.restart(self._rtc_offset_s)
        self._repl.hard_reset(run_main=run_main)
        self._poke()
        if wait is None:
            return ""
        if not self._changed.wait_for(lambda: self._repl.boots > boots, wait):
            output = self.boot_output()
            self._repl.feed(b"\x03")  # leave the board usable
            raise BoardTimeout(what, wait, output)
        return self.boot_output()

    def _power_loss(self) -> None:
        try:
            (self.flash_dir / RTC_FILE).unlink()
        except FileNotFoundError:
            pass
        (self.flash_dir / CAUSE_FILE).write_text("power_on")

    def _write_hal(self) -> None:
        # '/' on the board is the flash folder, so the host's /dev is out of the firmware's reach: the modem's
        # port is wired in as a symlink on the flash (like a UART the board has), which also follows a stable
        # PtyDevice link across replugs.
        env: dict[str, Any] = {"clock": "real", "scenario": self._scenario}
        link = self.flash_dir / MODEM_LINK
        if link.is_symlink():
            link.unlink()
        if self._modem_path is not None:
            os.symlink(os.path.abspath(self._modem_path), link)
            env["modem"] = "/" + MODEM_LINK
        tmp = self.flash_dir / (HAL_FILE + ".tmp")
        tmp.write_text(json.dumps(env, indent=1) + "\n")
        os.replace(tmp, self.flash_dir / HAL_FILE)

    def _poke(self) -> None:
        wake = self._wakeup
        if wake is not None:
            wake()

    # called by the adapters below, from the pump and pty threads

    def _agent_reset(self, cause: str, ms: int) -> None:
        with self._changed:
            if cause == "deep_sleep":
                self._rtc_offset_s += ms // 1000
            self._restart(cause, run_main=None, wait=None, what=cause)
            self._changed.notify_all()


class _Interpreter:
    """What the REPL machine asks of the board (called with the board's lock held; never blocks)."""

    def __init__(self, board: EmulatedBoard):
        self.board = board

    def execute(self, kind: str, payload: bytes) -> None:
        self.board._agent.execute(kind, payload)

    def interrupt(self) -> None:
        self.board._agent.interrupt()

    def restart(self) -> None:
        self.board.resets.append("soft_reset")
        self.board._agent.restart(self.board._rtc_offset_s)


class _AgentEvents:
    """What the interpreter reports (from its pump thread), handed to the REPL machine."""

    def __init__(self, board: EmulatedBoard):
        self.board = board

    def agent_output(self, data: bytes) -> None:
        b = self.board
        with b._changed:
            if hasattr(b, "_repl"):
                b._repl.program_output(data)
        b._poke()

    def agent_finished(self, status: str, traceback: str) -> None:
        b = self.board
        with b._changed:
            b._repl.program_finished(status, traceback)
            b._changed.notify_all()
        b._poke()

    def agent_reset(self, cause: str, ms: int) -> None:
        self.board._agent_reset(cause, ms)
        self.board._poke()

    def agent_sleep(self, ms: int, ahead_ms: int) -> None:
        with self.board._lock:
            self.board.last_sleep_ms = ms
            self.board._ahead_ms = ahead_ms

    def agent_clock(self, offset_s: int) -> None:
        with self.board._lock:
            self.board._rtc_offset_s = offset_s


class _Serial:
    """The board as a serial device for PtyDevice: the terminal's bytes go to the REPL machine."""

    def __init__(self, board: EmulatedBoard):
        self.board = board

    def write(self, data: bytes, now_ms: int) -> None:
        b = self.board
        with b._changed:
            b._repl.feed(data)
            b._changed.notify_all()

    def read(self, now_ms: int) -> bytes:
        with self.board._lock:
            return self.board._repl.take()

    def next_event_ms(self) -> int | None:
        return None

    def set_wakeup(self, callback: Callable[[], None] | None) -> None:
        self.board._wakeup = callback

    def power_on(self, now_ms: int) -> None:
        """PtyDevice.replug(): the board was unpowered while unplugged (and what it printed went nowhere)."""
        with self.board._lock:
            self.board._repl.take()
        self.board.power_cycle(wait=None)
