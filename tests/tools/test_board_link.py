"""The programs behind the port: exact esptool and mpremote argument lists, a real esptool session against a mock
ESP32 ROM bootloader, and the errors a technician gets for a missing, busy, silent or wrong board."""

from __future__ import annotations

import os
import tty
from pathlib import Path

import pytest

from citynode.tools.board_link import BOARDS, BoardLink, Result, check_port, wait_for_repl
from citynode.tools.errors import BoardNotAnswering, PortBusy, PortMissing, WrongBoard

ESP32 = BOARDS["esp32"]
FW = Path("/fw/ESP32_GENERIC-v1.25.0.bin")


class Recorder:
    """A runner that records every command and answers from a script of (returncode, output)."""

    def __init__(self, *answers: tuple[int, str]):
        self.calls: list[list[str]] = []
        self.answers = list(answers)

    def __call__(self, args: list[str], timeout: float) -> Result:
        self.calls.append(args)
        code, out = self.answers.pop(0) if self.answers else (0, "")
        return Result(code, out)


def test_esptool_commands_are_exactly_the_documented_v5_forms():
    link = BoardLink("/dev/ttyUSB0", esptool=["esptool"])
    assert link.erase_flash_args(ESP32) == ["esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "erase-flash"]
    assert link.write_flash_args(ESP32, FW) == ["esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud",
                                                "460800", "write-flash", "0x1000", str(FW)]
    assert link.verify_flash_args(BOARDS["rak11200"], FW) == ["esptool", "--chip", "esp32", "--port",
                                                               "/dev/ttyUSB0", "verify-flash", "0x1000", str(FW)]


def test_a_failed_fast_write_is_retried_at_the_default_baud_rate():
    rec = Recorder((2, "A fatal error occurred: Packet content transfer stopped"), (0, "Hash of data verified."))
    BoardLink("/dev/ttyUSB0", runner=rec, esptool=["esptool"]).write_flash(ESP32, FW)
    assert rec.calls[0][5:7] == ["--baud", "460800"]
    assert rec.calls[1] == ["esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "write-flash", "0x1000", str(FW)]


def test_a_board_in_no_bootloader_gets_the_boards_own_boot_instructions():
    rec = Recorder((2, "A fatal error occurred: Failed to connect to ESP32: No serial data received."))
    with pytest.raises(BoardNotAnswering) as e:
        BoardLink("/dev/ttyUSB0", runner=rec, esptool=["esptool"]).erase_flash(BOARDS["rak11200"])
    assert "BOOT0" in e.value.hint


def test_files_are_copied_in_one_mpremote_session_folders_first():
    rec = Recorder()
    BoardLink("/dev/ttyACM0", runner=rec, mpremote=["mpremote"]).copy(
        [(Path("/b/main.py"), "main.py"), (Path("/b/lib/a/x.mpy"), "lib/a/x.mpy")], ["lib", "lib/a"])
    assert rec.calls == [["mpremote", "connect", "/dev/ttyACM0", "fs", "mkdir", ":lib", "+", "fs", "mkdir", ":lib/a",
                          "+", "fs", "cp", "/b/main.py", ":main.py", "+", "fs", "cp", "/b/lib/a/x.mpy",
                          ":lib/a/x.mpy"]]


def test_a_missing_port_lists_the_ports_this_computer_sees(tmp_path):
    with pytest.raises(PortMissing) as e:
        check_port(str(tmp_path / "ttyUSB9"))
    assert e.value.port.endswith("ttyUSB9") and "USB cable" in e.value.hint


def test_a_port_held_by_another_program_names_that_program(make_rig, port_holder):
    rig = make_rig(modem=False)
    holder = port_holder(rig.port)
    with pytest.raises(PortBusy) as e:
        check_port(rig.port)
    assert [pid for pid, _ in e.value.holders] == [holder.pid]
    assert f"pid {holder.pid}" in e.value.message


def test_a_silent_port_is_reported_as_a_board_not_answering():
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        with pytest.raises(BoardNotAnswering) as e:
            wait_for_repl(os.ttyname(slave), timeout=1.0)
        assert "printed nothing" in e.value.detail
    finally:
        os.close(master)
        os.close(slave)


# -- a real esptool session against a mock ROM bootloader (PyPI esp32-mock-bootloader) --------------------------


def test_esptool_erases_writes_and_then_verifies_the_image_on_a_mock_rom_bootloader(mock_rom, firmware_image):
    link = BoardLink(mock_rom("esp32"))
    fw, other = firmware_image("fw.bin", 3), firmware_image("other.bin", 5)
    assert not link.verify_flash(ESP32, fw)
    link.erase_flash(ESP32)
    link.write_flash(ESP32, fw)
    assert link.verify_flash(ESP32, fw)
    assert not link.verify_flash(ESP32, other)


def test_esptool_finding_another_chip_is_a_wrong_board_error(mock_rom):
    link = BoardLink(mock_rom("esp32c3"))
    with pytest.raises(WrongBoard) as e:
        link.erase_flash(ESP32)
    assert (e.value.expected, e.value.found, e.value.source) == ("ESP32", "ESP32-C3", "esptool")
