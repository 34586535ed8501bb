"""LoRa P2P uplinks from a RAK3172 (RUI3 firmware) in P2P receive mode on a serial port.

The modem prints each frame it hears as `+EVT:RXP2P:<rssi>:<snr>:<hex>` (device_modems.md §1.4-1.5). A frame
is a citynode P2P frame (codecs/citynode_codec/p2p.py): marker 0xC1, DevEUI, u32 counter, fPort, payload and
a 4-byte AES-CMAC MIC with the device's own key from the registry (p2p_key). Raw LoRa has no network server,
so this source does its job: it refuses
    unknown_device   a DevEUI the registry does not list, or lists without a p2p_key
    bad_mic          a forged or corrupted frame
    replayed_fcnt    a counter not above the last one accepted from that device, also after a restart:
                     counters live in a small SQLite file (state_path), written before the uplink is emitted
    not_citynode     anything else on the channel (other people's LoRa traffic, a broken frame)
    not_uplink       a downlink frame (marker 0xC2) heard on the air
    malformed_line   a +EVT:RXP2P line that cannot be read

Modem set-up on every (re)open: AT, AT+NWM=0 if it is in LoRaWAN mode (the modem restarts), AT+P2P=<freq>:
<sf>:<bw>:<cr>:<preamble>:<txp> if it differs, AT+PRECV=65534 (listen continuously). Unplugging the USB adapter
makes the port disappear: the source logs it, reopens with a capped exponential backoff, configures the modem
again (a power-cycled RAK3172 boots with reception off) and keeps counting.

Downlinks: a P2P node listens only briefly right after it sends, so send_downlink() queues the frame for the
device and the source transmits it as soon as the next uplink from that device has been accepted:
AT+PRECV=0, AT+PSEND=<hex> (marker 0xC2, the device's downlink counter, persisted first), +EVT:TXP2P DONE,
AT+PRECV=65534 again (RUI3 refuses to send while listening in 65534 mode).

The reader runs in its own thread; parse_line() is pure and never raises.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from citynode_codec import p2p

from ..records import Downlink, Emit, Rejected, RxInfo, SourceStats, Uplink
from . import DownlinkError

log = logging.getLogger(__name__)

SOURCE = "serial"
PRECV_STOP, PRECV_CONTINUOUS_TX, PRECV_CONTINUOUS = 0, 65533, 65534
MAX_LINE = 1024
_STATUS = re.compile(r"^(OK|AT_[A-Z_]+)\Z")
_HEX = re.compile(r"^[0-9A-Fa-f]*\Z")


# -- parse_line --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RxFrame:
    """+EVT:RXP2P:<rssi>:<snr>:<hex>"""

    rssi_dbm: int
    snr_db: float
    frame: bytes


@dataclass(frozen=True)
class Reply:
    """The status that ends an AT command: OK or AT_<ERROR>."""

    status: str

    @property
    def ok(self) -> bool:
        return self.status == "OK"


@dataclass(frozen=True)
class Event:
    """Any other +EVT line, e.g. "TXP2P DONE" or "RXP2P RECEIVE TIMEOUT"."""

    name: str


@dataclass(frozen=True)
class Garbled:
    """A +EVT:RXP2P line that could not be read."""

    text: str
    reason: str


@dataclass(frozen=True)
class Text:
    """Anything else: query answers (AT+NWM=0, P2P_RX_ON), echoes, boot banners."""

    text: str


ModemLine = RxFrame | Reply | Event | Garbled | Text


def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[+-]?\d{1,4}", text) else None


def _snr(text: str) -> float | None:
    if re.fullmatch(r"[+-]?\d{1,3}(\.\d{1,3})?", text):
        value = float(text)
        return int(value) if value.is_integer() else value
    return None


def parse_line(line: bytes) -> ModemLine | None:
    """One line from the modem; None for an empty line."""
    if not isinstance(line, (bytes, bytearray)):
        return None
    text = bytes(line[:MAX_LINE * 2]).decode("ascii", "replace").strip().strip("\x00")
    if not text:
        return None
    if _STATUS.match(text):
        return Reply(text)
    if text.startswith("+EVT:RXP2P:"):
        parts = text.split(":")
        if len(parts) != 5:
            return Garbled(text[:200], "expected +EVT:RXP2P:<rssi>:<snr>:<hex>")
        rssi, snr, hexdata = _int(parts[2]), _snr(parts[3]), parts[4].strip()
        if rssi is None or snr is None:
            return Garbled(text[:200], "RSSI or SNR is not a number")
        if not hexdata or len(hexdata) % 2 or not _HEX.match(hexdata) or len(hexdata) > 2 * 255:
            return Garbled(text[:200], "frame is not hex of 1..255 bytes")
        return RxFrame(rssi, snr, bytes.fromhex(hexdata))
    if text.startswith("+EVT:"):
        return Event(text[5:])
    return Text(text)


# -- counters ------------------------------------------------------------------------------------------------------


class CounterStore:
    """Last accepted uplink counter and last used downlink counter per device, in SQLite (synchronous=FULL:
    a counter is on disk before the uplink it accepted goes anywhere)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS counters (dev_eui TEXT NOT NULL, direction TEXT NOT NULL, "
                             "fcnt INTEGER NOT NULL, updated REAL NOT NULL, PRIMARY KEY (dev_eui, direction))")

    def get(self, dev_eui: str, direction: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT fcnt FROM counters WHERE dev_eui=? AND direction=?",
                                   (dev_eui, direction)).fetchone()
        return row[0] if row else None

    def set(self, dev_eui: str, direction: str, fcnt: int) -> None:
        with self._lock:
            self._db.execute("INSERT INTO counters (dev_eui, direction, fcnt, updated) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (dev_eui, direction) DO UPDATE SET fcnt=excluded.fcnt, "
                             "updated=excluded.updated", (dev_eui, direction, fcnt, time.time()))

    def accept_uplink(self, dev_eui: str, fcnt: int) -> int | None:
        """Store `fcnt` if it is above the last accepted counter; return the last counter when it is not."""
        with self._lock:
            row = self._db.execute("SELECT fcnt FROM counters WHERE dev_eui=? AND direction='up'",
                                   (dev_eui,)).fetchone()
            if row is not None and fcnt <= row[0]:
                return row[0]
            self._db.execute("INSERT INTO counters (dev_eui, direction, fcnt, updated) VALUES (?, 'up', ?, ?) "
                             "ON CONFLICT (dev_eui, direction) DO UPDATE SET fcnt=excluded.fcnt, "
                             "updated=excluded.updated", (dev_eui, fcnt, time.time()))
        return None

    def next_downlink(self, dev_eui: str, floor: int = 0) -> int:
        """The next downlink counter (above the last one and at least `floor`), stored before it is used."""
        with self._lock:
            row = self._db.execute("SELECT fcnt FROM counters WHERE dev_eui=? AND direction='down'",
                                   (dev_eui,)).fetchone()
            fcnt = max(row[0] + 1 if row else 0, floor) & 0xFFFFFFFF
            self._db.execute("INSERT INTO counters (dev_eui, direction, fcnt, updated) VALUES (?, 'down', ?, ?) "
                             "ON CONFLICT (dev_eui, direction) DO UPDATE SET fcnt=excluded.fcnt, "
                             "updated=excluded.updated", (dev_eui, fcnt, time.time()))
        return fcnt

    def close(self) -> None:
        with self._lock:
            self._db.close()


