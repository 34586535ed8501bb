# Radio backends, one per file, behind one small interface:
#
#   radio = Backend(uart_or_modem, clock, settings, state)
#     state: a dict the app keeps in RTC memory across deep sleep (ints, strings, bools only).
#   radio.join(budget_ms) -> bool
#     LoRaWAN: True when the session is up (asks the modem first, joins only if needed, with exponential
#     backoff across wakes and a cap). P2P: configures the radio and returns True.
#   radio.send(port, payload, confirmed=False) -> dict
#     {'ok': bool, 'error': None or reason, 'downlinks': [(port, bytes), ...], 'airtime_ms': int}
#   radio.sleep()
#     Put the modem in its lowest-power state until the next wake.
#
# Backends never raise on modem trouble: a silent or confused modem becomes {'ok': False, 'error': ...}.
