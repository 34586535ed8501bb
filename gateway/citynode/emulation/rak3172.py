"""An emulated RAK3172 running RUI3 AT firmware, as a pure state machine in explicit time.

    modem = RAK3172(dev_eui="AC1F09FFFE000001", network=lns, booted=True)
    modem.write(b"AT+JOIN\\r\\n", now_ms=0)
    modem.read(now_ms=20)            # b"OK\\r\\n"
    modem.next_event_ms()            # when the modem next prints something (or must reach the network)

Nothing here reads a clock or sleeps: every call carries the time, so the same object serves a real-time
pseudo-terminal (pty_device.py) and a virtual-time fleet. The wire format follows the RUI3 source
(RAKWireless/RAK-STM32-RUI, cores/STM32WLE/component/service/mode/cli/): characters are echoed as typed when echo
is on, Enter echoes "\\n\\r" (service_mode_cli.c), a query prints "AT+XXX=<value>\\r\\n" (atcmd_*.c "%s="), every
command ends with one status from atcmd.c atcmd_err_tbl followed by "\\r\\n", and +EVT lines come from
service_lora.c / service_lora_p2p.c. The LoRaMAC timing follows LoRaMac-node: the send confirmation
(+EVT:TX_DONE / +EVT:SEND_CONFIRMED_*) is printed when the MAC is done, i.e. after RX1 when something arrived
there, otherwise after the RX2 window, and before the +EVT:RX_1 line of a downlink.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from .air import (
    BAND_REGIONS,
    JOIN_ACCEPT_LEN,
    JOIN_REQUEST_LEN,
    REGIONS,
    Air,
    P2PConfig,
    Region,
    lora_time_on_air_ms,
)

log = logging.getLogger(__name__)

# atcmd.c atcmd_err_tbl, in order; a handler returns an index into it.
STATUSES = ("OK", "AT_ERROR", "AT_PARAM_ERROR", "AT_BUSY_ERROR", "AT_TEST_PARAM_OVERFLOW", "AT_NO_CLASSB_ENABLE",
            "AT_NO_NETWORK_JOINED", "AT_RX_ERROR", "AT_MODE_NO_SUPPORT", "AT_COMMAND_NOT_FOUND",
            "AT_UNSUPPORTED_BAND")
(OK, AT_ERROR, AT_PARAM_ERROR, AT_BUSY_ERROR, _OVERFLOW, _NO_CLASSB, AT_NO_NETWORK_JOINED, _RX_ERROR,
 AT_MODE_NO_SUPPORT, AT_COMMAND_NOT_FOUND, AT_UNSUPPORTED_BAND) = range(len(STATUSES))

NWM_P2P, NWM_LORAWAN, NWM_FSK = 0, 1, 2
PRECV_STOP, PRECV_CONTINUOUS_TX, PRECV_CONTINUOUS, PRECV_ONE = 0, 65533, 65534, 65535
SEND_FAILED_RX2_TIMEOUT = 4  # LoRaMacEventInfoStatus_t RX2_TIMEOUT, printed as SEND_CONFIRMED_FAILED(4)

_CLI_BUFFER = 2048  # service_mode_cli.h CLI_BUFFER_SIZE; one less is kept
_MAX_CMD_LEN = 32  # atcmd.h MAX_CMD_LEN
_R, _W = 1, 2
_BANNER_RULE = "-" * 54


class EmulatorError(Exception):
    """Misuse of an emulator (not something the emulated firmware would print)."""


class ClockError(EmulatorError):
    """A call carried a time earlier than one already seen."""

    def __init__(self, now_ms: int, last_ms: int):
        super().__init__(f"time went backwards: now_ms={now_ms} < last seen {last_ms}")
        self.now_ms = now_ms
        self.last_ms = last_ms


# -- the network the modem talks to ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinAccept:
    """A join-accept: the DevAddr the network assigned and how the device heard the accept."""

    dev_addr: bytes
    rssi: int = -60
    snr: float = 9.0


@dataclass(frozen=True)
class Outcome:
    """What became of one uplink transmission, as the device will see it.

    heard: some gateway got it. acked: the network acknowledges a confirmed uplink in RX1. downlink: (fPort,
    payload) sent in RX1. downlink_confirmed: that downlink asks for an ACK. rssi/snr: how the device heard RX1.
    """

    heard: bool
    acked: bool = False
    downlink: tuple[int, bytes] | None = None
    downlink_confirmed: bool = False
    rssi: int = 0
    snr: float = 0.0


class Network(Protocol):
    """What the modem needs of a LoRaWAN network (the emulated LNS in lns.py implements it).

    Both calls happen when the transmission has finished on air (`now_ms`), from whichever thread drives the
    modem. `port` is None for a frame without FPort (RUI3's automatic empty uplink after a confirmed downlink);
    `ack` is set on the first uplink after a confirmed downlink.
    """

    def join(self, dev_eui: bytes, join_eui: bytes, app_key: bytes, now_ms: int, *,
             dr: int = 0) -> JoinAccept | bool | None: ...

    def uplink(self, dev_eui: bytes, fcnt: int, port: int | None, payload: bytes, confirmed: bool, dr: int,
               now_ms: int, *, ack: bool = False, adr: bool = False) -> Outcome: ...


# -- faults and settings --------------------------------------------------------------------------------------------


@dataclass
class Faults:
    """Misbehaviour to inject; change the fields at any time (chaos runs do).

    silent: the modem hangs: ignores input and prints nothing until cleared (events scheduled meanwhile are lost).
    garbage_probability: chance that a burst of 1-16 noise bytes (never CR/LF) precedes a printed chunk.
    busy: AT+JOIN, AT+SEND and AT+PSEND answer AT_BUSY_ERROR.
    join_failures / join_failure_probability: the next N join attempts (or each with this chance) get no
        join-accept and end in +EVT:JOIN_FAILED_RX_TIMEOUT, whatever the network said.
    ack_failures / ack_failure_probability: the next N confirmed transmissions (or each with this chance) get no
        ACK; retries (AT+RETY) still happen.
    slow_ms: extra delay before every answer.
    """

    silent: bool = False
    garbage_probability: float = 0.0
    busy: bool = False
    join_failures: int = 0
    join_failure_probability: float = 0.0
    ack_failures: int = 0
    ack_failure_probability: float = 0.0
    slow_ms: int = 0


@dataclass
class Settings:
    """What RUI3 keeps in flash: survives ATZ and power cycles, ATR restores the defaults."""

    nwm: int = NWM_LORAWAN
    njm: int = 1
    device_class: str = "A"
    band: int = 4
    dev_eui: bytes = bytes(8)
    app_eui: bytes = bytes(8)
    app_key: bytes = bytes(16)
    dev_addr: bytes = bytes(4)
    apps_key: bytes = bytes(16)
    nwks_key: bytes = bytes(16)
    adr: int = 0
    dr: int = 0
    cfm: int = 0
    retry: int = 0
    txp: int = 0
    pnm: int = 1
    dcs: int = 0
    linkcheck: int = 0
    rx1dl_ms: int = 1000
    rx2dl_ms: int = 2000
    jn1dl_ms: int = 5000
    jn2dl_ms: int = 6000
    echo: bool = False
    lpm: int = 0
    lpm_level: int = 2
    baud: int = 115200
    join_auto: int = 0
    join_period_s: int = 8
    join_attempts: int = 0
    p2p: P2PConfig = field(default_factory=P2PConfig)


@dataclass
class _Send:
    fcnt: int
    port: int | None
    payload: bytes
    confirmed: bool
    attempts_left: int
    ack: bool


_Reply = tuple[int | None, list[str]]  # (index into STATUSES or None for no status line, value lines)


@dataclass
class _Command:
    handler: Callable[[RAK3172, str, list[str]], _Reply]
    perm: int
    usage: str
    mode: int | None = None  # NWM_LORAWAN or NWM_P2P (P2P also covers FSK), None for any


# -- the modem ------------------------------------------------------------------------------------------------------


class RAK3172:
    """One RAK3172 with RUI3 AT firmware. Thread-safe; see the module docstring for the time model.

    network: where LoRaWAN joins and uplinks go (lns.py: LoopbackNetwork, EmulatedLNS); None: nothing hears it.
    air: where P2P frames go; register the modem on it (air.register(modem, position)) to receive.
    firmware_version: "4.1.1" prints +EVT:TX_DONE; before 3.5.5 / 4.0.2 unconfirmed sends print nothing and a
        failed confirmed send is a bare +EVT:SEND_CONFIRMED_FAILED.
    booted: start ready (True) or power up now: the banner after boot_ms, input lost until then (False).
    sleep_wake_byte_lost: the byte that wakes the modem from AT+SLEEP is consumed by the wake-up.
    """

    def __init__(self, *, dev_eui: bytes | str | None = None, network: Network | None = None, air: Air | None = None,
                 name: str = "", firmware_version: str = "4.1.1", echo: bool = False, seed: int = 0,
                 faults: Faults | None = None, settings: Settings | None = None, response_ms: int = 10,
                 boot_ms: int = 100, now_ms: int = 0, booted: bool = False, sleep_wake_byte_lost: bool = True):
        self._rng = random.Random(seed)
        eui = _eui(dev_eui, 8) if dev_eui is not None else bytes.fromhex("AC1F09FFFE") + self._rng.randbytes(3)
        self.settings = settings if settings is not None else Settings(echo=echo)
        if dev_eui is not None or settings is None:
            self.settings.dev_eui = eui
        self._factory_eui = self.settings.dev_eui
        self.name = name or self.settings.dev_eui.hex().upper()
        self.network, self.air, self.firmware_version = network, air, firmware_version
        self.faults = faults if faults is not None else Faults()
        self.response_ms, self.boot_ms, self.sleep_wake_byte_lost = response_ms, boot_ms, sleep_wake_byte_lost
        self._lock = threading.RLock()
        self._inbox_lock = threading.Lock()
        self._inbox: list[tuple[int, bytes, int, int, P2PConfig]] = []
        self._wakeup: Callable[[], None] | None = None
        self._seq = itertools.count()
        self._events: list[tuple[int, int, str, int, Callable[[], None]]] = []
        self._gen: dict[str, int] = defaultdict(int)
        self._out: deque[tuple[int, bytes]] = deque()
        self._last_due = self._t = self._ready_at = self._sleep_from = now_ms
        self._buf, self._esc = bytearray(), 0
        self._sleep_until: int | None = None
        self._asleep = False
        self.boots = 0  # power-ups since construction (ATZ, AT+NWM, power_on)
        self._reset_session()
        if not booted:
            self._power_on(now_ms)

    # -- public interface ------------------------------------------------------------------------------------------

    def write(self, data: bytes, now_ms: int) -> None:
        """Consume bytes from the host at `now_ms` (commands end with CR and/or LF; partial writes are fine)."""
        with self._lock:
            self._advance(now_ms)
            for b in bytes(data):
                self._on_byte(b)

    def read(self, now_ms: int) -> bytes:
        """Everything the modem has printed by `now_ms` and not yet returned."""
        with self._lock:
            self._advance(now_ms)
            chunks = []
            while self._out and self._out[0][0] <= now_ms:
                chunks.append(self._out.popleft()[1])
            return b"".join(chunks)

    def next_event_ms(self) -> int | None:
        """When output next becomes due or the modem next needs the clock (a transmission ending), else None."""
        with self._lock:
            while self._events and self._gen[self._events[0][2]] != self._events[0][3]:
                heapq.heappop(self._events)
            times = [self._out[0][0]] if self._out else []
            if self._events:
                times.append(self._events[0][0])
            with self._inbox_lock:
                times.extend(item[0] for item in self._inbox)
            return min(times) if times else None

    def set_wakeup(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` (from any thread) when something from outside (a P2P frame) changes next_event_ms()."""
        self._wakeup = callback

    def power_on(self, now_ms: int) -> None:
        """Cut power and power up again at `now_ms`: session and pending work lost, flash settings kept."""
        with self._lock:
            self._advance(now_ms)
            self._power_on(now_ms)

    def inject_garbage(self, count: int, now_ms: int) -> None:
        """Print `count` random bytes at `now_ms`, as line noise would."""
        with self._lock:
            self._advance(now_ms)
            self._emit(self._rng.randbytes(count), self._t, noise=False)

    def receive_air(self, frame: bytes, rssi: int, snr: int, config: P2PConfig, end_ms: int) -> None:
        """A raw LoRa frame finished arriving at `end_ms` (called by Air from the sender's thread)."""
        with self._inbox_lock:
            self._inbox.append((end_ms, bytes(frame), rssi, snr, config))
        wake = self._wakeup
        if wake is not None:
            wake()

    @property
    def joined(self) -> bool:
        """AT+NJS: an OTAA session exists, or the modem is in ABP mode."""
        return self._joined or self.settings.njm == 0

    @property
    def fcnt_up(self) -> int:
        """The frame counter the next new uplink will carry."""
        return self._fcnt

    @property
    def region(self) -> Region:
        return REGIONS[BAND_REGIONS[self.settings.band]]

    @property
    def tx_done_event(self) -> bool:
        """Whether this firmware prints +EVT:TX_DONE (added in RUI3 3.5.5 and 4.0.2)."""
        v = _version(self.firmware_version)
        return v >= (4, 0, 2) if v[0] == 4 else v >= (3, 5, 5)

    # -- time and output -------------------------------------------------------------------------------------------

    def _advance(self, now_ms: int) -> None:
        if now_ms < self._t:
            raise ClockError(now_ms, self._t)
        with self._inbox_lock:
            arrivals, self._inbox = self._inbox, []
        for end_ms, frame, rssi, snr, config in arrivals:
            self._schedule(end_ms, "air", lambda f=frame, r=rssi, s=snr, c=config: self._p2p_arrival(f, r, s, c))
        while self._events and self._events[0][0] <= now_ms:
            when, _, tag, gen, fn = heapq.heappop(self._events)
            if self._gen[tag] != gen:
                continue
            self._t = max(self._t, when)
            fn()
        self._t = now_ms

    def _schedule(self, when: int, tag: str, fn: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, next(self._seq), tag, self._gen[tag], fn))

    def _cancel(self, *tags: str) -> None:
        for tag in tags:
            self._gen[tag] += 1

    def _emit(self, data: bytes | str, at: int, *, noise: bool = True) -> None:
        if self.faults.silent:
            return
        if isinstance(data, str):
            data = data.encode("latin-1")
        if noise and self.faults.garbage_probability and self._rng.random() < self.faults.garbage_probability:
            data = bytes(b for b in self._rng.randbytes(self._rng.randint(1, 16)) if b not in (10, 13)) + data
        due = max(at, self._last_due)
        self._last_due = due
        self._out.append((due, data))

    def _event(self, text: str) -> None:
        self._emit(text + "\r\n", self._t)

    def _answer_at(self) -> int:
        return self._t + self.response_ms + self.faults.slow_ms

    # -- power -------------------------------------------------------------------------------------------------------

    def _reset_session(self) -> None:
        self._joined = False
        self._session_addr = bytes(4)
        self._fcnt = 0
        self._send: _Send | None = None
        self._joining = False
        self._join_left = 0
        self._ack_next = False
        self._last_rx: tuple[int, bytes] = (0, b"")
        self._rssi = 0
        self._snr = 0
        self._cfs = 0
        self._precv = PRECV_STOP
        self._p2p_tx_until = 0

    def _power_on(self, at: int) -> None:
        self._cancel("mac", "p2p_tx", "p2p_rx", "sleep", "boot", "reset")  # "air" arrivals meet the new state
        self._out = deque(item for item in self._out if item[0] <= at)
        self._last_due = max([at] + [item[0] for item in self._out])
        self._reset_session()
        self._buf.clear()
        self._esc = 0
        self._sleep_until, self._asleep = None, False
        self._ready_at = at + self.boot_ms
        self.boots += 1
        self._schedule(self._ready_at, "boot", self._boot_done)

    def _boot_done(self) -> None:
        mode = {NWM_LORAWAN: "LoRaWAN", NWM_P2P: "LoRa P2P", NWM_FSK: "LoRa FSK"}[self.settings.nwm]
        self._event(f"RAKwireless RAK3172-E Example\r\n{_BANNER_RULE}\r\nCurrent Work Mode: {mode}.")
        s = self.settings
        if s.join_auto and s.nwm == NWM_LORAWAN and s.njm == 1:
            self._start_join(self._t + self.response_ms, s.join_attempts)

    # -- the command line (service_mode_cli.c) ---------------------------------------------------------------------

    def _on_byte(self, b: int) -> None:
        if self._t < self._ready_at or self.faults.silent:
            return  # booting, or hung
        if self._asleep and self._t >= self._sleep_from:  # bytes already in flight (the LF of CRLF) do not wake
            self._wake(self._t)
            if self.sleep_wake_byte_lost:
                return
        echo = self.settings.echo
        if b == 0x1B:
            self._esc = 1
        elif b in (0x08, 0x7F):
            self._esc = 0
            if self._buf:
                self._buf.pop()
                self._emit(b"\x08 \x08", self._t, noise=False)
        elif b in (0x0A, 0x0D):
            self._esc = 0
            if self._buf:
                if echo:
                    self._emit(b"\n\r", self._t, noise=False)
                line = self._buf.decode("latin-1")
                self._buf.clear()
                self._execute(line)
        elif self._esc == 1 and b == 0x5B:
            self._esc = 2
        elif self._esc == 2 and b in (0x41, 0x42):
            self._esc = 0  # history keys: the emulator keeps no history
        else:
            self._esc = 0
            if len(self._buf) < _CLI_BUFFER - 1:
                self._buf.append(b)
                if echo:
                    self._emit(bytes([b]), self._t, noise=False)

    def _execute(self, line: str) -> None:
        """At_Parser (atcmd.c): find the command, check permissions, run it, print the status."""
        at = self._answer_at()
        cut = len(line)
        for i, c in enumerate(line):
            if c in "= ":
                cut = i
                break
        if cut >= _MAX_CMD_LEN:
            self._finish(at, AT_ERROR, [])
            return
        name, op, rest = line[:cut], line[cut:cut + 1], line[cut + 1:]
        help_ = name.endswith("?")
        key = (name[:-1] if help_ else name).upper()
        cmd = _COMMANDS.get(key)
        if cmd is None:
            self._finish(at, AT_COMMAND_NOT_FOUND, [])
            return
        if op == "=" and not rest:
            self._finish(at, AT_PARAM_ERROR, [])
            return
        args = _split_args(rest) if op else []
        if help_:
            self._finish(at, OK, _help(key, cmd))
            return
        if args[:1] == ["?"] and not cmd.perm & _R:
            self._finish(at, AT_PARAM_ERROR, [])
            return
        if args and args[0] != "?" and not cmd.perm & _W:
            self._finish(at, AT_PARAM_ERROR, [])
            return
        if cmd.mode is not None and (cmd.mode == NWM_LORAWAN) != (self.settings.nwm == NWM_LORAWAN):
            self._finish(at, AT_MODE_NO_SUPPORT, [])
            return
        status, lines = cmd.handler(self, key, args)
        self._finish(at, status, lines)

    def _finish(self, at: int, status: int | None, lines: list[str]) -> None:
        text = "".join(line + "\r\n" for line in lines)
        if status is not None:
            text += STATUSES[status] + "\r\n"
        if text:
            self._emit(text, at)

    # -- general commands (atcmd_general.c, atcmd_sleep.c) ---------------------------------------------------------

    def _at_attention(self, key: str, args: list[str]) -> _Reply:
        return (OK if not args else AT_PARAM_ERROR), []

    def _at_echo(self, key: str, args: list[str]) -> _Reply:
        if args:
            return AT_PARAM_ERROR, []
        self.settings.echo = not self.settings.echo
        return OK, []

    def _at_reset(self, key: str, args: list[str]) -> _Reply:
        if args:
            return AT_PARAM_ERROR, []
        at = self._answer_at()
        self._schedule(at, "reset", lambda: self._power_on(at))
        return None, []  # "No return value and return code. The module resets." (AT command manual, ATZ)

    def _at_restore(self, key: str, args: list[str]) -> _Reply:
        if args:
            return AT_PARAM_ERROR, []
        self.settings = Settings(dev_eui=self._factory_eui)
        return OK, []

    def _at_sleep(self, key: str, args: list[str]) -> _Reply:
        # atcmd_sleep.c: udrv_sleep_ms() returns on the timeout or a wake-up, then "OK" is printed.
        if len(args) > 1 or (args and not _digits(args[0])):
            return AT_PARAM_ERROR, []
        duration = int(args[0] or 0) if args else 0
        if args and (duration == 0 or duration > 0xFFFFFFFF):
            return AT_PARAM_ERROR, []
        self._asleep, self._sleep_from = True, self._answer_at()
        self._sleep_until = self._sleep_from + duration if duration else None
        self._cancel("sleep")
        if self._sleep_until is not None:
            self._schedule(self._sleep_until, "sleep", lambda: self._wake(self._t))
        return None, []

    def _wake(self, at: int) -> None:
        if not self._asleep:
            return
        self._asleep, self._sleep_until = False, None
        self._cancel("sleep")
        self._emit(STATUSES[OK] + "\r\n", at + self.response_ms)

    # -- settings (atcmd_key_id.c, atcmd_nwk_management.c, atcmd_p2p.c) ---------------------------------------

    def _hex_setting(self, args: list[str], key: str, attr: str, size: int) -> _Reply:
        if args == ["?"]:
            value = self._session_addr if attr == "dev_addr" and self._joined else getattr(self.settings, attr)
            return OK, [f"{key}={value.hex().upper()}"]
        if len(args) != 1 or len(args[0]) != 2 * size or not _is_hex(args[0]):
            return AT_PARAM_ERROR, []
        setattr(self.settings, attr, bytes.fromhex(args[0]))
        return OK, []

    def _int_setting(self, args: list[str], key: str, attr: str, allowed: Sequence[int], scale: int = 1,
                     error: int = AT_PARAM_ERROR) -> _Reply:
        """A numeric setting: "=?" prints it, "=<n>" sets it (digits only; AT_PARAM_ERROR otherwise)."""
        target = self.settings.p2p if attr in _P2P_FIELDS else self.settings
        if args == ["?"]:
            return OK, [f"{key}={getattr(target, attr) // scale}"]
        if len(args) != 1 or not _digits(args[0]):
            return AT_PARAM_ERROR, []
        value = _p2p_value(attr, int(args[0] or 0))
        if value not in allowed:
            return error, []
        if target is self.settings:
            setattr(self.settings, attr, value * scale)
        else:
            self.settings.p2p = replace(self.settings.p2p, **{attr: value})
        return OK, []

    def _at_class(self, key: str, args: list[str]) -> _Reply:
        if args == ["?"]:
            return OK, [f"{key}={self.settings.device_class}"]
        if len(args) != 1 or args[0].upper() not in ("A", "B", "C"):
            return AT_PARAM_ERROR, []
        self.settings.device_class = args[0].upper()
        return OK, []

    def _at_band(self, key: str, args: list[str]) -> _Reply:
        if args == ["?"]:
            return OK, [f"{key}={self.settings.band}"]
        if len(args) != 1 or not _digits(args[0]) or int(args[0] or 0) > 12:
            return AT_PARAM_ERROR, []
        band = int(args[0] or 0)
        if band in (0, 1):
            return AT_UNSUPPORTED_BAND, []  # the RAK3172 high-frequency variant has no EU433/CN470
        if self._send is not None or self._joining:
            return AT_BUSY_ERROR, []
        if band != self.settings.band:
            self.settings.band = band
            self.settings.dr = min(self.settings.dr, len(self.region.data_rates) - 1)
            self._joined = False  # the MAC restarts for the new region
        return OK, []

    def _at_nwm(self, key: str, args: list[str]) -> _Reply:
        if args == ["?"]:
            return OK, [f"{key}={self.settings.nwm}"]
        if len(args) != 1 or len(args[0]) != 1 or args[0] not in "012":
            return AT_PARAM_ERROR, []
        mode = int(args[0])
        if mode == self.settings.nwm:
            return OK, []
        self.settings.nwm = mode
        at = self._answer_at()
        self._schedule(at, "reset", lambda: self._power_on(at))
        return None, []  # the device restarts to switch mode (AT command manual, AT+NWM)

    # -- LoRaWAN join and send (atcmd_join_send.c) -----------------------------------------------------------------

    def _at_join(self, key: str, args: list[str]) -> _Reply:
        s = self.settings
        if args == ["?"]:
            return OK, [f"{key}={int(self._joining)}:{s.join_auto}:{s.join_period_s}:{s.join_attempts}"]
        if len(args) > 4 or not all(_digits(a) for a in args):
            return AT_PARAM_ERROR, []
        vals = [int(a or 0) for a in args] or [1]
        if vals[0] not in (0, 1) or (len(vals) > 1 and vals[1] not in (0, 1)):
            return AT_PARAM_ERROR, []
        if (len(vals) > 2 and not 7 <= vals[2] <= 255) or (len(vals) > 3 and vals[3] > 255):
            return AT_PARAM_ERROR, []
        if vals[0] == 0:
            if self._joining:
                self._joining = False
                self._cancel("mac")
            return OK, []
        if self.faults.busy or self._joining or self._send is not None:
            return AT_BUSY_ERROR, []
        if len(vals) > 1:
            s.join_auto = vals[1]
        if len(vals) > 2:
            s.join_period_s = vals[2]
        if len(vals) > 3:
            s.join_attempts = vals[3]
        if s.njm == 0:  # ABP: LmHandlerJoin activates at once and confirms the join
            self._schedule(self._answer_at() + 1, "mac", lambda: self._event("+EVT:JOINED"))
            return OK, []
        self._start_join(self._answer_at(), s.join_attempts)
        return OK, []

    def _start_join(self, start: int, retries: int) -> None:
        self._joined = False  # a join request drops the current session (LoRaMac MLME_JOIN)
        self._joining = True
        self._join_left = retries
        self._join_attempt(start)

    def _join_attempt(self, start: int) -> None:
        mod = self.region.modulation(self.settings.dr) or (7, 125_000)
        end = start + math.ceil(lora_time_on_air_ms(JOIN_REQUEST_LEN, mod[0], mod[1]))
        self._schedule(end, "mac", self._join_sent)

    def _join_sent(self) -> None:
        s = self.settings
        result: JoinAccept | bool | None = None
        try:
            if self.network is not None:
                result = self.network.join(s.dev_eui, s.app_eui, s.app_key, self._t, dr=s.dr)
        except Exception:
            log.exception("%s: network.join failed", self.name)
        if self.faults.join_failures > 0:
            self.faults.join_failures -= 1
            result = None
        elif self.faults.join_failure_probability and self._rng.random() < self.faults.join_failure_probability:
            result = None
        mod = self.region.modulation(s.dr) or (7, 125_000)
        if result:
            accept = result if isinstance(result, JoinAccept) else JoinAccept(self._rng.randbytes(4))
            at = self._t + s.jn1dl_ms + math.ceil(lora_time_on_air_ms(JOIN_ACCEPT_LEN, mod[0], mod[1], crc=False))
            self._schedule(at, "mac", lambda: self._join_accepted(accept))
        else:
            self._schedule(self._t + s.jn2dl_ms + self._rx2_window_ms(), "mac", self._join_failed)

    def _join_accepted(self, accept: JoinAccept) -> None:
        self._joining = False
        self._joined = True
        self._session_addr = bytes(accept.dev_addr)
        self._fcnt = 0
        self._ack_next = False
        self._rssi, self._snr = int(accept.rssi), int(accept.snr)
        self._event("+EVT:JOINED")

    def _join_failed(self) -> None:
        self._event("+EVT:JOIN_FAILED_RX_TIMEOUT")
        if self._join_left > 0:
            self._join_left -= 1
            self._join_attempt(self._t + self.settings.join_period_s * 1000)
        else:
            self._joining = False

    def _at_send(self, key: str, args: list[str]) -> _Reply:
        if len(args) != 2 or not _digits(args[0]):
            return AT_PARAM_ERROR, []
        port, data = int(args[0] or 0), args[1]
        if not 1 <= port <= 223 or len(data) % 2 or not 0 < len(data) <= 500 or not _is_hex(data):
            return AT_PARAM_ERROR, []
        payload = bytes.fromhex(data)
        if not self.joined:
            return AT_NO_NETWORK_JOINED, []
        if self.faults.busy or self._send is not None or self._joining:
            return AT_BUSY_ERROR, []
        if len(payload) > self.region.max_payload[self.settings.dr]:
            return AT_PARAM_ERROR, []  # LoRaMac LENGTH_ERROR for the current data rate
        self._start_send(port, payload, bool(self.settings.cfm), self._answer_at())
        return OK, []

    def _start_send(self, port: int | None, payload: bytes, confirmed: bool, start: int) -> None:
        self._send = _Send(self._fcnt, port, payload, confirmed, self.settings.retry if confirmed else 0,
                           self._ack_next)
        self._ack_next = False
        self._transmit(start)

    def _transmit(self, start: int) -> None:
        send = self._send
        assert send is not None
        end = start + math.ceil(self.region.time_on_air_ms(len(send.payload), self.settings.dr))
        self._schedule(end, "mac", self._uplink_sent)

    def _uplink_sent(self) -> None:
        send, s = self._send, self.settings
        assert send is not None
        outcome = Outcome(heard=False)
        try:
            if self.network is not None:
                outcome = self.network.uplink(s.dev_eui, send.fcnt, send.port, send.payload, send.confirmed, s.dr,
                                              self._t, ack=send.ack, adr=bool(s.adr))
        except Exception:
            log.exception("%s: network.uplink failed", self.name)
        acked = send.confirmed and outcome.heard and outcome.acked and not self._ack_fault()
        downlink = outcome.downlink if outcome.heard else None
        if acked or downlink is not None:
            length = len(downlink[1]) if downlink else 0
            at = self._t + s.rx1dl_ms + math.ceil(self.region.time_on_air_ms(length, s.dr, downlink=True))
            self._schedule(at, "mac", lambda: self._mac_done(acked, outcome))
        elif send.attempts_left > 0:
            send.attempts_left -= 1
            retry_at = self._t + s.rx2dl_ms + self._rx2_window_ms() + self._rng.randint(1000, 3000)
            self._schedule(retry_at, "mac", lambda: self._transmit(self._t))
        else:
            self._schedule(self._t + s.rx2dl_ms + self._rx2_window_ms(), "mac", lambda: self._mac_done(False, None))

    def _ack_fault(self) -> bool:
        if self.faults.ack_failures > 0:
            self.faults.ack_failures -= 1
            return True
        p = self.faults.ack_failure_probability
        return bool(p) and self._rng.random() < p

    def _mac_done(self, acked: bool, received: Outcome | None) -> None:
        """McpsConfirm, then McpsIndication (LoRaMacProcess order; service_lora.c prints both).

        `received` is what arrived in RX1 (an ACK and/or a downlink), None when RX1 and RX2 stayed empty."""
        send = self._send
        assert send is not None
        self._send = None
        self._fcnt += 1
        if received is not None:
            self._rssi, self._snr = int(received.rssi), int(received.snr)
        if send.confirmed:
            self._cfs = int(acked)
            if acked:
                self._event("+EVT:SEND_CONFIRMED_OK")
            elif self.tx_done_event:
                self._event(f"+EVT:SEND_CONFIRMED_FAILED({SEND_FAILED_RX2_TIMEOUT})")
            else:
                self._event("+EVT:SEND_CONFIRMED_FAILED")
        elif self.tx_done_event:
            self._event("+EVT:TX_DONE")
        if received is not None and received.downlink is not None:
            port, data = received.downlink
            self._last_rx = (port, bytes(data))
            if data:
                self._event(f"+EVT:RX_1:{self._rssi}:{self._snr}:UNICAST:{port}:{bytes(data).hex()}")
            if received.downlink_confirmed:
                # McpsIndication of a confirmed downlink: RUI3 answers with an empty uplink (service_lora_send_null).
                self._ack_next = True
                self._start_send(None, b"", False, self._t + 50)

    def _rx2_window_ms(self) -> int:
        sf, bw = self.region.rx2
        return math.ceil(8 * (1 << sf) / bw * 1000)  # about 8 symbols to detect a preamble

    # -- P2P (atcmd_p2p.c, service_lora_p2p.c) --------------------------------------------------------------------

    def _at_p2p(self, key: str, args: list[str]) -> _Reply:
        p = self.settings.p2p
        if args == ["?"]:
            return OK, [f"{key}={p.freq_hz}:{p.sf}:{p.bw_khz}:{p.cr}:{p.preamble}:{p.txp_dbm}"]
        if len(args) != 6 or not all(_digits(a) for a in args):
            return AT_PARAM_ERROR, []
        # At_P2p applies the fields in turn and stops at the first bad one (earlier ones stay set).
        checks = (("freq_hz", range(150_000_000, 960_000_001), AT_PARAM_ERROR), ("sf", range(5, 13), AT_PARAM_ERROR),
                  ("bw_khz", (125, 250, 500), AT_ERROR), ("cr", range(4), AT_ERROR),
                  ("preamble", range(5, 65536), AT_ERROR), ("txp_dbm", range(5, 23), AT_PARAM_ERROR))
        for (attr, allowed, error), text in zip(checks, args, strict=True):
            value = _p2p_value(attr, int(text or 0))
            if value not in allowed:
                return error, []
            self.settings.p2p = replace(self.settings.p2p, **{attr: value})
        return OK, []

    def _p2p_event(self, direction: str, rest: str) -> str:
        """"+EVT:TXP2P DONE", "+EVT:RXP2P:..." (LoRa) or the TXFSK/RXFSK forms in FSK mode (service_lora_p2p.c)."""
        return f"+EVT:{direction}{'P2P' if self.settings.nwm == NWM_P2P else 'FSK'}{rest}"

    def _at_psend(self, key: str, args: list[str]) -> _Reply:
        if len(args) != 1 or len(args[0]) % 2 or len(args[0]) > 512 or not _is_hex(args[0]):
            return AT_PARAM_ERROR, []
        transmitting = self._p2p_tx_until > self._t
        listening = self._precv != PRECV_STOP
        if self.faults.busy or ((transmitting or listening) and self._precv != PRECV_CONTINUOUS_TX):
            return AT_BUSY_ERROR, []
        frame = bytes.fromhex(args[0])
        config = self.settings.p2p
        end = self._answer_at() + math.ceil(config.time_on_air_ms(len(frame)))
        self._cancel("p2p_tx")  # a new Radio.Send() aborts one still going out (65533 mode)
        self._p2p_tx_until = end
        self._schedule(end, "p2p_tx", lambda: self._p2p_sent(frame, config))
        return OK, []

    def _p2p_sent(self, frame: bytes, config: P2PConfig) -> None:
        self._p2p_tx_until = 0
        if self.air is not None:
            self.air.transmit(self, frame, self._t, config)
        self._event(self._p2p_event("TX", " DONE"))

    def _at_precv(self, key: str, args: list[str]) -> _Reply:
        if args == ["?"]:
            return OK, ["P2P_RX_ON" if self._precv != PRECV_STOP else "P2P_RX_OFF"]
        if len(args) != 1 or not _digits(args[0]) or int(args[0] or 0) > 65535:
            return AT_PARAM_ERROR, []
        timeout = int(args[0] or 0)
        continuous = self._precv in (PRECV_CONTINUOUS_TX, PRECV_CONTINUOUS, PRECV_ONE)
        if timeout != 0 and continuous:
            return AT_BUSY_ERROR, ["P2P_RX_ON already"]
        self._cancel("p2p_rx")
        if timeout in (PRECV_STOP, PRECV_CONTINUOUS_TX, PRECV_CONTINUOUS, PRECV_ONE):
            self._precv = timeout
        else:
            self._precv = max(timeout, 15)  # "Time can't be too small"
            self._schedule(self._answer_at() + self._precv, "p2p_rx", self._p2p_rx_timeout)
        return OK, []

    def _p2p_rx_timeout(self) -> None:
        self._precv = PRECV_STOP
        self._event(self._p2p_event("RX", " RECEIVE TIMEOUT"))

    def _p2p_arrival(self, frame: bytes, rssi: int, snr: int, config: P2PConfig) -> None:
        if self.settings.nwm == NWM_LORAWAN or self._precv == PRECV_STOP or self._t < self._ready_at:
            return
        if self._p2p_tx_until > self._t or not config.same_channel(self.settings.p2p):
            return  # half duplex, or another channel
        self._rssi, self._snr = rssi, snr
        self._event(self._p2p_event("RX", f":{rssi}:{snr}:{frame.hex().upper()}"))
        if self._precv not in (PRECV_CONTINUOUS, PRECV_CONTINUOUS_TX):
            self._precv = PRECV_STOP  # OnRxDone: one packet ends a timed or 65535 reception
            self._cancel("p2p_rx")

    def start_p2p_receiver(self, config: P2PConfig | None = None, mode: int = PRECV_CONTINUOUS_TX) -> None:
        """Put the modem in P2P mode, set `config` and receive continuously, as a host would have configured it."""
        with self._lock:
            self.settings.nwm = NWM_P2P
            if config is not None:
                self.settings.p2p = config
            if mode not in (PRECV_CONTINUOUS_TX, PRECV_CONTINUOUS, PRECV_ONE):
                raise EmulatorError(f"not a continuous AT+PRECV mode: {mode}")
            self._precv = mode


