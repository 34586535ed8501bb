"""The LoRa P2P receiver on a serial port: the pure line parser, the counter store, and the source against a fake
RAK3172 on a pseudo-terminal (configuration, MIC and replay checks, unplug/replug, downlinks)."""

from __future__ import annotations

import os
import queue
import select
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citynode.records import Downlink, Rejected, Uplink
from citynode.registry import Registry
from citynode.sources import DownlinkError
from citynode.sources.serial_p2p import (
    CounterStore,
    Event,
    Garbled,
    Reply,
    RxFrame,
    SerialP2PSettings,
    SerialP2PSource,
    Text,
    parse_line,
    same_p2p,
)
from citynode_codec import p2p

FIXTURES = Path(__file__).parent / "fixtures"
EUI = "ac1f09fffe000003"
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=timezone.utc)
SOIL = bytes.fromhex("1007541b40")


def frame(fcnt: int, payload: bytes = SOIL, *, key: bytes = KEY, eui: str = EUI, marker: int = p2p.UPLINK,
          fport: int = 1) -> bytes:
    return p2p.build(marker, bytes.fromhex(eui), fcnt, fport, payload, key)


def rx_line(data: bytes, rssi: int = -70, snr: int = 8) -> str:
    return f"+EVT:RXP2P:{rssi}:{snr}:{data.hex().upper()}"


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# -- parse_line ----------------------------------------------------------------------------------------------------


def test_a_received_frame_line_gives_rssi_snr_and_bytes():
    assert parse_line(b"+EVT:RXP2P:-70:8:C1AC1F\r\n") == RxFrame(-70, 8, bytes.fromhex("c1ac1f"))
    assert parse_line(b"+EVT:RXP2P:-112:-7:00") == RxFrame(-112, -7, b"\x00")


@pytest.mark.parametrize("line, expected", [
    (b"OK\r\n", Reply("OK")),
    (b"AT_BUSY_ERROR", Reply("AT_BUSY_ERROR")),
    (b"AT_PARAM_ERROR\r", Reply("AT_PARAM_ERROR")),
    (b"+EVT:TXP2P DONE", Event("TXP2P DONE")),
    (b"+EVT:RXP2P RECEIVE TIMEOUT", Event("RXP2P RECEIVE TIMEOUT")),
    (b"AT+NWM=0", Text("AT+NWM=0")),
    (b"P2P_RX_ON", Text("P2P_RX_ON")),
    (b"", None),
    (b"\r\n", None),
])
def test_modem_lines_are_classified(line, expected):
    assert parse_line(line) == expected


@pytest.mark.parametrize("line", [b"+EVT:RXP2P:-70:8:ABC", b"+EVT:RXP2P:-70:8:", b"+EVT:RXP2P:x:8:AB",
                                  b"+EVT:RXP2P:-70:8:ZZ", b"+EVT:RXP2P:-70:8:AB:CD",
                                  b"+EVT:RXP2P:-70:8:" + b"AB" * 300])
def test_broken_frame_lines_are_garbled_not_frames(line):
    assert isinstance(parse_line(line), Garbled)


@settings(max_examples=1000)
@given(st.one_of(st.binary(max_size=600),
                 st.builds(lambda a, b, c: f"+EVT:RXP2P:{a}:{b}:{c}".encode(), st.text(max_size=8),
                           st.text(max_size=8), st.text(max_size=40)),
                 st.builds(lambda r, s, d: f"+EVT:RXP2P:{r}:{s}:{d.hex()}".encode(), st.integers(-10**6, 10**6),
                           st.integers(-10**6, 10**6), st.binary(max_size=300))))
def test_any_line_parses_to_a_known_type_or_none_without_raising(line):
    parsed = parse_line(line)
    assert parsed is None or isinstance(parsed, (RxFrame, Reply, Event, Garbled, Text))
    if isinstance(parsed, RxFrame):
        assert 1 <= len(parsed.frame) <= 255


