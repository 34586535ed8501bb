# Sensor drivers, one per file. The contract every driver keeps:
#
# - The constructor stores buses and settings and does no I/O, so building a driver never fails because
#   hardware is missing.
# - measure(...) never raises. It returns a dict with spec field names (codecs/spec/citynode.json) for the
#   values it produced (None when it could not), 'flags': a list of spec flag names it raises
#   ('sensor_fault', 'out_of_range', 'uncalibrated', 'tilt'), and 'error': None or a short reason for the
#   node's log ('timeout', 'checksum', 'stuck', ...). Extra raw values for calibration and diagnostics use
#   keys starting with 'raw_'.