# -- the source ----------------------------------------------------------------------------------------------------


@dataclass
class SerialP2PSettings:
    port: str = "/dev/ttyUSB0"
    baud: int = 115200
    state_path: str = "citynode-p2p-counters.sqlite"
    freq_hz: int = 868_100_000  # the node's defaults (firmware/citynode_fw/radio/rak3172_p2p.py)
    sf: int = 7
    bw_khz: int = 125
    cr: int = 0  # RUI3 coding-rate index: 0..3 = 4/5..4/8
    preamble: int = 8
    txp_dbm: int = 14
    receiver_id: str = ""  # gateway id in the readings' rf block; default "serial:<port name>"
    rx_mode: int = PRECV_CONTINUOUS  # 65534 (stop to send) or 65533 (send while listening)
    configure: bool = True  # set the modem up on every open (AT+NWM, AT+P2P, AT+PRECV)
    reopen_min_s: float = 0.5
    reopen_max_s: float = 30.0
    command_timeout_s: float = 2.0
    tx_timeout_s: float = 5.0
    restart_wait_s: float = 2.0  # after AT+NWM=0 the modem reboots
    max_downlinks_per_device: int = 4
    downlink_ttl_s: float = 86400.0
    clock_downlink_counter: bool = True  # downlink counters never below the Unix time: survive a lost state file

    def __post_init__(self) -> None:
        if not self.receiver_id:
            self.receiver_id = f"serial:{Path(self.port).name}"
        if self.rx_mode not in (PRECV_CONTINUOUS, PRECV_CONTINUOUS_TX):
            raise ValueError("rx_mode must be 65534 or 65533")
        if not 0 <= self.cr <= 3:
            raise ValueError("cr is RUI3's coding-rate index 0..3 (4/5..4/8)")

    def at_p2p(self) -> str:
        return f"{self.freq_hz}:{self.sf}:{self.bw_khz}:{self.cr}:{self.preamble}:{self.txp_dbm}"