def test_p2p_settings_compare_with_the_bandwidth_as_khz_or_index():
    assert same_p2p("868100000:7:125:0:8:14", "868100000:7:125:0:8:14")
    assert same_p2p("868100000:7:0:0:8:14", "868100000:7:125:0:8:14")
    assert not same_p2p("868000000:7:125:0:8:14", "868100000:7:125:0:8:14")
    assert not same_p2p("garbage", "868100000:7:125:0:8:14")


# -- counters ------------------------------------------------------------------------------------------------------


def test_counters_must_increase_and_survive_a_restart(tmp_path):
    store = CounterStore(tmp_path / "c.sqlite")
    assert store.accept_uplink(EUI, 5) is None
    assert store.accept_uplink(EUI, 5) == 5
    assert store.accept_uplink(EUI, 4) == 5
    assert store.accept_uplink(EUI, 6) is None
    store.close()
    again = CounterStore(tmp_path / "c.sqlite")
    assert again.accept_uplink(EUI, 6) == 6 and again.accept_uplink(EUI, 7) is None
    assert again.next_downlink(EUI) == 0 and again.next_downlink(EUI) == 1
    assert again.next_downlink(EUI, floor=1000) == 1000 and again.next_downlink(EUI) == 1001


# -- the source against a fake RAK3172 on a pty --------------------------------------------------------------------