def _help(key: str, cmd: _Command) -> list[str]:
    if key == "AT":
        lines = ["", "AT+<CMD>?: help on <CMD>", "AT+<CMD>: run <CMD>", "AT+<CMD>=<value>: set the value",
                 "AT+<CMD>=?: get the value", ""]
        return lines + [f"{k},{_perm(c.perm)}: {c.usage}" for k, c in _COMMANDS.items() if c.usage]
    return [f"{key},{_perm(cmd.perm)}: {cmd.usage}"]


def _perm(perm: int) -> str:
    return ("R" if perm & _R else "") + ("W" if perm & _W else "")


def _read_only(args: list[str], line: str) -> _Reply:
    return (OK, [line]) if args == ["?"] else (AT_PARAM_ERROR, [])


def _split_args(text: str) -> list[str]:
    """parseBuff2Param (atcmd.c): split on ':', dropping one trailing empty field."""
    if not text:
        return []
    parts = text.split(":")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    return parts


def _digits(text: str) -> bool:
    return all("0" <= c <= "9" for c in text)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _p2p_value(attr: str, value: int) -> int:
    if attr == "bw_khz" and value in (0, 1, 2):
        return (125, 250, 500)[value]  # RUI3 4.x bandwidth index
    return value


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        parts.append(int(digits or 0))
    return tuple(parts + [0] * (3 - len(parts)))


