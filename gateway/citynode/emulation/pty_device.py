"""Serve an emulated serial device on a pseudo-terminal, in real time.

    with PtyDevice(RAK3172(...), link=tmp_path / "ttyRAK0") as port:
        serial.Serial(str(port.path), 115200)     # any client that opens a serial port

A background thread moves bytes both ways: what the client writes goes to device.write(data, now_ms), and what
device.read(now_ms) returns goes back, at the moment device.next_event_ms() says it is due. unplug()/replug()
emulate a USB adapter disappearing and coming back: the client's open port fails (EIO), the stable `link`
symlink vanishes, and after replug it points at the new /dev/pts/N.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .rak3172 import EmulatorError

log = logging.getLogger(__name__)


class SerialDevice(Protocol):
    """A device as a pure state machine in explicit time (RAK3172 is one)."""

    def write(self, data: bytes, now_ms: int) -> None: ...

    def read(self, now_ms: int) -> bytes: ...

    def next_event_ms(self) -> int | None: ...


class PtyError(EmulatorError):
    """The pseudo-terminal could not be set up as asked."""


def monotonic_ms() -> int:
    """The default clock: milliseconds of time.monotonic(), shared by every device in the process."""
    return time.monotonic_ns() // 1_000_000


class PtyDevice:
    """One device on one pseudo-terminal. Thread-safe; close() leaves no thread or descriptor behind.

    link: a path (e.g. tmp_path / "ttyUSB0") kept as a symlink to the current /dev/pts/N.
    power_cycle_on_replug: replug() powers the device up again (device.power_on(now_ms)), as USB power does.
    transcript: the last `transcript_size` chunks as (ms, "host" or "device", bytes).
    """

    def __init__(self, device: SerialDevice, *, link: str | Path | None = None,
                 clock: Callable[[], int] = monotonic_ms, power_cycle_on_replug: bool = True,
                 max_idle_ms: int = 250, transcript_size: int = 2000):
        self.device = device
        self.clock = clock
        self.power_cycle_on_replug = power_cycle_on_replug
        self.max_idle_ms = max_idle_ms
        self.transcript: deque[tuple[int, str, bytes]] = deque(maxlen=transcript_size)
        self.dropped = 0  # bytes lost because nobody read the port
        self._link = Path(link) if link is not None else None
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self._pts = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closed = False
        set_wakeup = getattr(device, "set_wakeup", None)
        if callable(set_wakeup):
            set_wakeup(self.poke)
        try:
            self._plug()
        except BaseException:
            self._close_pipe()
            raise

    @property
    def path(self) -> Path:
        """What a client opens: the stable link if one was given, else the current /dev/pts/N."""
        if self._link is not None:
            return self._link
        if not self._pts:
            raise PtyError("unplugged, and no stable link was given")
        return Path(self._pts)

    @property
    def pts(self) -> str:
        """The current /dev/pts/N ("" while unplugged)."""
        return self._pts

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def poke(self) -> None:
        """Make the I/O thread look at the device now (called when something outside changed it)."""
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # already poked, or closing

    def unplug(self) -> None:
        """The USB adapter disappears: the client's port fails and the link vanishes."""
        with self._lock:
            self._unplug()

    def replug(self) -> None:
        """The adapter comes back on a new /dev/pts/N; the link points at it again."""
        with self._lock:
            if self._closed:
                raise PtyError("closed")
            if self._master is not None:
                return
            now = self.clock()
            power_on = getattr(self.device, "power_on", None)
            if self.power_cycle_on_replug and callable(power_on):
                power_on(now)
            else:
                self.device.read(now)  # what the device printed while unplugged went nowhere
            self._plug()

    def close(self) -> None:
        """Stop the thread and release the pseudo-terminal, the link and the wake-up pipe."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._unplug()
            set_wakeup = getattr(self.device, "set_wakeup", None)
            if callable(set_wakeup):
                set_wakeup(None)
            self._close_pipe()

    def __enter__(self) -> PtyDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------------------------

    def _plug(self) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no CR/LF translation: bytes pass as a UART would carry them
            os.set_blocking(master, False)
            pts = os.ttyname(slave)
            if self._link is not None:
                if self._link.exists() and not self._link.is_symlink():
                    raise PtyError(f"{self._link} exists and is not a symlink")
                tmp = self._link.with_name(f".{self._link.name}.{os.getpid()}.tmp")
                if tmp.is_symlink():
                    tmp.unlink()
                os.symlink(pts, tmp)
                os.replace(tmp, self._link)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master, self._slave, self._pts = master, slave, pts
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"pty {pts}", daemon=True)
        self._thread.start()

    def _unplug(self) -> None:
        if self._master is None:
            return
        self._stop.set()
        self.poke()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._link is not None and self._link.is_symlink() and os.readlink(self._link) == self._pts:
            self._link.unlink()
        os.close(self._master)
        if self._slave is not None:
            os.close(self._slave)
        self._master, self._slave, self._pts = None, None, ""

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def _run(self) -> None:
        master = self._master
        assert master is not None
        while not self._stop.is_set():
            try:
                self._step(master)
            except Exception:
                log.exception("pty %s: device failed", self._pts)
                self._stop.wait(self.max_idle_ms / 1000)

    def _step(self, master: int) -> None:
        due = self.device.next_event_ms()
        wait_ms = self.max_idle_ms if due is None else min(max(due - self.clock(), 0), self.max_idle_ms)
        readable, _, _ = select.select([master, self._wake_r], [], [], wait_ms / 1000)
        if self._wake_r in readable:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        if self._stop.is_set():
            return
        if master in readable:
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                data = b""
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""  # no client has the port open
            if data:
                now = self.clock()
                self.transcript.append((now, "host", data))
                self.device.write(data, now)
        now = self.clock()
        out = self.device.read(now)
        if out:
            self.transcript.append((now, "device", out))
            self._send(master, out)

    def _send(self, master: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(master, view)
            except (BlockingIOError, OSError):
                self.dropped += len(view)  # nobody reads the port: a UART would overrun the same way
                return
            view = view[n:]