class FakeRAK3172:
    """The modem side of a pseudo-terminal, answering AT commands like RUI3."""

    def __init__(self, nwm: int = 1, p2p_setting: str = "868000000:7:0:0:8:14"):
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        self.nwm, self.p2p, self.precv = nwm, p2p_setting, 0
        self.commands: list[str] = []
        self.sent: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def write(self, text: str) -> None:
        with self._lock:
            os.write(self.master, (text + "\r\n").encode())

    def _answer(self, cmd: str) -> list[str]:
        if cmd == "AT":
            return ["OK"]
        if cmd == "AT+NWM=?":
            return [f"AT+NWM={self.nwm}", "OK"]
        if cmd.startswith("AT+NWM="):
            self.nwm, self.precv = int(cmd[7:]), 0
            return ["OK"]
        if self.nwm != 0 and cmd.startswith(("AT+P2P", "AT+PRECV", "AT+PSEND")):
            return ["AT_MODE_NO_SUPPORT"]
        if cmd == "AT+P2P=?":
            return [f"AT+P2P={self.p2p}", "OK"]
        if cmd.startswith("AT+P2P="):
            self.p2p = cmd[7:]
            return ["OK"]
        if cmd.startswith("AT+PRECV="):
            mode = int(cmd[9:])
            if mode and self.precv in (65533, 65534):
                return ["AT_BUSY_ERROR"]
            self.precv = mode
            return ["OK"]
        if cmd.startswith("AT+PSEND="):
            if self.precv == 65534:
                return ["AT_BUSY_ERROR"]
            self.sent.append(bytes.fromhex(cmd[9:]))
            return ["OK", "+EVT:TXP2P DONE"]
        return ["AT_COMMAND_NOT_FOUND"]

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.05)
                if not ready:
                    continue
                chunk = os.read(self.master, 1024)
            except OSError:
                return
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                cmd = raw.strip().decode()
                if not cmd:
                    continue
                self.commands.append(cmd)
                for reply in self._answer(cmd):
                    try:
                        self.write(reply)
                    except OSError:
                        return

    def unplug(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def point(link: Path, target: str) -> None:
    tmp = link.with_suffix(".new")
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


@pytest.fixture
def rig(tmp_path):
    modem = FakeRAK3172()
    link = tmp_path / "rak3172"
    point(link, modem.path)
    items: queue.Queue = queue.Queue()
    registry = Registry.load(FIXTURES / "registry.toml")
    settings_ = SerialP2PSettings(port=str(link), state_path=str(tmp_path / "p2p.sqlite"), reopen_min_s=0.05,
                                  reopen_max_s=0.2, restart_wait_s=0.05, command_timeout_s=2.0)

    def make_source() -> SerialP2PSource:
        return SerialP2PSource(settings_, lambda item, ack: (ack(), items.put(item)), registry)

    source = make_source()
    source.start()
    state = {"modem": modem, "source": source}
    yield state, items, link, make_source
    state["source"].stop()
    state["modem"].unplug()


def test_the_modem_is_switched_to_p2p_configured_and_set_to_listen(rig):
    state, _, _, _ = rig
    source, modem = state["source"], state["modem"]
    assert source.wait_ready(10)
    assert "AT+NWM=0" in modem.commands
    assert "AT+P2P=868100000:7:125:0:8:14" in modem.commands
    assert modem.commands[-1] == "AT+PRECV=65534" and modem.precv == 65534
    assert source.stats.connected


def test_a_valid_frame_becomes_an_uplink_and_forgeries_replays_and_strangers_are_rejected(rig):
    state, items, _, _ = rig
    source, modem = state["source"], state["modem"]
    assert source.wait_ready(10)
    modem.write(rx_line(frame(10), rssi=-91, snr=-3))
    up = items.get(timeout=5)
    assert isinstance(up, Uplink)
    assert (up.source, up.dev_eui, up.fcnt, up.fport, up.payload) == ("serial", EUI, 10, 1, SOIL)
    assert (up.rx[0].rssi_dbm, up.rx[0].snr_db) == (-91, -3) and up.device_name == "tree-0003-p2p"
    assert up.frequency_hz == 868100000 and up.spreading_factor == 7
    expectations = [
        (rx_line(frame(11, key=bytes(16))), "bad_mic"),
        (rx_line(frame(10)), "replayed_fcnt"),
        (rx_line(frame(9)), "replayed_fcnt"),
        (rx_line(frame(1, eui="70b3d57ed0000abc")), "unknown_device"),
        (rx_line(frame(1, eui="ac1f09fffe000001")), "unknown_device"),  # in the registry, but without a key
        (rx_line(frame(12, marker=p2p.DOWNLINK)), "not_uplink"),
        (rx_line(b"hello world, not ours!"), "not_citynode"),
        ("+EVT:RXP2P:-70:8:ABC", "malformed_line"),
    ]
    for line, reason in expectations:
        modem.write(line)
        item = items.get(timeout=5)
        assert isinstance(item, Rejected) and item.reason == reason, (line, item)
        assert item.raw == line.encode()
    modem.write(rx_line(frame(11)))
    assert items.get(timeout=5).fcnt == 11  # a forged frame did not move the counter


def test_a_replayed_frame_is_refused_after_a_bridge_restart(rig):
    state, items, _, make_source = rig
    assert state["source"].wait_ready(10)
    state["modem"].write(rx_line(frame(20)))
    assert items.get(timeout=5).fcnt == 20
    state["source"].stop()
    state["source"] = make_source()
    state["source"].start()
    assert state["source"].wait_ready(10)
    state["modem"].write(rx_line(frame(20)))
    assert items.get(timeout=5).reason == "replayed_fcnt"


def test_unplug_and_replug_reopens_reconfigures_and_keeps_counting(rig):
    state, items, link, _ = rig
    source = state["source"]
    assert source.wait_ready(10)
    state["modem"].write(rx_line(frame(30)))
    assert items.get(timeout=5).fcnt == 30
    state["modem"].unplug()  # the USB adapter is pulled
    assert wait_until(lambda: not source.stats.connected)
    assert wait_until(lambda: source.events["open_failed"] + source.events["lost"] >= 1)
    replugged = FakeRAK3172(nwm=0, p2p_setting="868100000:7:125:0:8:14")  # powered up again, reception off
    state["modem"] = replugged
    point(link, replugged.path)
    assert wait_until(lambda: source.stats.connected and replugged.precv == 65534)
    assert "AT+NWM=0" not in replugged.commands and not any(c.startswith("AT+P2P=8") for c in replugged.commands)
    replugged.write(rx_line(frame(31)))
    assert items.get(timeout=5).fcnt == 31
    replugged.write(rx_line(frame(30)))
    assert items.get(timeout=5).reason == "replayed_fcnt"


def test_a_downlink_waits_for_the_devices_next_uplink_and_is_sent_signed_with_a_fresh_counter(rig):
    state, items, _, _ = rig
    source, modem = state["source"], state["modem"]
    assert source.wait_ready(10)
    started = time.monotonic()
    future = source.send_downlink(Downlink(EUI, 20, bytes.fromhex("150f"), request_id="r1", seq=5))
    assert time.monotonic() - started < 0.5 and not future.done()  # queued, the caller is not blocked
    assert modem.sent == []
    modem.write(rx_line(frame(40)))
    assert items.get(timeout=5).fcnt == 40
    assert future.result(timeout=10) is True
    [sent] = modem.sent
    marker, eui, fcnt, fport, payload, _ = p2p.verify(sent, KEY)
    assert (marker, bytes(eui).hex(), fport, payload) == (p2p.DOWNLINK, EUI, 20, bytes.fromhex("150f"))
    assert fcnt >= int(time.time()) - 60  # counters never fall below the clock: a lost state file is harmless
    psend = next(i for i, c in enumerate(modem.commands) if c.startswith("AT+PSEND="))
    assert modem.commands[psend - 1] == "AT+PRECV=0" and modem.commands[psend + 1] == "AT+PRECV=65534"
    second = source.send_downlink(Downlink(EUI, 26, b"\x77"))
    modem.write(rx_line(frame(41)))
    assert second.result(timeout=10) is True
    assert p2p.verify(modem.sent[1], KEY)[2] > fcnt


def test_downlinks_for_devices_without_a_key_or_beyond_the_queue_are_refused(rig):
    state, _, _, _ = rig
    source = state["source"]
    with pytest.raises(DownlinkError):
        source.send_downlink(Downlink("ac1f09fffe000001", 20, b"\x15\x0f"))
    for _ in range(source.settings.max_downlinks_per_device):
        source.send_downlink(Downlink(EUI, 26, b"\x77"))
    with pytest.raises(DownlinkError):
        source.send_downlink(Downlink(EUI, 26, b"\x77"))


def test_works_with_the_emulated_rak3172_receiver_including_downlink_and_replug(tmp_path):
    emulation = pytest.importorskip("citynode.emulation.p2p_receiver")
    from citynode.emulation.air import Air, P2PConfig
    from citynode.emulation.pty_device import monotonic_ms

    air = Air()
    receiver = emulation.P2PReceiver(air, link=tmp_path / "ttyRAK0")  # starts on 868.0 MHz
    items: queue.Queue = queue.Queue()
    settings_ = SerialP2PSettings(port=str(tmp_path / "ttyRAK0"), state_path=str(tmp_path / "s.sqlite"),
                                  reopen_min_s=0.05, reopen_max_s=0.2)
    source = SerialP2PSource(settings_, lambda i, a: items.put(i), Registry.load(FIXTURES / "registry.toml"))
    node = object()
    air.place(node, None, "node")
    channel = P2PConfig(freq_hz=868_100_000)
    source.start()
    try:
        assert source.wait_ready(10)
        future = source.send_downlink(Downlink(EUI, 20, bytes.fromhex("150f")))
        assert air.transmit(node, frame(5), monotonic_ms(), channel) == 1  # the source retuned it to 868.1 MHz
        assert items.get(timeout=5).fcnt == 5
        assert future.result(timeout=10) is True
        assert p2p.verify(receiver.sent[0].frame, KEY)[3] == 20
        receiver.unplug()
        assert wait_until(lambda: not source.stats.connected)
        receiver.replug()
        assert wait_until(lambda: source.stats.connected)
        air.transmit(node, frame(6), monotonic_ms(), channel)
        assert items.get(timeout=5).fcnt == 6
    finally:
        source.stop()
        receiver.close()


def test_a_missing_port_is_retried_with_backoff_without_raising(tmp_path):
    items: queue.Queue = queue.Queue()
    settings_ = SerialP2PSettings(port=str(tmp_path / "nothing"), state_path=str(tmp_path / "s.sqlite"),
                                  reopen_min_s=0.01, reopen_max_s=0.05)
    source = SerialP2PSource(settings_, lambda i, a: items.put(i), Registry())
    source.start()
    try:
        assert wait_until(lambda: source.events["open_failed"] >= 3)
        assert not source.stats.connected and items.empty()
    finally:
        source.stop()
