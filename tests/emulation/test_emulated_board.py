"""The emulated board speaks a MicroPython board's REPL protocols byte for byte, so mpremote works unchanged.

Byte-level checks talk to the pseudo-terminal with pyserial; the rest runs the real `mpremote` against it. The
expected bytes come from MicroPython's shared/runtime/pyexec.c and shared/readline/readline.c.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import serial

from citynode.emulation.board import EmulatedBoard
from citynode.emulation.board_repl import continue_with_input

from helpers import open_descriptors

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"


def mpremote(board: EmulatedBoard, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([MPREMOTE, "connect", board.pts, *args], capture_output=True, text=True, timeout=timeout)


def children() -> list[tuple[int, str]]:
    """(pid, state) of this process's child processes (state Z: a zombie)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid():
            out.append((int(entry), fields[0]))
    return out


class Terminal:
    """A serial port on the board, as a terminal program or mpremote opens it."""

    def __init__(self, board: EmulatedBoard):
        assert board.wait_idle(5)
        self.port = serial.Serial(board.pts, 115200, timeout=5)
        time.sleep(0.05)  # the power-on banner may still be on its way
        self.port.reset_input_buffer()

    def send(self, data: bytes, until: bytes) -> bytes:
        self.port.write(data)
        got = self.port.read_until(until)
        assert got.endswith(until), f"waited for {until!r}, got {got!r}"
        return got

    def quiet(self, seconds: float = 0.2) -> bytes:
        """Whatever else arrives within `seconds` (nothing, when the board printed only what was expected)."""
        time.sleep(seconds)
        return self.port.read(self.port.in_waiting)

    def raw(self) -> None:
        self.send(b"\r\x03", b">>> ")
        self.send(b"\r\x01", RAW_BANNER + b">")

    def close(self) -> None:
        self.port.close()


@pytest.fixture
def make_board(tmp_path):
    boards: list[EmulatedBoard] = []

    def make(**kw) -> EmulatedBoard:
        board = EmulatedBoard(tmp_path / f"flash{len(boards)}", **kw)
        boards.append(board)
        return board

    yield make
    for board in boards:
        board.close()


@pytest.fixture
def board(make_board) -> EmulatedBoard:
    return make_board()


@pytest.fixture
def term(board):
    t = Terminal(board)
    yield t
    t.close()


# -- friendly REPL --------------------------------------------------------------------------------------------------


def test_friendly_repl_echoes_the_line_and_prints_the_value(term):
    assert term.send(b"1+1\r", b">>> ") == b"1+1\r\n2\r\n>>> "


def test_friendly_repl_continues_a_compound_statement_with_auto_indent(term):
    assert term.send(b"if 1:\r", b"...     ") == b"if 1:\r\n...     "
    term.send(b"print('yes')\r", b"...     ")
    term.send(b"\b\b\b\b", b"\x1b[K")  # backspace over an auto-indent takes 4 spaces at once
    assert term.send(b"\r", b">>> ") == b"\r\nyes\r\n>>> "


def test_paste_mode_runs_the_pasted_block_on_ctrl_d(term):
    assert term.send(b"\x05", b"=== ") == b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== "
    assert term.send(b"a = 2\rprint(a * 3)\r", b"3)\r\n=== ") == b"a = 2\r\n=== print(a * 3)\r\n=== "
    assert term.send(b"\x04", b">>> ") == b"\r\n6\r\n>>> "


def test_ctrl_b_prints_the_banner_again(board, term):
    got = term.send(b"\x02", b">>> ")
    assert got == b"\r\n" + board.banner.encode() + b'\r\nType "help()" for more information.\r\n>>> '
    assert got.startswith(b"\r\nMicroPython ")


def test_ctrl_c_interrupts_a_running_program_in_the_friendly_repl(term):
    assert term.send(b"while True: pass\r", b"... ") == b"while True: pass\r\n... "  # a compound statement
    term.send(b"\r", b"\r\n")  # an empty line ends it
    time.sleep(0.2)
    got = term.send(b"\x03", b">>> ")
    assert got == b'Traceback (most recent call last):\r\n  File "<stdin>", line 1, in <module>\r\n' \
                  b"KeyboardInterrupt: \r\n>>> "


