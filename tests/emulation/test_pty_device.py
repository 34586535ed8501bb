"""An emulated device served on a pseudo-terminal: pyserial talks to it like to a USB serial adapter, and
unplug()/replug() behave like the adapter disappearing and coming back."""

from __future__ import annotations

import os
import threading
import time

import pytest
import serial

from citynode.emulation.lns import LoopbackNetwork
from citynode.emulation.pty_device import PtyDevice, PtyError, monotonic_ms
from citynode.emulation.rak3172 import RAK3172

from helpers import open_descriptors

DEV_EUI = "AC1F09FFFE000001"


def rak(**kw) -> RAK3172:
    kw.setdefault("dev_eui", DEV_EUI)
    kw.setdefault("booted", True)
    kw.setdefault("network", LoopbackNetwork())
    return RAK3172(**kw)


def port(path, timeout: float = 3.0) -> serial.Serial:
    return serial.Serial(str(path), 115200, timeout=timeout)


def exchange(s: serial.Serial, line: str, end: bytes = b"OK\r\n") -> bytes:
    s.write(line.encode() + b"\r\n")
    return s.read_until(end)


def wait_ready(s: serial.Serial, tries: int = 20) -> None:
    """What a host does after (re)opening a port: AT until OK (input is lost while the modem boots)."""
    timeout, s.timeout = s.timeout, 0.2
    try:
        for _ in range(tries):
            if exchange(s, "AT").endswith(b"OK\r\n"):
                s.reset_input_buffer()
                return
        raise AssertionError("modem never answered AT")
    finally:
        s.timeout = timeout


def test_pyserial_opens_the_link_and_exchanges_at_commands(tmp_path):
    with PtyDevice(rak(), link=tmp_path / "ttyRAK0") as dev, port(dev.path) as s:
        assert dev.path == tmp_path / "ttyRAK0" and os.readlink(dev.path) == dev.pts
        assert exchange(s, "AT") == b"OK\r\n"
        assert exchange(s, "AT+DEVEUI=?") == f"AT+DEVEUI={DEV_EUI}\r\nOK\r\n".encode()
        assert exchange(s, "AT+NWM=7", b"\r\n") == b"AT_PARAM_ERROR\r\n"


def test_without_a_link_the_path_is_the_pts(tmp_path):
    with PtyDevice(rak()) as dev, port(dev.path) as s:
        assert str(dev.path) == dev.pts and dev.pts.startswith("/dev/pts/")
        assert exchange(s, "AT") == b"OK\r\n"


def test_a_command_written_in_pieces_is_one_command(tmp_path):
    with PtyDevice(rak(echo=True), link=tmp_path / "tty") as dev, port(dev.path) as s:
        s.write(b"AT+NJ")
        assert s.read_until(b"AT+NJ") == b"AT+NJ"  # the echo proves the first piece arrived alone
        s.write(b"S=?\r\n")
        assert s.read_until(b"OK\r\n") == b"S=?\n\rAT+NJS=0\r\nOK\r\n"


def test_output_that_falls_due_later_arrives_without_host_traffic(tmp_path):
    with PtyDevice(rak(), link=tmp_path / "tty") as dev, port(dev.path) as s:
        exchange(s, "AT+NWM=0", b"LoRa P2P.\r\n")
        assert exchange(s, "AT+PSEND=0102", b"DONE\r\n") == b"OK\r\n+EVT:TXP2P DONE\r\n"


def test_unplug_breaks_the_open_port_and_removes_the_link(tmp_path):
    link = tmp_path / "ttyUSB0"
    with PtyDevice(rak(), link=link) as dev, port(dev.path) as s:
        assert exchange(s, "AT") == b"OK\r\n"
        dev.unplug()
        assert not dev.plugged and not link.exists() and not link.is_symlink()
        with pytest.raises(serial.SerialException):
            s.read(1)
        with pytest.raises(serial.SerialException):
            port(link)


def test_replug_points_the_link_at_the_new_pts_and_power_cycles_the_modem(tmp_path):
    link = tmp_path / "ttyUSB0"
    modem = rak()
    with PtyDevice(modem, link=link) as dev:
        with port(link) as s:
            exchange(s, "AT+NWM=0", b"LoRa P2P.\r\n")
            assert exchange(s, "AT+PRECV=65534") == b"OK\r\n"
            assert exchange(s, "AT+P2P=868300000:9:125:0:8:14") == b"OK\r\n"
        boots = modem.boots
        dev.unplug()
        dev.replug()
        assert os.readlink(link) == dev.pts
        with port(link) as s:
            wait_ready(s)
            assert exchange(s, "AT+P2P=?") == b"AT+P2P=868300000:9:125:0:8:14\r\nOK\r\n"  # flash survives
            assert exchange(s, "AT+PRECV=?") == b"P2P_RX_OFF\r\nOK\r\n"  # the radio state does not
        assert modem.boots == boots + 1


def test_replug_without_power_cycle_drops_what_was_printed_while_unplugged(tmp_path):
    modem = rak()
    with PtyDevice(modem, link=tmp_path / "tty", power_cycle_on_replug=False) as dev:
        dev.unplug()
        modem.write(b"AT\r\n", monotonic_ms())  # answered into the void
        while modem.next_event_ms() > monotonic_ms():
            time.sleep(0.002)
        dev.replug()
        with port(dev.path, timeout=0.3) as s:
            assert exchange(s, "AT+NJS=?") == b"AT+NJS=0\r\nOK\r\n"
        assert modem.boots == 0  # never powered up again


def test_clients_can_close_and_reopen_the_same_path(tmp_path):
    with PtyDevice(rak(), link=tmp_path / "tty") as dev:
        for _ in range(3):
            with port(dev.path) as s:
                assert exchange(s, "AT") == b"OK\r\n"


def test_close_leaves_no_thread_and_no_descriptor(tmp_path):
    fds_before = open_descriptors()
    threads_before = set(threading.enumerate())
    dev = PtyDevice(rak(), link=tmp_path / "tty")
    with port(dev.path) as s:
        assert exchange(s, "AT") == b"OK\r\n"
    dev.unplug()
    dev.replug()
    dev.close()
    dev.close()  # idempotent
    assert set(threading.enumerate()) == threads_before
    assert open_descriptors() - fds_before == set()
    assert not (tmp_path / "tty").is_symlink()


def test_a_link_that_is_a_regular_file_is_refused(tmp_path):
    (tmp_path / "tty").write_text("not a device")
    fds_before = open_descriptors()
    with pytest.raises(PtyError):
        PtyDevice(rak(), link=tmp_path / "tty")
    assert open_descriptors() - fds_before == set()
