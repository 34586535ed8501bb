"""A board's serial console as a stream of lines, for `citynode monitor`.

The port is opened with DTR and RTS released before it opens, so opening it does not reset an ESP32 board (the
DevKitC auto-reset circuit pulls EN low only when exactly one of them is asserted). When the board resets, the
lines simply go on (its banner shows up as a `reset` event); when the cable is pulled, the port is reopened as
soon as it is back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .board_link import lock_holders
from .errors import PortBusy

_PRINTABLE = {9} | set(range(32, 127))


@dataclass
class Chunk:
    """A console line, or a change of the port: kind is 'line', 'connected' or 'disconnected'."""

    kind: str
    text: str = ""


def clean(raw: bytes) -> str:
    """A line for a terminal: control bytes and invalid UTF-8 dropped (the ESP32 ROM prints at 74880 baud)."""
    text = raw.decode("utf-8", errors="replace").replace("\ufffd", "")
    return "".join(ch for ch in text if ord(ch) in _PRINTABLE or ord(ch) > 127)


class SerialConsole:
    def __init__(self, port: str, baud: int = 115200, *, reopen_s: float = 0.3,
                 stop: threading.Event | None = None, sleep: Callable[[float], None] = time.sleep):
        self.port, self.baud, self.reopen_s = port, baud, reopen_s
        self.stop = stop or threading.Event()
        self.sleep = sleep

    def _open(self) -> Any:
        """The port, open (a serial.Serial)."""
        import serial

        s = serial.serial_for_url(self.port, do_not_open=True, baudrate=self.baud, timeout=0.2, exclusive=True)
        s.dtr = False  # both released before the port opens: no reset pulse
        s.rts = False
        s.open()
        return s

    def chunks(self) -> Iterator[Chunk]:
        """Console lines until stop is set; reconnects by itself. Raises PortBusy when another program holds the
        port."""
        import serial

        connected = None
        while not self.stop.is_set():
            try:
                port = self._open()
            except serial.SerialException as e:
                if "lock" in str(e).lower():
                    raise PortBusy(self.port, lock_holders(self.port)) from None
                if connected is not False:
                    connected = False
                    yield Chunk("disconnected", str(e))
                self.sleep(self.reopen_s)
                continue
            if not connected:
                connected = True
                yield Chunk("connected", self.port)
            buf = b""
            try:
                while not self.stop.is_set():
                    data = port.read(512)
                    if not data:
                        if not os.path.exists(self.port) and "://" not in self.port:
                            raise serial.SerialException("the port disappeared")
                        continue
                    buf += data
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        yield Chunk("line", clean(line.rstrip(b"\r")))
            except (serial.SerialException, OSError) as e:
                connected = False
                yield Chunk("disconnected", str(e))
            finally:
                port.close()
        return
