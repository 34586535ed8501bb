"""The interpreter of an emulated board: one `micropython` (Unix port) process running board_agent.py.

    agent = AgentProcess(flash_dir, listener, micropython="/path/to/micropython")
    agent.execute("e", b"print(1)")     # later: listener.agent_output(b"1\\n"), listener.agent_finished("ok", "")
    agent.restart(rtc_offset_s=900)     # a fresh interpreter (soft reset, wake, power cycle)
    agent.close()

Requests never block the caller: they are queued for one pump thread, which owns the process and its pipes and
calls the listener. Program output always reaches the listener before the result of the command that printed it
(the pump reads a result, drains stdout, then acts on the result). A process that dies is reported as a finished
command with status "crash" and replaced. See board_agent.py for the pipe protocol.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .rak3172 import EmulatorError

log = logging.getLogger(__name__)

AGENT = Path(__file__).with_name("board_agent.py")
KINDS = ("e", "s", "f")  # exec (file input), single (one REPL statement), run a file if it exists
_START_TIMEOUT_S = 10.0
_INTERRUPT_REPEAT_S = 0.2  # a second SIGINT while the first is still pending makes the Unix port exit(1)


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux: a function that makes the calling (child) process get SIGKILL when the thread that forked it ends
    (prctl PR_SET_PDEATHSIG), prepared before any fork; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    return arm


_die_with_parent = _parent_death_signal()


class BoardProcessError(EmulatorError):
    """The interpreter could not be started."""


class AgentListener(Protocol):
    """What the agent reports; called from the pump thread, one call at a time."""

    def agent_output(self, data: bytes) -> None: ...

    def agent_finished(self, status: str, traceback: str) -> None: ...

    def agent_reset(self, cause: str, ms: int) -> None: ...

    def agent_sleep(self, ms: int, ahead_ms: int) -> None: ...

    def agent_clock(self, offset_s: int) -> None: ...


class _Proc:
    """One running agent and the host ends of its pipes."""

    def __init__(self, popen: subprocess.Popen, cmd_w: int, ctl_r: int):
        self.popen, self.cmd_w, self.ctl_r = popen, cmd_w, ctl_r
        assert popen.stdout is not None and popen.stderr is not None
        self.out, self.err = popen.stdout.fileno(), popen.stderr.fileno()
        for fd in (self.out, self.err, self.ctl_r):
            os.set_blocking(fd, False)
        self.ctl = bytearray()
        self.eof: set[int] = set()
        self.ready = False  # the agent said hello

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        for fd in (self.cmd_w, self.ctl_r):
            try:
                os.close(fd)
            except OSError:
                pass
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


class AgentProcess:
    """A board's interpreter. Thread-safe; close() leaves no process, thread or descriptor behind."""

    def __init__(self, flash_dir: str | Path, listener: AgentListener, *, micropython: str,
                 name: str = "citynode emulated board", heap_size: str | None = None, rtc_offset_s: int = 0,
                 time_warp: bool = False, start_timeout_s: float = _START_TIMEOUT_S):
        self.flash_dir = Path(flash_dir)
        self.listener = listener
        self.micropython = micropython
        self.name = name
        self.heap_size = heap_size
        self.time_warp = time_warp
        self.start_timeout_s = start_timeout_s
        self.banner = ""
        self.restarts = 0
        self._lock = threading.Lock()
        self._requests: deque[tuple[str, tuple]] = deque()
        self._seq = 0
        self._running: int | None = None
        self._last_interrupt = 0.0
        self._offset = int(rtc_offset_s)
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._proc: _Proc | None = None
        # The pump thread starts every interpreter, so that each one dies with it (PR_SET_PDEATHSIG follows
        # the thread that forked): an interpreter stuck in a loop cannot outlive its board or the host.
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._pump, name=f"board agent {name}", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._thread.join()
            self._close_pipe()
            raise self._start_error

    # -- requests (any thread, never block) --------------------------------------------------------------------

    def execute(self, kind: str, payload: bytes) -> None:
        """Run code (kind "e" or "s") or a file by name ("f"); the listener hears agent_finished()."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self._request("execute", (kind, bytes(payload)))

    def interrupt(self) -> None:
        """Ctrl-C: KeyboardInterrupt in the running program (nothing when none runs)."""
        self._request("interrupt", ())

    def restart(self, rtc_offset_s: int) -> None:
        """Replace the interpreter with a fresh one whose RTC is the host clock + rtc_offset_s."""
        self._request("restart", (int(rtc_offset_s),))

    @property
    def busy(self) -> bool:
        """A command is running or waiting to run."""
        with self._lock:
            return self._running is not None or any(r[0] == "execute" for r in self._requests)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.popen.pid if proc is not None and proc.popen.poll() is None else None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._poke()
        self._thread.join()
        if self._proc is not None:
            self._proc.kill()
            self._proc = None
        self._close_pipe()

    # -- the pump thread ---------------------------------------------------------------------------------------

    def _request(self, what: str, args: tuple) -> None:
        with self._lock:
            if self._closed:
                return
            self._requests.append((what, args))
        self._poke()

    def _poke(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # already poked (pipe full), or closing

    def _pump(self) -> None:
        try:
            self._proc = self._spawn(self._offset)
        except BaseException as e:  # noqa: BLE001 - handed to the constructor, which raises it
            self._start_error = e
            self._started.set()
            return
        self._started.set()
        while True:
            with self._lock:
                if self._closed:
                    return
                request = self._requests.popleft() if self._requests else None
            if request is not None:
                try:
                    self._handle(*request)
                except Exception:
                    log.exception("board agent: %s failed", request[0])
                continue
            proc = self._proc
            fds = [self._wake_r] + ([fd for fd in (proc.out, proc.err, proc.ctl_r) if fd not in proc.eof]
                                    if proc is not None else [])
            readable, _, _ = select.select(fds, [], [], 0.5)
            if self._wake_r in readable:
                self._drain_wake()
            if proc is not None and proc is self._proc and any(fd in readable for fd in fds[1:]):
                try:
                    self._service(proc)
                except Exception:
                    log.exception("board agent: reading the interpreter failed")

    def _handle(self, what: str, args: tuple) -> None:
        if what == "execute":
            kind, payload = args
            proc = self._proc
            if proc is None:
                self.listener.agent_finished("crash", "the interpreter is not running\n")
                return
            self._seq += 1
            with self._lock:
                self._running = self._seq
            try:
                os.set_blocking(proc.cmd_w, True)
                os.write(proc.cmd_w, b"%s %d %d\n" % (kind.encode(), self._seq, len(payload)))
                view = memoryview(payload)
                while view:
                    view = view[os.write(proc.cmd_w, view):]
            except OSError:
                pass  # the process died; _service reports it
        elif what == "interrupt":
            proc = self._proc
            now = time.monotonic()
            if proc is not None and self._running is not None and now - self._last_interrupt >= _INTERRUPT_REPEAT_S:
                self._last_interrupt = now
                try:
                    proc.popen.send_signal(signal.SIGINT)
                except OSError:
                    pass
        elif what == "restart":
            self._replace(args[0])

    def _replace(self, rtc_offset_s: int) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc = None
        with self._lock:
            self._running = None
        self.restarts += 1
        try:
            self._proc = self._spawn(rtc_offset_s)
        except BoardProcessError as e:
            self.listener.agent_output(f"emulated board: {e}\n".encode())

    def _service(self, proc: _Proc) -> None:
        # Messages first, then the output: whatever the agent printed before a message it wrote is in the
        # stdout pipe by now, so it reaches the listener before the message is acted on.
        try:
            data = os.read(proc.ctl_r, 65536)
        except BlockingIOError:
            data = None
        self._drain_output(proc)
        if data:
            proc.ctl.extend(data)
            self._messages(proc)
        elif data == b"":
            self._died(proc)

    def _drain_output(self, proc: _Proc) -> None:
        for fd in (proc.out, proc.err):
            while fd not in proc.eof:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    proc.eof.add(fd)
                    break
                self.listener.agent_output(chunk)

    def _messages(self, proc: _Proc) -> None:
        buf = proc.ctl
        while True:
            end = buf.find(b"\n")
            if end < 0:
                return
            head = bytes(buf[:end]).split()
            kind = head[0] if head else b""
            size = int(head[-1]) if kind in (b"V", b"D") else 0
            if len(buf) < end + 1 + size:
                return
            body = bytes(buf[end + 1:end + 1 + size])
            del buf[:end + 1 + size]
            if kind == b"V":
                self.banner = body.decode(errors="replace")
                proc.ready = True
            elif kind == b"D":
                seq, status = int(head[1]), head[2].decode()
                with self._lock:
                    mine = seq == self._running
                    if mine:
                        self._running = None
                if mine:
                    self.listener.agent_finished(status, body.decode(errors="replace"))
            elif kind == b"H":
                with self._lock:
                    self._running = None
                self.listener.agent_reset(head[1].decode(), int(head[2]))
            elif kind == b"Z":
                self.listener.agent_sleep(int(head[1]), int(head[2]))
            elif kind == b"T":
                self.listener.agent_clock(int(head[1]))
            else:
                log.warning("board agent: unexpected message %r", head)

    def _died(self, proc: _Proc) -> None:
        self._drain_output(proc)
        code = proc.popen.wait()
        proc.kill()
        self._proc = None
        with self._lock:
            running, self._running = self._running, None
        if self._closed:
            return
        log.warning("board agent exited with %s; starting a new interpreter", code)
        try:
            self._proc = self._spawn(self._offset)
        except BoardProcessError as e:
            self.listener.agent_output(f"emulated board: {e}\n".encode())
        if running is not None:
            self.listener.agent_finished("crash", f"emulated board: the interpreter exited ({code})\n")

    def _spawn(self, rtc_offset_s: int) -> _Proc:
        self._offset = rtc_offset_s
        cmd_r, cmd_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        argv = [self.micropython]
        if self.heap_size:
            argv += ["-X", f"heapsize={self.heap_size}"]
        argv += [str(AGENT), str(self.flash_dir), str(cmd_r), str(ctl_w), str(int(rtc_offset_s)), self.name,
                 "1" if self.time_warp else "0"]
        try:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     pass_fds=(cmd_r, ctl_w), start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as e:
            for fd in (cmd_r, cmd_w, ctl_r, ctl_w):
                os.close(fd)
            raise BoardProcessError(f"cannot start {self.micropython}: {e}") from e
        os.close(cmd_r)
        os.close(ctl_w)
        proc = _Proc(popen, cmd_w, ctl_r)
        deadline = time.monotonic() + self.start_timeout_s
        output = bytearray()
        while not proc.ready:
            left = deadline - time.monotonic()
            if left <= 0 or popen.poll() is not None:
                err = b""
                try:
                    err = os.read(proc.err, 65536)
                except OSError:
                    pass
                proc.kill()
                text = (bytes(output) + err).decode(errors="replace")
                raise BoardProcessError(f"the interpreter did not start: {text}")
            readable, _, _ = select.select([proc.ctl_r, proc.out], [], [], min(left, 0.2))
            if proc.out in readable:
                try:
                    output.extend(os.read(proc.out, 65536))
                except BlockingIOError:
                    pass
            if proc.ctl_r in readable:
                try:
                    proc.ctl.extend(os.read(proc.ctl_r, 65536))
                except BlockingIOError:
                    pass
                self._messages(proc)
        if output:
            self.listener.agent_output(bytes(output))
        return proc

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