def test_ctrl_d_soft_reboots_and_runs_boot_py_and_main_py_with_autorun(make_board):
    board = make_board(autorun=True)
    (board.flash_dir / "boot.py").write_text("print('boot')\n")
    (board.flash_dir / "main.py").write_text("print('main')\n")
    term = Terminal(board)
    try:
        got = term.send(b"\x04", b">>> ")
        assert got == b"\r\nMPY: soft reboot\r\nboot\r\nmain\r\n" + board.banner.encode() + \
            b'\r\nType "help()" for more information.\r\n>>> '
    finally:
        term.close()


def test_without_autorun_a_soft_reset_runs_boot_py_only(board, term):
    (board.flash_dir / "boot.py").write_text("print('boot')\n")
    (board.flash_dir / "main.py").write_text("print('main')\n")
    got = term.send(b"\x04", b">>> ")
    assert got.startswith(b"\r\nMPY: soft reboot\r\nboot\r\nMicroPython ") and b"main" not in got


def test_a_soft_reset_forgets_the_globals(term):
    term.send(b"x = 5\r", b">>> ")
    term.send(b"\x04", b">>> ")
    assert b"NameError: name 'x' isn't defined" in term.send(b"x\r", b">>> ")


# -- raw REPL and raw-paste (pyexec_raw_repl, do_reader_stdin) --------------------------------------------------


def test_raw_repl_exec_prints_ok_then_output_then_two_eofs(term):
    term.raw()
    assert term.send(b"print('hi')\x04", b"\x04>") == b"OKhi\r\n\x04\x04>"


def test_raw_repl_puts_the_traceback_between_the_two_eofs(term):
    term.raw()
    assert term.send(b"1/0\x04", b"\x04>") == (
        b'OK\x04Traceback (most recent call last):\r\n  File "<stdin>", line 1, in <module>\r\n'
        b"ZeroDivisionError: divide by zero\r\n\x04>")


def test_raw_repl_ctrl_c_interrupts_a_running_program(term):
    term.raw()
    term.send(b"import time\nwhile True:\n time.sleep_ms(5)\x04", b"OK")
    time.sleep(0.2)
    assert term.send(b"\x03", b"\x04>") == (
        b'\x04Traceback (most recent call last):\r\n  File "<stdin>", line 3, in <module>\r\n'
        b"KeyboardInterrupt: \r\n\x04>")


def test_raw_repl_ctrl_d_on_an_empty_line_soft_reboots_without_main_py(make_board):
    board = make_board(autorun=True)
    (board.flash_dir / "boot.py").write_text("print('boot')\n")
    (board.flash_dir / "main.py").write_text("print('main')\n")
    term = Terminal(board)
    try:
        term.raw()
        assert term.send(b"\x04", RAW_BANNER + b">") == b"OK\r\nMPY: soft reboot\r\nboot\r\n" + RAW_BANNER + b">"
        assert term.send(b"\x02", b">>> ").startswith(b"\r\nMicroPython ")  # Ctrl-B: back to friendly
    finally:
        term.close()


def test_raw_paste_announces_a_window_and_asks_for_more_after_each(term):
    term.raw()
    assert term.send(b"\x05A\x01", b"R\x01\x80\x00\x01") == b"R\x01\x80\x00\x01"  # 128-byte window, one free
    code = b"x = 1\n" * 50 + b"print(x)\n"  # 309 bytes: two windows used up on the way
    term.port.write(code + b"\x04")
    assert term.port.read_until(b"\x04>") == b"\x01\x01\x041\r\n\x04\x04>"


def test_an_unknown_raw_paste_command_is_answered_r_0(term):
    term.raw()
    assert term.send(b"\x05B\x01", b">") == b"R\x00>"


def test_firmware_without_raw_paste_restarts_the_raw_repl_and_mpremote_falls_back(make_board):
    board = make_board(raw_paste=False)
    term = Terminal(board)
    try:
        term.raw()
        assert term.send(b"\x05A\x01", b">") == RAW_BANNER + b">"
    finally:
        term.close()
    got = mpremote(board, "exec", "print('fallback', 6 * 7)")
    assert (got.returncode, got.stdout) == (0, "fallback 42\n")


