# LoRa time on air and the EU868 duty-cycle rule, in integer maths (runs the same on MicroPython and CPython).
#
# Time on air: Semtech SX1276/77/78/79 datasheet §4.1.1.7 "Time on air" and AN1200.13 "LoRa Modem Designer's
# Guide" (the same formula as SX1261/2 datasheet §6.1.4 for SF7..SF12):
#   Tsym      = 2^SF / BW
#   Tpreamble = (n_preamble + 4.25) * Tsym
#   n_payload = 8 + max(ceil((8*PL - 4*SF + 28 + 16*CRC - 20*IH) / (4*(SF - 2*DE))) * (CR + 4), 0)
#   ToA       = Tpreamble + n_payload * Tsym
# with an explicit header (IH = 0), CRC on, coding rate 4/5 and low data rate optimisation (DE) whenever a symbol
# lasts 16 ms or more (SF11/SF12 at 125 kHz; the datasheet mandates it above 16 ms, micropython-lib's lora driver
# switches it on at >= 16 ms, lora/modem.py _get_ldr_en). Check value (AN1200.13 calculator): 13 PHY bytes at
# SF9/125 kHz -> 164.864 ms.
#
# LoRaWAN frames carry 13 bytes of MAC overhead (MHDR 1 + FHDR 7 + FPort 1 + MIC 4, LoRaMac-node
# LoRaMacMessageTypes.h LORAMAC_FRAME_PAYLOAD_OVERHEAD_SIZE); citynode P2P frames already include theirs.
#
# Duty cycle: ETSI EN 300 220 / ERC REC 70-03 sub-bands as LoRaMac-node RegionEU868 applies them: after a
# transmission of ToA the sub-band stays closed for ToA * (1/dc - 1), so on a 1 % sub-band transmissions start no
# more often than every 100 x ToA. The tracker keeps two ints in the app's state dict (RTC memory).

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


LORAWAN_OVERHEAD = const(13)  # MHDR + FHDR (no FOpts) + FPort + MIC
_PREAMBLE = const(8)  # LoRaWAN preamble length (RP002 regional parameters)
_LDRO_SYM_US = const(16000)  # low data rate optimisation from this symbol time on (SX1276 DS 4.1.1.6)

# EU868 data rates (RP002-1.0.x Table "EU863-870 Data Rate"): DR -> (SF, bandwidth Hz). DR7 is FSK 50 kbps; its
# airtime is bounded here by SF7/250 kHz, which is slower, so the estimate stays on the safe side.
_EU868_DR = ((12, 125000), (11, 125000), (10, 125000), (9, 125000), (8, 125000), (7, 125000), (7, 250000),
             (7, 250000))
# Largest application payload N per DR, repeater-compatible (LoRaMac-node RegionEU868.h
# MaxPayloadOfDatarateRepeaterEU868; TTN fair-use post): 51/51/51/115/222/222/222/222.
_EU868_MAX_PAYLOAD = (51, 51, 51, 115, 222, 222, 222, 222)

# ERC REC 70-03 sub-bands as LoRaMac-node RegionEU868.c VerifyRfFreq/EU868_BAND0..5 use them:
# (low kHz, high kHz, 1/duty). 869.4-869.65 MHz is the 10 % band of RX2 (869.525 MHz).
_EU868_SUBBANDS = (
    (863000, 865000, 1000),  # 0.1 %
    (865000, 868000, 100),  # 1 %
    (868000, 868600, 100),  # g1, 1 %: default channels 868.1/868.3/868.5
    (868700, 869200, 1000),  # g2, 0.1 %
    (869400, 869650, 10),  # g3, 10 %
    (869700, 870000, 100),  # g4, 1 %
)


def symbol_us(sf, bw_hz):
    """One LoRa symbol in microseconds: 2^SF / BW (floor; exact for 125/250/500 kHz)."""
    return (1000000 << sf) // bw_hz


