# LoRa point-to-point on an ESP32 driving an SX1262/SX127x through micropython-lib's `lora` package (sync API),
# carrying the same citynode P2P frames, counters and receive window as rak3172_p2p (P2PLink).
#
# micropython-lib micropython/lora (README.md; lora/modem.py; lora-sync/lora/sync_modem.py):
#   modem.configure(lora_cfg)              keys left out keep their value; raises ConfigError (a ValueError)
#   modem.send(packet)                     blocks until sent, returns the ticks_ms of TX done
#   modem.recv(timeout_ms) -> RxPacket | None   a bytearray with .rssi (dBm) and .snr (dB x 4; lora-sx126x
#                                          reports the raw GetPacketStatus byte, so values above 127 are negative)
#   modem.sleep()                          lowest power; the next operation wakes the chip
# The hardware layer builds the modem (pins, SPI, TCXO) and passes it in; nothing here imports machine or lora.
# Driver failures (OSError from SPI, RuntimeError "BUSY timeout", ConfigError) become results, never exceptions.

from .rak3172_p2p import P2PLink

_DRIVER_ERRORS = (OSError, RuntimeError, ValueError)


def _result():
    return {'ok': False, 'error': None, 'downlinks': [], 'airtime_ms': 0, 'rssi': None, 'snr': None}


def _snr_db(raw):
    # RxPacket.snr is in dB x 4 (lora/modem.py); sx126x leaves the status byte unsigned (SX1261/2 DS 13.5.3
    # GetPacketStatus: SnrPkt is signed). Rounded to whole dB like the RAK3172 reports it.
    if not isinstance(raw, int):
        return None
    if raw > 127:
        raw -= 256
    return (raw + 2) // 4


class SX126xP2P:
    """P2P backend on a micropython-lib lora modem. Constructor: (modem, clock, settings, state, next_fcnt=None);
    settings and state keys as P2PLink (rak3172_p2p.py)."""

    def __init__(self, modem, clock, settings, state, next_fcnt=None):
        self.modem = modem
        self.clock = clock
        self.settings = settings
        self.state = state
        self.link = P2PLink(settings, state, next_fcnt)
        self.last_error = None
        self._configured = False

    def join(self, budget_ms=0):
        """Configure the radio from settings (every wake: the driver object is new after deep sleep)."""
        if self._configured:
            return True
        err = self.link.settings_error()
        if err:
            self.last_error = err
            return False
        try:
            self.modem.configure(self.link.lora_cfg())
        except _DRIVER_ERRORS:
            self.last_error = 'configure'
            return False
        self._configured = True
        return True

    def send(self, port, payload, confirmed=False):
        """Send one citynode P2P uplink (no acknowledgement in P2P: `confirmed` is ignored), then listen
        p2p_rx_ms for a downlink. Returns the dict described in radio/__init__.py plus rssi/snr."""
        res = _result()
        link = self.link
        airtime, err = link.check(port, payload, self.clock.time())
        if err:
            res['error'] = err
            return res
        if not self.join():
            res['error'] = self.last_error
            return res
        frame = link.uplink(port, payload)
        if frame is None:
            res['error'] = 'fcnt'
            return res
        try:
            self.modem.send(frame)
        except _DRIVER_ERRORS:
            res['error'] = 'tx_error'
            return res
        link.duty.record(self.clock.time(), airtime)
        res['airtime_ms'] = airtime
        res['ok'] = True
        if link.rx_ms > 0:
            self._receive(res)
        return res

    def _receive(self, res):
        clock = self.clock
        start = clock.ticks_ms()
        limit = self.link.rx_ms
        while True:
            left = limit - clock.ticks_diff(clock.ticks_ms(), start)
            if left <= 0:
                return
            try:
                pkt = self.modem.recv(timeout_ms=left)
            except _DRIVER_ERRORS:
                return
            if pkt is None:
                return
            if getattr(pkt, 'crc_error', False):
                continue
            dl = self.link.accept(pkt)
            if dl is not None:
                res['downlinks'].append(dl)
                res['rssi'] = getattr(pkt, 'rssi', None)
                res['snr'] = _snr_db(getattr(pkt, 'snr', None))
                return

    def sleep(self):
        try:
            self.modem.sleep()
        except _DRIVER_ERRORS:
            return False
        return True