def _eui(value: bytes | str | None, size: int) -> bytes:
    raw = bytes.fromhex(value) if isinstance(value, str) else bytes(value or b"")
    if len(raw) != size:
        raise EmulatorError(f"expected {size} bytes, got {raw.hex()!r}")
    return raw


_P2P_FIELDS = frozenset(("freq_hz", "sf", "bw_khz", "cr", "preamble", "txp_dbm"))


def _number(attr: str, allowed: Sequence[int] | Callable[[RAK3172], Sequence[int]], scale: int = 1,
            error: int = AT_PARAM_ERROR) -> Callable[[RAK3172, str, list[str]], _Reply]:
    """A handler for a numeric setting; `allowed` may depend on the modem (AT+DR on the region)."""
    def handler(m: RAK3172, key: str, args: list[str]) -> _Reply:
        return m._int_setting(args, key, attr, allowed(m) if callable(allowed) else allowed, scale, error)
    return handler


def _key(attr: str, size: int) -> Callable[[RAK3172, str, list[str]], _Reply]:
    """A handler for an EUI, address or key of `size` bytes."""
    return lambda m, key, args: m._hex_setting(args, key, attr, size)


def _value(fn: Callable[[RAK3172], object]) -> Callable[[RAK3172, str, list[str]], _Reply]:
    """A handler for a read-only value: "AT+XXX=?" prints "AT+XXX=<value>"."""
    return lambda m, key, args: _read_only(args, f"{key}={fn(m)}")


