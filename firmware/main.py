# citynode node: one wake cycle, then deep sleep. On a board MicroPython runs this after boot.py on every
# wake; under the Unix port (emulated boards) the emulator runs it and "deep sleep" returns to it.
import sys

from citynode_fw.app import cycle

if sys.platform == 'linux':
    from citynode_fw.hal.unix import UnixHW as Hardware
else:
    from citynode_fw.hal.esp32 import ESP32HW as Hardware


def main():
    hw = Hardware()
    ms = cycle.run(hw)
    hw.deepsleep(ms)  # never returns on a board
    return ms


main()