# -- mpremote ---------------------------------------------------------------------------------------------------


def test_mpremote_exec_and_eval_give_output_and_tracebacks(board):
    assert mpremote(board, "exec", "print('hello')").stdout == "hello\n"
    assert mpremote(board, "eval", "6 * 7").stdout == "42\n"
    failed = mpremote(board, "exec", "1/0")
    assert failed.returncode == 1 and "ZeroDivisionError: divide by zero" in failed.stdout


def test_files_round_trip_through_mpremote_fs(board, tmp_path):
    local = tmp_path / "data.bin"
    local.write_bytes(bytes(range(256)) * 5 + b"end")
    assert mpremote(board, "mkdir", ":d").returncode == 0
    assert mpremote(board, "cp", str(local), ":d/data.bin").returncode == 0
    assert (board.flash_dir / "d" / "data.bin").read_bytes() == local.read_bytes()
    listing = mpremote(board, "ls", ":d").stdout
    assert "1283 data.bin" in listing  # sizes, as a board's filesystem lists them
    digest = mpremote(board, "sha256sum", ":d/data.bin").stdout.split()[-1]
    assert digest == hashlib.sha256(local.read_bytes()).hexdigest()
    assert "Up to date" in mpremote(board, "cp", str(local), ":d/data.bin").stdout  # skipped by hash
    (tmp_path / "note.txt").write_text("line one\nline two\n")
    mpremote(board, "cp", str(tmp_path / "note.txt"), ":note.txt")
    assert mpremote(board, "cat", ":note.txt").stdout == "line one\nline two\n"
    back = tmp_path / "back.bin"
    assert mpremote(board, "cp", ":d/data.bin", str(back)).returncode == 0
    assert back.read_bytes() == local.read_bytes()
    assert mpremote(board, "rm", "-r", ":d").returncode == 0
    assert not (board.flash_dir / "d").exists()


def test_mpremote_resume_keeps_the_globals_and_soft_reset_clears_them(board):
    assert mpremote(board, "exec", "x = 42").returncode == 0
    assert mpremote(board, "resume", "eval", "x").stdout == "42\n"
    assert mpremote(board, "soft-reset").returncode == 0
    assert "NameError" in mpremote(board, "resume", "eval", "x").stdout
    assert mpremote(board, "resume", "exec", "y = 1").returncode == 0
    assert "NameError" in mpremote(board, "eval", "y").stdout  # a new session soft-resets by itself


def test_mpremote_repl_passes_keys_through_to_the_friendly_repl(board):
    import pty
    import select
    import tty

    main, sub = pty.openpty()  # mpremote repl wants a terminal
    tty.setraw(sub)  # raw from the start: an Enter typed before mpremote sets raw mode itself stays "\r"
    proc = subprocess.Popen([MPREMOTE, "connect", board.pts, "repl"], stdin=sub, stdout=sub, stderr=sub)
    os.close(sub)
    try:
        seen = b""

        def until(marker: bytes) -> None:
            nonlocal seen
            deadline = time.monotonic() + 10
            while marker not in seen and time.monotonic() < deadline:
                if select.select([main], [], [], 0.1)[0]:
                    seen += os.read(main, 4096)
            assert marker in seen, seen

        until(b"Use Ctrl-] or Ctrl-x to exit this shell")
        os.write(main, b"6 * 7\r")
        until(b"6 * 7\r\n42\r\n>>> ")
        os.write(main, b"\x1d")  # Ctrl-]: leave
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)


