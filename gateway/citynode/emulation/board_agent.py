# The MicroPython side of an emulated board (citynode.emulation.board). Run BY the MicroPython Unix port:
#
#   micropython board_agent.py <flash_dir> <cmd_fd> <ctl_fd> <rtc_offset_s> <board_name> <warp 0|1>
#
# It turns one `micropython` process into the interpreter of a board: the flash folder is mounted at '/'
# (os.mount(os.VfsPosix(folder), '/')), sys.path is a board's ['', '.frozen', '/lib'], and one globals dict
# lives as long as the process, like the __main__ globals of a board's REPL. The host side (board_repl.py)
# speaks the REPL protocols on the serial line and hands this agent code to run; a soft reset on the host
# side is a new process, so every soft reset starts from a clean interpreter, as on a board.
#
# Streams: stdout/stderr are the board's UART output (the host turns "\n" into "\r\n" as boards do); stdin is
# not connected (a board's REPL owns its UART input). Commands and results go over two extra pipes, so nothing
# a program prints can be mistaken for the protocol:
#   host -> agent (cmd_fd):  b"<kind> <seq> <len>\n" + payload
#       kind e: run payload as a file (raw REPL, paste mode)      s: one friendly-REPL statement ('single')
#            f: run the file named by payload if it exists (boot.py, main.py, as pyexec_file_if_exists)
#   agent -> host (ctl_fd):
#       b"V <len>\n" + banner text               once, when the interpreter is ready
#       b"D <seq> <status> <len>\n" + traceback  a command finished: ok, exc (traceback follows) or exit
#                                                (SystemExit: a board soft-resets, pyexec PYEXEC_FORCED_EXIT)
#       b"H <cause> <ms>\n"                      machine.reset() / machine.deepsleep(ms): restart the board
#       b"Z <ms> <ahead_ms>\n"                   the firmware asked to deep-sleep this long (hal/unix.py returns);
#                                                ahead_ms: how far time warp had moved the clocks by then
#       b"T <offset_s>\n"                        machine.RTC().datetime(...) set the clock
#
# Ctrl-C on the line is SIGINT for this process: the Unix port raises KeyboardInterrupt in running code and
# in blocking calls, exactly where a board would. A stray one between commands is swallowed here.
#
# Board behaviour added on top of the Unix port, through sys.modules (which `import` consults before its
# built-in modules): `machine` gains reset(), reset_cause() (from /.reset_cause, which the host writes),
# deepsleep(), lightsleep(), RTC (memory() in /.rtc, the file hal/unix.py keeps sleep memory in), WDT,
# unique_id(), freq(); `os.ilistdir` gives sizes as a board's filesystem does; `time`/`utime` tell the
# board's RTC time: the host's clock plus an offset, which moves forward over each emulated deep sleep so the
# node sees the time it slept.

import io
import os
import sys
import time as _utime

import machine as _umachine

_FLASH, _CMD_FD, _CTL_FD, _OFFSET, _NAME, _WARP = sys.argv[1:7]
_SELF = '  File "' + __file__ + '"'  # traceback lines of this agent, removed from what the board prints

_cmd = open('/dev/fd/' + _CMD_FD, 'rb')  # before the mount: afterwards '/' is the flash folder
_ctl = open('/dev/fd/' + _CTL_FD, 'wb')

_RTC_FILE = '/.rtc'
_CAUSE_FILE = '/.reset_cause'
_RTC_MEMORY_MAX = 2048  # ESP32 RTC user memory (MICROPY_HW_RTC_USER_MEM_MAX)
# machine.reset_cause() values of the ESP32 port (modmachine.h MP_PWRON_RESET ... MP_SOFT_RESET)
_CAUSES = {'power_on': 1, 'hard_reset': 2, 'watchdog': 3, 'deep_sleep': 4, 'soft_reset': 5}
_offset = [int(_OFFSET)]


def _send(data):
    # The host may interrupt us at any bytecode: retry until the message is out (at least once; the host
    # ignores a result it already has).
    while True:
        try:
            _ctl.write(data)
            return
        except KeyboardInterrupt:
            pass


def _halt(cause, ms):
    """The board resets: tell the host, which replaces this process; nothing runs after this."""
    _send(b'H %s %d\n' % (cause.encode(), ms))
    while True:
        try:
            _utime.sleep(3600)
        except KeyboardInterrupt:
            pass


