"""The REPL of a MicroPython board as a pure state machine: bytes from the terminal in, bytes to it out.

    repl = ReplMachine(host, banner="MicroPython v1.29.0 on 2026-07-05; ESP32 with ESP32")
    repl.feed(b"\\x01")          # Ctrl-A
    repl.take()                  # b"\\r\\nraw REPL; CTRL-B to exit\\r\\n>"

What a board prints follows MicroPython's shared/runtime/pyexec.c (pyexec_friendly_repl, pyexec_raw_repl,
do_reader_stdin for raw-paste, parse_compile_execute's EOF markers), shared/readline/readline.c (echo, backspace,
auto-indent) and py/repl.c (mp_repl_continue_with_input), byte for byte where mpremote and people can tell:

- friendly REPL: banner, ">>> " / "... " prompts, echo, Enter is "\\r\\n", Ctrl-A raw REPL, Ctrl-B banner again,
  Ctrl-C cancel, Ctrl-D soft reset, Ctrl-E paste mode ("=== ");
- raw REPL: "raw REPL; CTRL-B to exit\\r\\n>", code then Ctrl-D -> "OK" + stdout + "\\x04" + traceback + "\\x04" +
  ">", Ctrl-D on an empty line -> "OK\\r\\n" and a soft reset, Ctrl-B back to the friendly REPL;
- raw-paste (Ctrl-E "A" Ctrl-A in the raw REPL) -> "R\\x01", the window size (u16 LE) and "\\x01"; "\\x01" again
  after every window of bytes taken; Ctrl-D ends the data ("\\x04"), then stdout + "\\x04" + traceback + "\\x04" +
  ">"; another sub-command letter -> "R\\x00" + ">". With raw_paste=False the board behaves like firmware older
  than raw-paste (v1.13): the Ctrl-A just restarts the raw REPL, which makes mpremote fall back;
- soft reset: "MPY: soft reboot\\r\\n", a fresh interpreter, boot.py, then main.py in the friendly REPL only
  (with autorun), then the banner or the raw REPL prompt, as ports/esp32/main.c does;
- program output is "cooked" ("\\n" -> "\\r\\n", mp_hal_stdout_tx_strn_cooked); input that arrives while a
  program runs waits until it ends, except Ctrl-C, which interrupts it (the UART interrupt character).

The interpreter is asynchronous: the machine asks its host to run code and is told later what came of it
(program_output, program_finished). Not emulated: cursor movement and history in the friendly line editor
(the cursor stays at the end of the line; arrow keys are ignored), tab completion of names, and input() in
programs (the UART belongs to the REPL here).
"""

from __future__ import annotations

import re
from typing import Protocol

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
FRIENDLY, RAW = "friendly", "raw"
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
HELP_LINE = b'Type "help()" for more information.\r\n'
PASTE_BANNER = b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== "
PS1, PS2 = b">>> ", b"... "
STDIN_BUFFER_MAX = 256  # MICROPY_REPL_STDIN_BUFFER_MAX default: the raw-paste window is half of it
_COMPOUND = ("if", "while", "for", "try", "with", "def", "class", "async")


class ReplHost(Protocol):
    """What the REPL needs from the board: an interpreter that runs code asynchronously."""

    def execute(self, kind: str, payload: bytes) -> None:
        """Run code: kind "e" (file input), "s" (one REPL statement) or "f" (the file named by payload)."""

    def interrupt(self) -> None:
        """Ctrl-C while a program runs."""

    def restart(self) -> None:
        """A fresh interpreter (soft reset)."""


def continue_with_input(text: str) -> bool:
    """py/repl.c mp_repl_continue_with_input: does this friendly-REPL input need another line?"""
    if not text:
        return False
    word = re.match(r"\w*", text, re.ASCII)
    compound = text[0] == "@" or (word is not None and word.group() in _COMPOUND)
    paren = brack = brace = 0
    quote = ""  # "", "'", '"', "'''", '"""'
    i = 0
    while i < len(text):
        c = text[i]
        if c in "'\"":
            if quote in ("", c * 3) and text[i + 1:i + 3] == c * 2:
                i += 2
                quote = "" if quote else c * 3
            elif quote in ("", c):
                quote = "" if quote else c
        elif c == "\\" and text[i + 1:i + 2] in ("'", '"', "\\"):
            if quote:
                i += 1
        elif not quote:
            paren += (c == "(") - (c == ")")
            brack += (c == "[") - (c == "]")
            brace += (c == "{") - (c == "}")
        i += 1
    if quote in ("'''", '"""'):
        return True
    if (paren > 0 or brack > 0 or brace > 0) and not quote:
        return True
    if text.endswith("\\"):
        return True
    return compound and not text.endswith("\n")