class ModemError(RuntimeError):
    """The modem answered an AT command with an error or not at all."""


def same_p2p(got: str, want: str) -> bool:
    """AT+P2P=? answers with the bandwidth in kHz or as RUI3's index (0 = 125, 1 = 250, 2 = 500)."""
    g = got.strip().split(":")
    w = want.split(":")
    if len(g) != 6:
        return False
    bw_index = {"125": "0", "250": "1", "500": "2"}.get(w[2])
    return all(g[i] == w[i] or (i == 2 and g[i] == bw_index) for i in range(6))


def _noop() -> None:
    pass


class SerialP2PSource:
    """The receiver thread: opens the port, configures the modem, verifies and emits frames, sends downlinks."""

    name = SOURCE

    def __init__(self, settings: SerialP2PSettings, emit: Emit, registry,
                 open_port: Callable[[SerialP2PSettings], object] | None = None):
        self.settings = settings
        self.emit = emit
        self.registry = registry
        self.stats = SourceStats()
        self.events: Counter[str] = Counter()  # frames, garbled lines, reopens, downlinks sent/failed
        self._open_port = open_port or self._open_serial
        self._counters: CounterStore | None = None
        self._port = None
        self._buf = bytearray()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._downlinks: dict[str, deque[tuple[Downlink, Future, float]]] = {}
        self._dl_lock = threading.Lock()
        self._due: deque[str] = deque()  # devices just heard: send their waiting downlink (outside any command)

    # -- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._counters = CounterStore(self.settings.state_path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="citynode-serial-p2p", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close_port()
        if self._counters is not None:
            self._counters.close()
            self._counters = None
        with self._dl_lock:
            for queue in self._downlinks.values():
                for _, future, _ in queue:
                    if not future.done():
                        future.set_exception(DownlinkError("serial source stopped before the device was heard"))
            self._downlinks.clear()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the port is open and the modem configured (for tests and startup checks)."""
        return self._ready.wait(timeout)

    # -- downlinks

    def send_downlink(self, d: Downlink) -> Future:
        """Queue `d` for the device's next uplink. Returns a Future that completes when the modem has sent it
        (or fails). Raises DownlinkError when the device has no key or too many downlinks wait."""
        device = self.registry.get(d.dev_eui)
        if device is None or device.p2p_key is None:
            raise DownlinkError(f"{d.dev_eui} is not a P2P device in the registry (no p2p_key)")
        if not 1 <= d.fport <= 223 or len(d.payload) > p2p.MAX_PAYLOAD:
            raise DownlinkError("fPort must be 1..223 and the payload at most 222 bytes")
        future: Future = Future()
        with self._dl_lock:
            queue = self._downlinks.setdefault(device.dev_eui, deque())
            if len(queue) >= self.settings.max_downlinks_per_device:
                raise DownlinkError(f"{len(queue)} downlinks already wait for {device.name}'s next uplink")
            queue.append((d, future, time.monotonic() + self.settings.downlink_ttl_s))
        return future

    def pending_downlinks(self, dev_eui: str) -> int:
        with self._dl_lock:
            return len(self._downlinks.get(dev_eui, ()))

    # -- the thread

    @staticmethod
    def _open_serial(settings: SerialP2PSettings):
        import serial

        return serial.Serial(settings.port, settings.baud, timeout=0.1, write_timeout=2.0)

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 - an unplugged port may fail to close: it is gone either way
                pass

    def _run(self) -> None:
        delay = self.settings.reopen_min_s
        outage_logged = False
        while not self._stop.is_set():
            try:
                self._port = self._open_port(self.settings)
            except Exception as e:  # noqa: BLE001 - SerialException, OSError: the port is not there (yet)
                if not outage_logged:
                    log.warning("serial: cannot open %s (%s); retrying with backoff up to %.0f s",
                                self.settings.port, e, self.settings.reopen_max_s)
                    outage_logged = True
                self.events["open_failed"] += 1
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.reopen_max_s)
                continue
            self._buf.clear()
            try:
                if self.settings.configure:
                    self._configure()
                delay = self.settings.reopen_min_s
                outage_logged = False
                self.stats.connected = True
                self._ready.set()
                self.events["opened"] += 1
                log.info("serial: receiving on %s", self.settings.port)
                while not self._stop.is_set():
                    line = self._readline(0.5)
                    if line is not None:
                        self._dispatch(line)
                    while self._due:
                        self._send_waiting(self._due.popleft())
            except ModemError as e:
                log.warning("serial: modem on %s: %s; reopening", self.settings.port, e)
                self.events["modem_errors"] += 1
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.reopen_max_s)
            except Exception as e:  # noqa: BLE001 - SerialException/OSError: unplugged
                if not self._stop.is_set():
                    log.warning("serial: %s went away (%s); reopening with backoff", self.settings.port, e)
                    self.events["lost"] += 1
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.settings.reopen_max_s)
            finally:
                self.stats.connected = False
                self._ready.clear()
                self._close_port()

    def _readline(self, timeout: float) -> bytes | None:
        """One line (without the newline) or None after `timeout`. Raises when the port is gone."""
        deadline = time.monotonic() + timeout
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[:nl + 1]
                return line.rstrip(b"\r")
            if len(self._buf) > MAX_LINE:
                self._buf.clear()
                self.events["overlong_lines"] += 1
            if time.monotonic() >= deadline or self._stop.is_set():
                return None
            port = self._port
            if port is None:
                raise OSError("port closed")
            waiting = getattr(port, "in_waiting", 0) or 1
            chunk = port.read(min(waiting, 4096))
            if chunk:
                self._buf += chunk

    def _write(self, command: str) -> None:
        port = self._port
        if port is None:
            raise OSError("port closed")
        port.write(command.encode("ascii") + b"\r\n")
        flush = getattr(port, "flush", None)
        if flush:
            flush()

    def _command(self, command: str, timeout: float | None = None) -> tuple[str, list[str]]:
        """Send one AT command; (status, other lines). Frames arriving meanwhile are handled, not lost."""
        self._write(command)
        deadline = time.monotonic() + (timeout or self.settings.command_timeout_s)
        infos: list[str] = []
        while time.monotonic() < deadline:
            if self._stop.is_set():
                raise ModemError("source stopping")
            line = self._readline(max(0.01, deadline - time.monotonic()))
            if line is None:
                continue
            parsed = parse_line(line)
            if isinstance(parsed, Reply):
                return parsed.status, infos
            if isinstance(parsed, Text):
                if parsed.text != command:  # an echo
                    infos.append(parsed.text)
            elif parsed is not None:
                self._dispatch(line, parsed)
        raise ModemError(f"no answer to {command.split('=')[0]} within "
                         f"{timeout or self.settings.command_timeout_s:.1f} s")

    def _wait_event(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            line = self._readline(max(0.01, deadline - time.monotonic()))
            if line is None:
                continue
            parsed = parse_line(line)
            if isinstance(parsed, Event) and parsed.name == name:
                return True
            if parsed is not None and not isinstance(parsed, (Reply, Text)):
                self._dispatch(line, parsed)
        return False

    @staticmethod
    def _value(infos: list[str], command: str) -> str | None:
        """The value of a query answer: "AT+NWM=0" or a bare "0"."""
        for info in infos:
            if info.startswith(command + "="):
                return info[len(command) + 1:]
            if not info.startswith("AT"):
                return info
        return None

    def _configure(self) -> None:
        s = self.settings
        for attempt in range(3):
            try:
                if self._command("AT")[0] == "OK":
                    break
            except ModemError:
                if attempt == 2:
                    raise
        status, infos = self._command("AT+NWM=?")
        if status == "OK" and self._value(infos, "AT+NWM") != "0":
            log.info("serial: switching the modem to LoRa P2P (AT+NWM=0); it restarts")
            self._command("AT+NWM=0")
            self._stop.wait(s.restart_wait_s)
            self._buf.clear()
            if self._command("AT")[0] != "OK":
                raise ModemError("modem silent after switching to P2P")
        status, infos = self._command("AT+P2P=?")
        current = self._value(infos, "AT+P2P") if status == "OK" else None
        if current is None or not same_p2p(current, s.at_p2p()):
            status, _ = self._command(f"AT+P2P={s.at_p2p()}")
            if status != "OK":
                raise ModemError(f"AT+P2P={s.at_p2p()} refused: {status}")
        self._listen()

    def _listen(self) -> None:
        status, infos = self._command(f"AT+PRECV={self.settings.rx_mode}")
        if status == "OK":
            return
        if status == "AT_BUSY_ERROR":  # "P2P_RX_ON already" or still sending: stop and start again
            self._command(f"AT+PRECV={PRECV_STOP}")
            status, infos = self._command(f"AT+PRECV={self.settings.rx_mode}")
            if status == "OK":
                return
        raise ModemError(f"AT+PRECV={self.settings.rx_mode} refused: {status} {' '.join(infos)[:80]}")

    # -- frames

    def _emit(self, item: Uplink | Rejected) -> None:
        if isinstance(item, Rejected):
            self.stats.rejected[item.reason] = self.stats.rejected.get(item.reason, 0) + 1
        try:
            self.emit(item, _noop)
        except Exception:  # noqa: BLE001
            log.exception("serial: emit failed")

    def _dispatch(self, line: bytes, parsed: ModemLine | None = None) -> None:
        parsed = parse_line(line) if parsed is None else parsed
        now = datetime.now(timezone.utc)
        if isinstance(parsed, RxFrame):
            self.stats.received += 1
            self.events["frames"] += 1
            uplink = self.accept(parsed, line, now)
            self._emit(uplink)
            if isinstance(uplink, Uplink) and self.pending_downlinks(uplink.dev_eui):
                self._due.append(uplink.dev_eui)
        elif isinstance(parsed, Garbled):
            self.stats.received += 1
            self.events["garbled"] += 1
            self._emit(Rejected(SOURCE, "malformed_line", parsed.reason, now, None, line))
        elif isinstance(parsed, Event):
            self.events[f"event:{parsed.name[:40]}"] += 1

    def accept(self, rx: RxFrame, line: bytes, now: datetime) -> Uplink | Rejected:
        """Verify one received frame: MIC with the device key, counter above the last accepted one (stored)."""
        frame = rx.frame
        try:
            marker, eui_b, fcnt, fport, payload, _ = p2p.parse(frame)
        except p2p.FrameError as e:
            return Rejected(SOURCE, "not_citynode", str(e), now, None, line)
        eui = bytes(eui_b).hex()
        if marker != p2p.UPLINK:
            return Rejected(SOURCE, "not_uplink", f"downlink frame (marker 0x{marker:02x}) heard on the air", now,
                            eui, line)
        device = self.registry.get(eui)
        if device is None or device.p2p_key is None:
            return Rejected(SOURCE, "unknown_device", f"{eui} is not in the registry" if device is None else
                            f"{device.name} has no p2p_key in the registry", now, eui, line)
        try:
            p2p.verify(frame, device.p2p_key)
        except p2p.FrameError as e:
            return Rejected(SOURCE, "bad_mic", f"frame from {device.name}: {e}", now, eui, line)
        last = self._counters.accept_uplink(eui, fcnt) if self._counters else None
        if last is not None:
            return Rejected(SOURCE, "replayed_fcnt", f"counter {fcnt} from {device.name} is not above the last "
                                                     f"accepted {last}", now, eui, line)
        return Uplink(SOURCE, eui, fport, bytes(payload), now, fcnt=fcnt, device_name=device.name,
                      rx=(RxInfo(self.settings.receiver_id, rx.rssi_dbm, rx.snr_db),),
                      spreading_factor=self.settings.sf, frequency_hz=self.settings.freq_hz, raw=bytes(line))

    def _send_waiting(self, dev_eui: str) -> None:
        with self._dl_lock:
            queue = self._downlinks.get(dev_eui)
            item = None
            while queue:
                d, future, expires = queue.popleft()
                if time.monotonic() <= expires and not future.cancelled():
                    item = (d, future)
                    break
                if not future.done():
                    future.set_exception(DownlinkError("expired before the device was heard"))
            if queue is not None and not queue:
                del self._downlinks[dev_eui]
        if item is None:
            return
        d, future = item
        try:
            self._transmit(d)
        except Exception as e:  # noqa: BLE001 - ModemError or the port vanished mid-send
            self.events["downlinks_failed"] += 1
            if not future.done():
                future.set_exception(e if isinstance(e, (ModemError, DownlinkError)) else DownlinkError(str(e)))
            if not isinstance(e, ModemError):
                raise
            return
        self.events["downlinks_sent"] += 1
        if not future.done():
            future.set_result(True)

    def _transmit(self, d: Downlink) -> None:
        device = self.registry.get(d.dev_eui)
        if device is None or device.p2p_key is None or self._counters is None:
            raise DownlinkError(f"{d.dev_eui} has no p2p_key")
        floor = int(time.time()) if self.settings.clock_downlink_counter else 0
        fcnt = self._counters.next_downlink(device.dev_eui, floor)
        frame = p2p.build(p2p.DOWNLINK, bytes.fromhex(device.dev_eui), fcnt, d.fport, d.payload, device.p2p_key)
        stopped = False
        if self.settings.rx_mode == PRECV_CONTINUOUS:
            self._command(f"AT+PRECV={PRECV_STOP}")
            stopped = True
        try:
            status, _ = self._command(f"AT+PSEND={frame.hex()}")
            if status == "AT_BUSY_ERROR" and not stopped:
                self._command(f"AT+PRECV={PRECV_STOP}")
                stopped = True
                status, _ = self._command(f"AT+PSEND={frame.hex()}")
            if status != "OK":
                raise ModemError(f"AT+PSEND refused: {status}")
            if not self._wait_event("TXP2P DONE", self.settings.tx_timeout_s):
                raise ModemError("no +EVT:TXP2P DONE after AT+PSEND")
            log.info("serial: downlink %s (seq %s) sent to %s with counter %d", d.request_id, d.seq, device.name, fcnt)
        finally:
            if stopped:
                self._listen()