# -- the board's clock -------------------------------------------------------------------------------------------


class _BoardTime:
    """The `time` module of the board: the Unix port's, with the RTC's time of day."""


_time = _BoardTime()
for _k in dir(_utime):
    if not _k.startswith('__'):
        setattr(_time, _k, getattr(_utime, _k))


def _now():
    return _utime.time() + _offset[0] + _ahead_ms[0] / 1000


# Time warp (board option): sleeps return at once and the board's clocks jump ahead by the time slept, so a
# node whose peers are all simulated inside the board (sensors; no modem on a pseudo-terminal, which keeps
# real time) runs its waits in no time. Busy loops still take real time.
_ahead_ms = [0]


def _warp_sleep_ms(ms):
    if ms > 0:
        _ahead_ms[0] += int(ms)


def _warp_sleep_us(us):
    if us > 0:
        _ahead_ms[0] += (int(us) + 999) // 1000


def _warp_sleep(s):
    _warp_sleep_ms(s * 1000)


def _warp_ticks_ms():
    return _utime.ticks_add(_utime.ticks_ms(), _ahead_ms[0])


def _warp_ticks_us():
    return _utime.ticks_add(_utime.ticks_us(), _ahead_ms[0] * 1000)


def _localtime(secs=None):
    return _utime.localtime(int(_now()) if secs is None else secs)


def _gmtime(secs=None):
    return _utime.gmtime(int(_now()) if secs is None else secs)


_time.time = _now
if _WARP == '1':
    _time.sleep_ms = _warp_sleep_ms
    _time.sleep_us = _warp_sleep_us
    _time.sleep = _warp_sleep
    _time.ticks_ms = _warp_ticks_ms
    _time.ticks_us = _warp_ticks_us
_time.localtime = _localtime
_time.gmtime = _gmtime
if hasattr(_utime, 'time_ns'):
    _time.time_ns = lambda: _utime.time_ns() + (_offset[0] * 1000 + _ahead_ms[0]) * 1000000


# -- the board's machine module ---------------------------------------------------------------------------------


class _RTC:
    """machine.RTC: memory() kept in /.rtc (kept over deep sleep and resets, lost on a power cycle)."""

    def __init__(self, *args):
        pass

    def memory(self, data=None):
        if data is None:
            try:
                with open(_RTC_FILE, 'rb') as f:
                    return f.read()
            except OSError:
                return b''
        if len(data) > _RTC_MEMORY_MAX:
            raise ValueError('buffer too long')
        with open(_RTC_FILE, 'wb') as f:
            f.write(bytes(data))
        return None

    def datetime(self, dt=None):
        # (year, month, day, weekday, hours, minutes, seconds, subseconds), as the ESP32 port
        if dt is None:
            t = _localtime()
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        secs = _utime.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0))
        _offset[0] = int(secs - _utime.time())
        _send(b'T %d\n' % _offset[0])
        return None

    def init(self, dt):
        self.datetime(dt)


class _WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout

    def feed(self):
        pass


class _BoardMachine:
    """The `machine` module of the board: the Unix port's, plus resets, sleeps and the RTC."""

    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5
    RTC = _RTC
    WDT = _WDT


_machine = _BoardMachine()
for _k in dir(_umachine):
    if not _k.startswith('__'):
        setattr(_machine, _k, getattr(_umachine, _k))


def _reset():
    _halt('hard_reset', 0)


def _deepsleep(ms=0):
    _halt('deep_sleep', int(ms))


def _lightsleep(ms=None):
    if ms is not None:
        _utime.sleep_ms(int(ms))


def _reset_cause():
    try:
        with open(_CAUSE_FILE) as f:
            return _CAUSES.get(f.read().strip(), 1)
    except OSError:
        return 1


_machine.reset = _reset
_machine.deepsleep = _deepsleep
_machine.lightsleep = _lightsleep
_machine.reset_cause = _reset_cause
_machine.unique_id = lambda: _NAME.encode()[:6]
_machine.freq = lambda *a: 160000000

# -- the board's os module ----------------------------------------------------------------------------------------
# VfsPosix lists (name, type, inode); a board's FAT or littlefs adds the size, which `mpremote ls` shows.


class _BoardOS:
    """The `os` module of the board: the Unix port's, with ilistdir() entries that carry the file size."""


_os = _BoardOS()
for _k in dir(os):
    if not _k.startswith('__'):
        setattr(_os, _k, getattr(os, _k))


