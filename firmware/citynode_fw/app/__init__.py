# Pure node logic: no hardware imports. Scheduling, filters, thresholds, batching, downlink handling and
# payload building take values and return decisions; the hardware layer does the I/O.
