# Hardware layer contract.
#
# Nothing outside hal/ imports machine, esp32 or time. Drivers, radios and the app receive these objects
# from a hardware layer (hal/esp32.py on a board, hal/unix.py under the MicroPython Unix port), so the
# same code runs on a board, in emulation and in tests with fakes:
#
#   clock     ticks_ms() -> int, ticks_us() -> int, ticks_diff(a, b) -> int (a - b, wrap-safe),
#             sleep_ms(ms), sleep_us(us), time() -> int seconds that keep counting across deep sleep
#   pin       value([v]) -> 0/1, on(), off()               (machine.Pin subset)
#   adc       read_uv() -> int microvolts, calibrated       (machine.ADC subset)
#   uart      write(buf) -> int, read([n]) -> bytes or None, any() -> int   (machine.UART subset)
#   pulse_us  pulse_us(pin, level, timeout_us) -> int, machine.time_pulse_us semantics:
#             -2 timed out waiting for the pulse, -1 timed out during it