def _ilistdir(path='.'):
    base = path if path.endswith('/') else path + '/'
    for entry in os.ilistdir(path):
        if len(entry) >= 4:
            yield entry
            continue
        size = 0
        if entry[1] & 0x8000:
            try:
                size = os.stat(base + entry[0])[6]
            except OSError:
                pass
        yield (entry[0], entry[1], entry[2], size)


_os.ilistdir = _ilistdir

# -- the citynode firmware's Unix hardware layer ----------------------------------------------------------------
# hal/unix.py "deep-sleeps" by saving state and returning (the emulator starts the next wake). The board wants to
# know how long the node asked to sleep, so the RTC can move on by that much before the next wake.

_HAL = 'citynode_fw.hal.unix'
_hooked = [False]


def _hook_hal(load):
    if _hooked[0]:
        return
    mod = sys.modules.get(_HAL)
    if mod is None and load:
        try:
            mod = __import__(_HAL, None, None, ('UnixHW',))
        except Exception:  # noqa: BLE001 - not deployed, or broken: main.py will say so itself
            return
    cls = getattr(mod, 'UnixHW', None) if mod is not None else None
    if cls is None:
        return
    inner = cls.deepsleep

    def deepsleep(self, ms):
        _send(b'Z %d %d\n' % (int(ms), _ahead_ms[0]))
        return inner(self, ms)

    cls.deepsleep = deepsleep
    _hooked[0] = True


# -- running code ------------------------------------------------------------------------------------------------

_globals = {'__name__': '__main__'}


def _traceback(e):
    buf = io.StringIO()
    sys.print_exception(e, buf)
    lines = [ln for ln in buf.getvalue().split('\n') if not ln.startswith(_SELF)]
    if len(lines) > 1 and lines[0].startswith('Traceback') and not lines[1].startswith('  File'):
        lines = lines[1:]  # only agent frames were left: a board prints no traceback header then
    return '\n'.join(lines)


def _source(kind, payload):
    """(source text, name, mode) for a command, or None when a file to run does not exist."""
    if kind == 'f':
        name = payload.decode()
        try:
            if os.stat(name)[0] & 0x4000:
                return None
        except OSError:
            return None
        with open(name) as f:
            return f.read(), name, 'exec'
    return payload.decode(), '<stdin>', 'single' if kind == 's' else 'exec'


def _execute(kind, payload):
    """Run one command as pyexec would: (status, traceback text)."""
    try:
        if kind == 'f' and payload == b'main.py':
            _hook_hal(True)
        src = _source(kind, payload)
        if src is None:
            return 'ok', ''
        text, name, mode = src
        if mode == 'exec':
            _globals['__file__'] = name  # pyexec stores __file__ for file input (MICROPY_MODULE___FILE__)
        code = compile(text, name, mode)
        text = None
        exec(code, _globals)
        return 'ok', ''
    except SystemExit:
        return 'exit', ''
    except BaseException as e:  # noqa: BLE001 - a board prints every uncaught exception and carries on
        return 'exc', _traceback(e)
    finally:
        _hook_hal(False)


def _read_exact(n):
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = _cmd.read(n - len(buf))
        except KeyboardInterrupt:
            continue
        if not chunk:
            raise EOFError
        buf.extend(chunk)
    return bytes(buf)


def _serve():
    while True:
        try:
            head = _cmd.readline()
        except KeyboardInterrupt:
            continue  # a Ctrl-C that arrived after the program it was meant for had ended
        if not head:
            return  # the host is gone
        kind, seq, n = head.split()
        payload = _read_exact(int(n))
        status, err = _execute(kind.decode(), payload)
        err = err.encode()
        _send(b'D %d %s %d\n' % (int(seq), status.encode(), len(err)) + err)


def _start():
    os.mount(os.VfsPosix(_FLASH), '/')
    os.chdir('/')
    sys.path[:] = ['', '.frozen', '/lib']
    sys.argv[:] = []
    sys.modules['time'] = sys.modules['utime'] = _time
    sys.modules['machine'] = sys.modules['umachine'] = _machine
    sys.modules['os'] = sys.modules['uos'] = _os
    banner = sys.version.split('; ', 1)[-1] + '; ' + _NAME + ' with ' + sys.implementation._machine
    banner = banner.encode()
    _send(b'V %d\n' % len(banner) + banner)


_start()
try:
    _serve()
except EOFError:
    pass
