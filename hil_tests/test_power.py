"""Deep sleep, power cycles and resets, as the node and a technician see them."""

import pytest
import serial


def test_sleep_memory_survives_a_wake_and_a_power_cycle_loses_it(board, deploy, run_wake, uplinks):
    board.require_emulation("cut the power")
    emu = board.emulator
    deploy("soil", batch_size=2)  # no data due at the first wake: the status goes out at once
    run_wake(cause="hard_reset")  # installed and reset
    assert uplinks.wait(1)[0].data["reset_cause"] == "hard_reset"
    run_wake()
    batch = uplinks.wait(1, message="batch")[0]
    assert batch.data["sample_count"] == 2  # the first wake's sample waited in sleep memory

    emu.autorun = False  # the power cut alone, no wake
    emu.power_cycle()
    assert emu.sleep_memory() is None and emu.reset_cause() == "power_on"
    emu.autorun = True

    first = run_wake(cause="power_on")
    assert first.lines("state lost") == []  # empty sleep memory after a power-on is normal
    status = uplinks.wait(1, message="status")[0]
    assert (status.data["reset_cause"], status.data["wake_count"]) == ("power_on", 1)  # counting from scratch


def test_ctrl_d_soft_reboots_and_runs_the_node_like_a_board(board, deploy, uplinks):
    deploy("soil")
    if board.emulated:
        assert board.emulator.wait_idle(10)
    with serial.Serial(board.port, 115200, timeout=30) as console:
        console.write(b"\r\x03")  # a prompt first (interrupts anything running)
        console.read_until(b">>> ")
        console.reset_input_buffer()
        console.write(b"\x04")
        assert console.read_until(b"MPY: soft reboot\r\n").endswith(b"MPY: soft reboot\r\n")
        ran = console.read_until(b"\r\n[cn] tx ")  # main.py ran: one wake cycle up to its first uplink
        assert b"[cn] sample " in ran
        if board.emulated:  # the Unix port's "deep sleep" returns; a board would be asleep now
            assert console.read_until(b">>> ").endswith(b'Type "help()" for more information.\r\n>>> ')
    assert uplinks.wait(1)[0].message == "soil_reading"


def test_mpremote_reset_restarts_the_node_which_reports_a_hard_reset(board, deploy, run_wake, uplinks):
    deploy("soil", sample_interval_s=60)
    run_wake()  # power on: the reading goes out, the status waits
    uplinks.wait(1)
    assert board.mpremote("reset").returncode == 0  # machine.reset(); main.py runs, as on a board
    if board.emulated:
        assert board.emulator.wait_idle(30) and board.emulator.resets[-1] == "hard_reset"
        restarted = board.last_boot()
        assert restarted.sample and [r for _, _, r in restarted.sent] == ["duty_cycle"]  # 1 % rule: not yet
        run_wake()  # the node's next wake; a real board has its own, a minute later
    status = uplinks.wait(1, message="status", timeout=30 if board.emulated else 150)[0]
    assert status.data["reset_cause"] == "hard_reset"


@pytest.mark.no_radio
def test_the_node_asks_to_sleep_until_its_next_slot(board, deploy, run_wake):
    board.require_emulation("see the requested deep sleep")
    deploy("soil", sample_interval_s=600)
    first, second = run_wake(), run_wake()
    assert 590_000 <= first.sleep_ms <= 600_000 and 590_000 <= second.sleep_ms <= 600_000
    assert second.board_time - first.board_time >= 590  # the board's RTC moved on by the sleep