_LW, _P2P, _RW = NWM_LORAWAN, NWM_P2P, _R | _W
_COMMANDS: dict[str, _Command] = {
    "AT": _Command(RAK3172._at_attention, _R, ""),
    "ATZ": _Command(RAK3172._at_reset, _R, "triggers a reset of the MCU"),
    "ATR": _Command(RAK3172._at_restore, _R, "restore default parameters"),
    "ATE": _Command(RAK3172._at_echo, _R, "show or hide the AT command input"),
    "AT+BAT": _Command(_value(lambda m: "3.300000"), _R, "get the battery level (volt)"),
    "AT+VER": _Command(_value(lambda m: f"RUI_{m.firmware_version}_RAK3172-E"), _R,
                       "get the version of the firmware"),
    "AT+HWMODEL": _Command(_value(lambda m: "rak3172"), _R, "get the string of the hardware model"),
    "AT+SLEEP": _Command(RAK3172._at_sleep, _W, "enter sleep mode for a period of time (ms)"),
    "AT+LPM": _Command(_number("lpm", range(2)), _RW, "get or set the low power mode (0 = off, 1 = on)"),
    "AT+LPMLVL": _Command(_number("lpm_level", range(1, 3)), _RW, "get or set the low power mode level"),
    "AT+BAUD": _Command(_number("baud", (4800, 9600, 19200, 38400, 57600, 115200)), _RW,
                        "get or set the serial port baudrate"),
    "AT+APPEUI": _Command(_key("app_eui", 8), _RW, "get or set the application EUI (8 bytes in hex)", _LW),
    "AT+APPKEY": _Command(_key("app_key", 16), _RW, "get or set the application key (16 bytes in hex)", _LW),
    "AT+APPSKEY": _Command(_key("apps_key", 16), _RW, "get or set the application session key (16 bytes in hex)",
                           _LW),
    "AT+DEVADDR": _Command(_key("dev_addr", 4), _RW, "get or set the device address (4 bytes in hex)", _LW),
    "AT+DEVEUI": _Command(_key("dev_eui", 8), _RW, "get or set the device EUI (8 bytes in hex)", _LW),
    "AT+NETID": _Command(_value(lambda m: "000000"), _R, "get the network identifier (NetID) (3 bytes in hex)",
                         _LW),
    "AT+NWKSKEY": _Command(_key("nwks_key", 16), _RW, "get or set the network session key (16 bytes in hex)", _LW),
    "AT+CFM": _Command(_number("cfm", range(2)), _RW, "get or set the confirm mode (0 = off, 1 = on)", _LW),
    "AT+CFS": _Command(_value(lambda m: m._cfs), _R,
                       "get the confirmation status of the last AT+SEND (0 = failure, 1 = success)", _LW),
    "AT+JOIN": _Command(RAK3172._at_join, _RW, "join network", _LW),
    "AT+NJM": _Command(_number("njm", range(2)), _RW, "get or set the network join mode (0 = ABP, 1 = OTAA)", _LW),
    "AT+NJS": _Command(_value(lambda m: int(m.joined)), _R, "get the join status (0 = not joined, 1 = joined)",
                       _LW),
    "AT+RECV": _Command(_value(lambda m: f"{m._last_rx[0]}:{m._last_rx[1].hex().upper()}"), _R,
                        "print the last received data in hex format", _LW),
    "AT+SEND": _Command(RAK3172._at_send, _W, "send data along with the application port", _LW),
    "AT+RETY": _Command(_number("retry", range(8)), _RW,
                        "get or set the number of retransmission of confirm packet data", _LW),
    "AT+ADR": _Command(_number("adr", range(2)), _RW, "get or set the adaptive data rate setting (0 = off, 1 = on)",
                       _LW),
    "AT+CLASS": _Command(RAK3172._at_class, _RW, "get or set the device class (A = class A, B = class B, "
                         "C = class C)", _LW),
    "AT+DCS": _Command(_number("dcs", range(2)), _RW, "get the ETSI duty cycle setting (0 = disabled, "
                       "1 = enabled)", _LW),
    "AT+DR": _Command(_number("dr", lambda m: range(len(m.region.data_rates))), _RW, "get or set the data rate",
                      _LW),
    "AT+JN1DL": _Command(_number("jn1dl_ms", lambda m: range(1, min(15, m.settings.jn2dl_ms // 1000)), 1000),
                         _RW, "get or set the join accept delay between the end of TX and the join RX window 1 "
                         "in seconds", _LW),
    "AT+JN2DL": _Command(_number("jn2dl_ms", lambda m: range(max(2, m.settings.jn1dl_ms // 1000 + 1), 16), 1000),
                         _RW, "get or set the join accept delay between the end of TX and the join RX window 2 "
                         "in seconds", _LW),
    "AT+PNM": _Command(_number("pnm", range(2)), _RW, "get or set the public network mode (0 = off, 1 = on)", _LW),
    "AT+RX1DL": _Command(_number("rx1dl_ms", range(1, 16), 1000), _RW, "get or set the delay between the end of "
                         "TX and the RX window 1 in seconds (1-15)", _LW),
    "AT+RX2DL": _Command(_number("rx2dl_ms", range(2, 17), 1000), _RW, "get or set the delay between the end of "
                         "TX and the RX window 2 in seconds (2-16)", _LW),
    "AT+TXP": _Command(_number("txp", range(8)), _RW, "get or set the transmitting power", _LW),
    "AT+LINKCHECK": _Command(_number("linkcheck", range(3)), _RW, "get or set the link check setting "
                             "(0 = disabled, 1 = once, 2 = everytime)", _LW),
    "AT+RSSI": _Command(_value(lambda m: m._rssi), _R, "get the RSSI of the last received packet", _LW),
    "AT+SNR": _Command(_value(lambda m: m._snr), _R, "get the SNR of the last received packet", _LW),
    "AT+BAND": _Command(RAK3172._at_band, _RW, "get or set the active region (0 = EU433, 1 = CN470, "
                        "2 = RU864, 3 = IN865, 4 = EU868, 5 = US915, 6 = AU915, 7 = KR920, 8 = AS923-1 , "
                        "9 = AS923-2 , 10 = AS923-3 , 11 = AS923-4 , 12 = LA915)"),
    "AT+NWM": _Command(RAK3172._at_nwm, _RW,
                       "get or set the network working mode (0 = P2P_LORA, 1 = LoRaWAN, 2 = P2P_FSK)"),
    "AT+PFREQ": _Command(_number("freq_hz", range(150_000_000, 960_000_001)), _RW, "configure P2P Frequency", _P2P),
    "AT+PSF": _Command(_number("sf", range(6, 13)), _RW, "configure P2P Spreading Factor (5-12)", _P2P),
    "AT+PBW": _Command(_number("bw_khz", (125, 250, 500), error=AT_ERROR), _RW,
                       "configure P2P Bandwidth(LORA: 0 = 125, 1 = 250, 2 = 500)", _P2P),
    "AT+PCR": _Command(_number("cr", range(4), error=AT_ERROR), _RW,
                       "configure P2P Code Rate(0=4/5, 1=4/6, 2=4/7, 3=4/8)", _P2P),
    "AT+PPL": _Command(_number("preamble", range(5, 65536)), _RW, "configure P2P Preamble Length (5-65535)", _P2P),
    "AT+PTP": _Command(_number("txp_dbm", range(5, 23)), _RW, "configure P2P TX Power(5-22)", _P2P),
    "AT+PSEND": _Command(RAK3172._at_psend, _W, "send data in P2P mode", _P2P),
    "AT+PRECV": _Command(RAK3172._at_precv, _RW, "enter P2P RX mode for a period of time (ms)", _P2P),
    "AT+P2P": _Command(RAK3172._at_p2p, _RW, "get or set all P2P parameters", _P2P),
}