def test_mpremote_run_executes_a_local_script(board, tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("import sys, os\nprint(sys.platform, os.getcwd())\n")
    assert mpremote(board, "run", str(script)).stdout == "linux /\n"


def test_mpremote_reset_restarts_the_board_with_reset_cause_hard_reset(board):
    assert mpremote(board, "exec", "import machine; print(machine.reset_cause())").stdout == "1\n"  # power on
    assert mpremote(board, "reset").returncode == 0
    assert board.wait_idle(5)
    assert board.resets == ["power_on", "soft_reset", "soft_reset", "hard_reset"]  # each session soft-resets first
    assert mpremote(board, "exec", "import machine; print(machine.reset_cause())").stdout == "2\n"


# -- board API --------------------------------------------------------------------------------------------------


def test_wake_runs_main_py_with_cause_deep_sleep_and_moves_the_rtc_on(board):
    (board.flash_dir / "main.py").write_text(
        "import time\nprint(open('.reset_cause').read(), int(time.time()))\n")
    before = board.board_time()
    out = board.wake(sleep_s=900)
    cause, t = out.split()
    assert cause == "deep_sleep" and int(t) >= before + 900
    assert board.rtc_offset_s == 900


def test_power_cycle_loses_sleep_memory_and_says_power_on(board):
    (board.flash_dir / "main.py").write_text(
        "import machine\nr = machine.RTC()\nprint(machine.reset_cause(), r.memory())\nr.memory(b'kept')\n")
    assert board.wake() == "4 b''\n"
    assert board.wake() == "4 b'kept'\n"
    board.power_cycle()
    assert board.sleep_memory() is None and board.reset_cause() == "power_on"
    assert board.wake(cause="power_on") == "1 b''\n"


def test_unplugging_removes_the_port_and_replugging_powers_the_board_up(make_board, tmp_path):
    board = make_board(link=tmp_path / "ttyBOARD")
    (board.flash_dir / "main.py").write_text("import machine\nmachine.RTC().memory(b'kept')\n")
    board.wake()
    assert board.sleep_memory() == b"kept"
    board.unplug()
    assert not (tmp_path / "ttyBOARD").exists()
    board.replug()
    assert board.wait_idle(5) and board.resets[-1] == "power_on"
    assert board.sleep_memory() is None
    got = subprocess.run([MPREMOTE, "connect", str(board.path), "eval", "1 + 1"], capture_output=True, text=True,
                         timeout=30)
    assert got.stdout == "2\n"


def test_close_leaves_no_process_thread_or_descriptor(tmp_path):
    fds, threads = open_descriptors(), set(threading.enumerate())
    board = EmulatedBoard(tmp_path / "flash", link=tmp_path / "ttyBOARD")
    assert board.path.is_symlink() and mpremote(board, "eval", "1").stdout == "1\n"
    board.close()
    assert children() == []
    assert open_descriptors() - fds == set() and set(threading.enumerate()) == threads
    assert not (tmp_path / "ttyBOARD").exists()


# -- py/repl.c ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,more", [
    ("", False), ("x = 1", False), ("if x:", True), ("if x:\n    y()\n", False), ("f(1,", True),
    ("s = '''a", True), ("s = 'it''s'", False), ("x = \\", True), ("@decorator", True), ("iffy = 1", False),
    ("d = {'a': (", True), ("print(')')", False),
])
def test_continue_with_input_follows_mp_repl_continue_with_input(text, more):
    assert continue_with_input(text) is more


HOST_SCRIPT = """
import sys, time, serial
from citynode.emulation.board import EmulatedBoard
board = EmulatedBoard(sys.argv[1])
board.wait_idle(5)
port = serial.Serial(board.pts, 115200, timeout=5)
port.write(b"while True: pass\\r")
port.read_until(b"... ")
port.write(b"\\r")  # busy forever from here: it never reads its command pipe again
port.read_until(b"\\r\\n")
time.sleep(0.2)
print(board._agent.pid, flush=True)
time.sleep(60)
"""


def test_a_busy_interpreter_does_not_outlive_a_killed_host(tmp_path):
    host = subprocess.Popen([sys.executable, "-c", HOST_SCRIPT, str(tmp_path / "flash")], stdout=subprocess.PIPE,
                            text=True)
    try:
        pid = int(host.stdout.readline())
        assert Path(f"/proc/{pid}").exists()
    finally:
        host.kill()  # SIGKILL: no close(), no cleanup
        host.wait()
        host.stdout.close()
    deadline = time.monotonic() + 5
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pid)  # PR_SET_PDEATHSIG took it down with its host


def running(pid: int) -> bool:
    """Alive, and not a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