def cook(data: bytes) -> bytes:
    """A board's stdout: every "\\n" goes out as "\\r\\n"."""
    return data.replace(b"\n", b"\r\n")


class ReplMachine:
    """One board's REPL. Not thread-safe: the owner serialises calls (board.py holds a lock).

    banner: the first line of the friendly REPL banner ("MicroPython <version> on <date>; <board> with <mcu>").
    autorun: a soft reset in the friendly REPL runs main.py (boot.py always runs).
    raw_paste: support the raw-paste protocol (MicroPython >= 1.14).
    """

    def __init__(self, host: ReplHost, *, banner: str, autorun: bool = False, raw_paste: bool = True,
                 stdin_buffer: int = STDIN_BUFFER_MAX):
        self.host = host
        self.banner = banner
        self.autorun = autorun
        self.raw_paste = raw_paste
        self.window = stdin_buffer // 2
        self.mode = FRIENDLY
        self.boots = 0  # boot sequences finished (power-on, resets, wakes)
        self.boot_output = bytearray()  # what the scripts of the latest boot sequence printed
        self._out = bytearray()
        self._pending = bytearray()
        self._state = "idle"  # idle, running, booting
        self._context = ""  # who ran the current program: friendly, raw, boot
        self._steps: list[str] = []
        self._boot_ok = True
        self._interrupted = False
        # friendly line editor (readline.c)
        self._line = bytearray()
        self._orig = 0
        self._cont = False
        self._paste: bytearray | None = None
        self._esc = 0
        self._indent_on = False
        self._indent_just_added = False
        # raw REPL
        self._raw = bytearray()
        self._raw_paste: bytearray | None = None
        self._window_left = 0

    # -- the terminal side -------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes typed on the terminal (or sent by mpremote)."""
        self._pending.extend(data)
        self._process()

    def take(self) -> bytes:
        """What the board printed since the last call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def idle(self) -> bool:
        """Waiting at a prompt: nothing runs and no input waits."""
        return self._state == "idle" and not self._pending

    @property
    def running(self) -> bool:
        return self._state != "idle"

    # -- the interpreter side ----------------------------------------------------------------------------------

    def program_output(self, data: bytes) -> None:
        """What the running program printed."""
        self._emit(cook(data), program=True)

    def program_finished(self, status: str, traceback: str) -> None:
        """The program ended: status ok, exc (with its traceback), exit (SystemExit) or crash."""
        if self._state == "idle":
            return
        context, self._interrupted = self._context, False
        tb = cook(traceback.encode())
        if context == "boot":
            self._emit(tb, program=True)
            if status == "exit":
                self._soft_reset()
            else:
                self._boot_ok = status == "ok"
                self._next_step()
        elif context == "raw":
            # parse_compile_execute with EXEC_FLAG_PRINT_EOF: EOF after stdout, the exception, EOF
            self._emit(b"\x04" + tb + b"\x04")
            if status == "exit":
                self._soft_reset()
            else:
                self._emit(b">")
                self._state = "idle"
        else:
            self._emit(tb)
            if status == "exit":
                self._soft_reset()
            else:
                self._state = "idle"
                self._input_restart()
        self._process()

    # -- the board side ----------------------------------------------------------------------------------------

    def soft_reset(self) -> None:
        """What Ctrl-D does (also sys.exit() and machine.soft_reset())."""
        self._soft_reset()
        self._process()

    def hard_reset(self, *, run_main: bool | None = None) -> None:
        """The board restarted from scratch (reset button, machine.reset(), deep-sleep wake, power): input is
        lost, the REPL starts friendly, boot.py and (autorun or run_main) main.py run. The caller has already
        given the interpreter its new start (host.restart() is not called)."""
        self._pending.clear()
        self.mode = FRIENDLY
        self._boot(run_main=self.autorun if run_main is None else run_main)
        self._process()

    # -- internals ---------------------------------------------------------------------------------------------

    def _emit(self, data: bytes, *, program: bool = False) -> None:
        self._out.extend(data)
        if program and self._context == "boot" and self._state == "booting":
            self.boot_output.extend(data)

    def _soft_reset(self) -> None:
        # ports/esp32/main.c soft_reset_exit: the banner line, then everything starts again
        self._emit(SOFT_REBOOT)
        self.host.restart()
        self._boot(run_main=self.autorun and self.mode == FRIENDLY)

    def _boot(self, *, run_main: bool) -> None:
        self._state = "booting"
        self._context = "boot"
        self.boot_output = bytearray()
        self._steps = ["boot.py"] + (["main.py"] if run_main else [])
        self._boot_ok = True
        self._raw.clear()
        self._raw_paste = None
        self._paste = None
        self._line.clear()
        self._cont = False
        self._next_step()

    def _next_step(self) -> None:
        # main.py runs only when boot.py did not fail (esp32 main.c: `ret != 0` after pyexec_file_if_exists)
        if self._steps and (self._steps[0] == "boot.py" or self._boot_ok):
            self.host.execute("f", self._steps.pop(0).encode())
            return
        self._steps = []
        self._state = "idle"
        self.boots += 1
        if self.mode == RAW:
            self._emit(RAW_BANNER + b">")
        else:
            self._friendly_banner()

    def _run(self, kind: str, code: bytes, context: str) -> None:
        self._state = "running"
        self._context = context
        self.host.execute(kind, code)

    def _process(self) -> None:
        while self._pending:
            if self._state != "idle":
                # A program runs: Ctrl-C interrupts it, everything else waits in the UART buffer.
                i = self._pending.find(CTRL_C)
                if i >= 0:
                    del self._pending[i]
                    if not self._interrupted:
                        self._interrupted = True
                        self.host.interrupt()
                    continue
                return
            c = self._pending.pop(0)
            if self.mode == RAW:
                self._raw_char(c)
            elif self._paste is not None:
                self._paste_char(c)
            else:
                self._friendly_char(c)

    # -- raw REPL (pyexec_raw_repl, do_reader_stdin) ------------------------------------------------------------

    def _raw_char(self, c: int) -> None:
        if self._raw_paste is not None:
            self._raw_paste_char(c)
        elif c == CTRL_A:
            line, self._raw = bytes(self._raw), bytearray()
            if self.raw_paste and len(line) == 2 and line[0] == CTRL_E:
                if line[1] == ord("A"):
                    # "R\x01", then the window size and one window already free (mp_reader_new_stdin)
                    self._emit(b"R\x01" + self.window.to_bytes(2, "little") + b"\x01")
                    self._raw_paste = bytearray()
                    self._window_left = self.window
                else:
                    self._emit(b"R\x00>")
                return
            self._emit(RAW_BANNER + b">")
        elif c == CTRL_B:
            self._raw.clear()
            self._emit(b"\r\n")
            self.mode = FRIENDLY
            self._friendly_banner()
        elif c == CTRL_C:
            self._raw.clear()
        elif c == CTRL_D:
            self._emit(b"OK")
            code, self._raw = bytes(self._raw), bytearray()
            if not code:
                self._emit(b"\r\n")
                self._soft_reset()
            else:
                self._run("e", code, "raw")
        else:
            self._raw.append(c)

    def _raw_paste_char(self, c: int) -> None:
        assert self._raw_paste is not None
        if c in (CTRL_C, CTRL_D):
            code, self._raw_paste = bytes(self._raw_paste), None
            self._emit(b"\x04")  # end of data acknowledged (mp_reader_stdin_readbyte)
            if c == CTRL_D:
                self._run("e", code, "raw")
            else:  # KeyboardInterrupt raised while reading: no frame to show
                self._emit(b"\x04" + cook(b"KeyboardInterrupt: \n") + b"\x04>")
            return
        self._raw_paste.append(c)
        self._window_left -= 1
        if self._window_left == 0:
            self._emit(b"\x01")  # another window free
            self._window_left = self.window

    # -- friendly REPL (pyexec_friendly_repl, readline) ---------------------------------------------------------

    def _friendly_banner(self) -> None:
        self._emit(self.banner.encode() + b"\r\n" + HELP_LINE)
        self._input_restart()

    def _input_restart(self) -> None:
        self._line.clear()
        self._cont = False
        self._paste = None
        self._readline_init(PS1)

    def _readline_init(self, prompt: bytes) -> None:
        self._orig = len(self._line)
        self._esc = 0
        self._emit(prompt)
        if not self._line:
            self._indent_on = True  # readline_init: auto-indent starts enabled on a fresh input
        self._auto_indent()

    def _auto_indent(self) -> None:
        # readline.c readline_auto_indent: keep the previous line's indent, one more level after a ':'
        line = self._line
        self._indent_just_added = False
        if not self._indent_on or len(line) <= 1 or line[-1] != ord("\n"):
            return
        i = len(line) - 1
        while i > 0 and line[i - 1] != ord("\n"):
            i -= 1
        j = i
        while j < len(line) and line[j] == ord(" "):
            j += 1
        if i > 0 and j + 1 == len(line):
            k = i - 1
            while k > 0:
                if line[k - 1] == ord("\n"):
                    return  # the last two lines are blank: no indent
                if line[k - 1] != ord(" "):
                    break
                k -= 1
        n = (j - i) // 4 + (1 if line[-2] == ord(":") else 0)
        if n > 0:
            line.extend(b"    " * n)
            self._emit(b"    " * n)
            self._indent_just_added = True

    def _readline_char(self, c: int) -> int | None:
        """readline_process_char: the control code or 0 (Enter) that ends the line, or None to go on."""
        line = self._line
        just_added, self._indent_just_added = self._indent_just_added, False
        if self._esc:
            # ESC [ A/B/C/D, ESC [ n ~, ESC O H/F: cursor keys and history, not emulated
            if self._esc == 1:
                self._esc = 2 if c == ord("[") else 3 if c == ord("O") else 0
            elif self._esc == 2 and ord("0") <= c <= ord("9"):
                self._esc = 4
            else:
                self._esc = 0
            return None
        if CTRL_A <= c <= CTRL_E and len(line) == self._orig:
            return c  # a control character on an empty line
        if c == CTRL_C:
            return c
        if c == 13:
            self._emit(b"\r\n")
            return 0
        if c == 27:
            self._esc = 1
        elif c in (8, 127):
            if len(line) > self._orig:
                tail = line[self._orig:]
                n = 4 if len(tail) >= 4 and tail.count(b" ") == len(tail) else 1
                del line[-n:]
                self._emit(b"\b" * n + b"\x1b[K")
        elif just_added and c in (9, 32):
            # a tab or space right after auto-indent turns it off; a space takes back 3 of the 4 spaces
            self._indent_on = False
            if c == 32:
                del line[-3:]
                self._emit(b"\b\b\b")
        elif c == 9:
            if len(line) > self._orig and chr(line[-1]).isspace():
                line.extend(b"    ")
                self._emit(b"    ")
            # (completion of names is not emulated)
        elif 32 <= c <= 126:
            line.append(c)
            self._emit(bytes([c]))
        return None

    def _friendly_char(self, c: int) -> None:
        ret = self._readline_char(c)
        if ret is None:
            return
        text = self._line.decode("latin-1")
        if not self._cont:
            if ret == CTRL_A:
                self._emit(b"\r\n")
                self.mode = RAW
                self._raw.clear()
                self._emit(RAW_BANNER + b">")
            elif ret == CTRL_B:
                self._emit(b"\r\n")
                self._friendly_banner()
            elif ret == CTRL_C:
                self._emit(b"\r\n")
                self._input_restart()
            elif ret == CTRL_D:
                self._emit(b"\r\n")
                self._line.clear()
                self._soft_reset()
            elif ret == CTRL_E:
                self._emit(PASTE_BANNER)
                self._line.clear()
                self._paste = bytearray()
            elif not self._line:
                self._input_restart()
            elif continue_with_input(text):
                self._line.append(ord("\n"))
                self._cont = True
                self._readline_init(PS2)
            else:
                self._run("s", bytes(self._line), "friendly")
            return
        if ret == CTRL_C:
            self._emit(b"\r\n")
            self._input_restart()
        elif ret == CTRL_D or not continue_with_input(text):
            self._run("s", bytes(self._line), "friendly")
        else:
            self._line.append(ord("\n"))
            self._readline_init(PS2)

    def _paste_char(self, c: int) -> None:
        assert self._paste is not None
        if c == CTRL_C:
            self._emit(b"\r\n")
            self._input_restart()
        elif c == CTRL_D:
            self._emit(b"\r\n")
            code, self._paste = bytes(self._paste), None
            self._run("e", code, "friendly")
        else:
            self._paste.append(c)
            self._emit(b"\r\n=== " if c == 13 else bytes([c]))