def time_on_air_us(sf, bw_hz, phy_len, cr=5, preamble=_PREAMBLE, crc=True, explicit=True):
    """Time on air in microseconds of `phy_len` bytes on the radio (SX1276 DS §4.1.1.7).

    cr is the coding-rate denominator 5..8 (4/5..4/8), the form micropython-lib's lora_cfg uses.
    """
    sym = symbol_us(sf, bw_hz)
    de = 1 if sym >= _LDRO_SYM_US else 0
    bits = 8 * phy_len - 4 * sf + 28 + (16 if crc else 0) - (0 if explicit else 20)
    per = 4 * (sf - 2 * de)
    n = 0
    if bits > 0:
        n = (bits + per - 1) // per * cr  # ceil(bits / per) * (CR + 4), with cr already CR + 4
    # Count in quarter symbols so the preamble's 4.25 stays an integer: 4 * (preamble + 8 + n) + 17
    return (4 * (preamble + 8 + n) + 17) * sym // 4


def time_on_air_ms(sf, bw_hz, phy_len, cr=5, preamble=_PREAMBLE, crc=True, explicit=True):
    """Time on air in whole milliseconds, rounded up (what duty-cycle bookkeeping needs)."""
    return (time_on_air_us(sf, bw_hz, phy_len, cr, preamble, crc, explicit) + 999) // 1000


def dr_params(dr):
    """(SF, bandwidth Hz) of an EU868 data rate, or None when dr is not 0..7."""
    if isinstance(dr, int) and not isinstance(dr, bool) and 0 <= dr < len(_EU868_DR):
        return _EU868_DR[dr]
    return None


def max_payload(dr):
    """Largest EU868 application payload at data rate `dr` (51 for unknown DRs, the smallest limit)."""
    if dr_params(dr) is None:
        return _EU868_MAX_PAYLOAD[0]
    return _EU868_MAX_PAYLOAD[dr]


def lorawan_airtime_ms(dr, app_len):
    """Airtime of a LoRaWAN uplink carrying `app_len` application bytes at EU868 `dr` (13 bytes MAC overhead).

    Unknown DRs count as DR0, the slowest, so duty-cycle decisions err on the safe side.
    """
    p = dr_params(dr) or _EU868_DR[0]
    return time_on_air_ms(p[0], p[1], app_len + LORAWAN_OVERHEAD)


def subband_divisor(freq_hz):
    """1/duty of the EU868 sub-band holding `freq_hz` (100 for 1 %); 1000 (0.1 %) for the gaps between
    sub-bands inside 863-870 MHz; 0 outside EU868, where this rule does not apply."""
    khz = freq_hz // 1000
    if khz < 863000 or khz > 870000:
        return 0
    for lo, hi, div in _EU868_SUBBANDS:
        if lo <= khz <= hi:
            return div
    return 1000


class DutyCycle:
    """Per-sub-band transmit spacing kept in the state dict: state[key + '_s'] is the start (clock.time()
    seconds) of the last transmission and state[key + '_ms'] its airtime.

    The next transmission may start `divisor` x the longer of the two airtimes after the last one started: the
    last one's off-time (ETSI EN 300 220, as LoRaMac-node's band TimeOff) and, to stay on the safe side, never
    more often than every `divisor` x its own airtime either.
    """

    def __init__(self, state, divisor=100, key='dc'):
        self.state = state
        self.divisor = divisor
        self._ks = key + '_s'
        self._kms = key + '_ms'

    def record(self, now_s, airtime_ms):
        """Note a transmission of `airtime_ms` that started at `now_s`."""
        self.state[self._ks] = now_s
        self.state[self._kms] = airtime_ms

    def allowed_at(self, airtime_ms):
        """Earliest clock.time() second at which a transmission of `airtime_ms` may start."""
        last = self.state.get(self._ks)
        if last is None or not self.divisor:
            return 0
        longest = self.state.get(self._kms, 0)
        if airtime_ms > longest:
            longest = airtime_ms
        return last + (self.divisor * longest + 999) // 1000

    def wait_s(self, now_s, airtime_ms):
        """Seconds to wait before a transmission of `airtime_ms` may start at `now_s` (0: send now).

        A last transmission more than an hour in the future means the clock was set back (RTC lost): the record
        is dropped rather than blocking the node for that long.
        """
        last = self.state.get(self._ks)
        if last is not None and last > now_s + 3600:
            self.state.pop(self._ks, None)
            self.state.pop(self._kms, None)
            return 0
        wait = self.allowed_at(airtime_ms) - now_s
        return wait if wait > 0 else 0
