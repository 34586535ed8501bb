"""The radio medium in emulation: LoRa time on air, LoRaWAN regional data rates, a seeded link model, and the
shared air that carries raw LoRa (P2P) frames from senders to registered receivers.

Nothing here does I/O or reads the clock: callers pass times in milliseconds, so the same objects serve real-time
pseudo-terminals and virtual-time fleets.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from typing import Protocol

# -- time on air ---------------------------------------------------------------------------------------------------

LORAWAN_OVERHEAD = 13  # MHDR 1 + FHDR 7 + FPort 1 + MIC 4 (LoRaMac-node LoRaMacMessageTypes.h)
JOIN_REQUEST_LEN = 23  # MHDR 1 + JoinEUI 8 + DevEUI 8 + DevNonce 2 + MIC 4 (LoRaWAN 1.0.x §6.2.4)
JOIN_ACCEPT_LEN = 17  # without CFList (LoRaWAN 1.0.x §6.2.5)


def lora_time_on_air_ms(length: int, sf: int, bw_hz: int = 125_000, cr: int = 1, preamble: int = 8,
                        crc: bool = True, explicit_header: bool = True) -> float:
    """Time on air of a LoRa frame of `length` PHY bytes (Semtech SX1276 datasheet §4.1.1.7, AN1200.13).

    cr is 1..4 for 4/5..4/8. Low-data-rate optimisation is on when a symbol lasts more than 16 ms, as the
    datasheet mandates. SF5/SF6 use the same formula (an approximation for SX126x).
    """
    if not 5 <= sf <= 12 or bw_hz <= 0 or not 1 <= cr <= 4 or length < 0:
        raise ValueError(f"bad LoRa parameters: sf={sf} bw_hz={bw_hz} cr={cr} length={length}")
    t_sym = (1 << sf) / bw_hz * 1000.0
    de = 1 if t_sym > 16.0 else 0
    t_preamble = (preamble + 4.25) * t_sym
    num = 8 * length - 4 * sf + 28 + (16 if crc else 0) - (0 if explicit_header else 20)
    n_payload = 8 + max(math.ceil(num / (4 * (sf - 2 * de))) * (cr + 4), 0)
    return t_preamble + n_payload * t_sym


def fsk_time_on_air_ms(length: int, bitrate: int = 50_000) -> float:
    """Time on air of an FSK frame: 5 preamble, 3 sync, 1 length, payload, 2 CRC bytes (LoRaWAN DR7 in EU868)."""
    return (5 + 3 + 1 + length + 2) * 8 / bitrate * 1000.0


# -- LoRaWAN regions ----------------------------------------------------------------------------------------------

FSK = None  # a data rate that is not LoRa


@dataclass(frozen=True)
class Region:
    """What the emulators need of a LoRaWAN region (RP002-1.0.x; LoRaMac-node src/mac/region/)."""

    name: str  # "EU868", as ChirpStack's region_common_name
    config_id: str  # "eu868", as ChirpStack's region_config_id
    data_rates: tuple[tuple[int, int] | None, ...]  # uplink DR -> (spreading factor, bandwidth Hz), FSK = None
    max_payload: tuple[int, ...]  # largest application payload N per DR (no repeater, no FOpts)
    uplink_hz: tuple[int, ...]  # channels an uplink hops over
    rx2: tuple[int, int]  # (spreading factor, bandwidth Hz) of the RX2 window

    def modulation(self, dr: int) -> tuple[int, int] | None:
        """(sf, bw_hz) of `dr`, None for FSK; raises ValueError for a data rate the region lacks."""
        if not 0 <= dr < len(self.data_rates):
            raise ValueError(f"{self.name} has no uplink DR{dr}")
        return self.data_rates[dr]

    def time_on_air_ms(self, app_len: int, dr: int, *, downlink: bool = False) -> float:
        """Time on air of a data frame carrying `app_len` application bytes at `dr` (no CRC on downlinks)."""
        length = app_len + LORAWAN_OVERHEAD
        mod = self.modulation(dr)
        if mod is None:
            return fsk_time_on_air_ms(length)
        return lora_time_on_air_ms(length, mod[0], mod[1], crc=not downlink)


_EU_DRS = ((12, 125_000), (11, 125_000), (10, 125_000), (9, 125_000), (8, 125_000), (7, 125_000))
_AU_DRS = _EU_DRS + ((8, 500_000),)
_EU_N = (51, 51, 51, 115, 242, 242, 242, 242)

REGIONS: dict[str, Region] = {r.name: r for r in (
    Region("EU868", "eu868", _EU_DRS + ((7, 250_000), FSK), _EU_N, (868_100_000, 868_300_000, 868_500_000),
           (12, 125_000)),
    Region("EU433", "eu433", _EU_DRS + ((7, 250_000), FSK), _EU_N, (433_175_000, 433_375_000, 433_575_000),
           (12, 125_000)),
    Region("RU864", "ru864", _EU_DRS + ((7, 250_000), FSK), _EU_N, (868_900_000, 869_100_000), (12, 125_000)),
    Region("IN865", "in865", _EU_DRS, _EU_N[:6], (865_062_500, 865_402_500, 865_985_000), (10, 125_000)),
    Region("KR920", "kr920", _EU_DRS, _EU_N[:6], (922_100_000, 922_300_000, 922_500_000), (12, 125_000)),
    Region("CN470", "cn470", _EU_DRS, _EU_N[:6], (470_300_000, 470_500_000, 470_700_000), (12, 125_000)),
    Region("US915", "us915", ((10, 125_000), (9, 125_000), (8, 125_000), (7, 125_000), (8, 500_000)),
           (11, 53, 125, 242, 242), tuple(903_900_000 + 200_000 * i for i in range(8)), (12, 500_000)),
    Region("AU915", "au915", _AU_DRS, (51, 51, 51, 115, 242, 242, 242),
           tuple(916_800_000 + 200_000 * i for i in range(8)), (12, 500_000)),
    Region("LA915", "la915", _AU_DRS, (51, 51, 51, 115, 242, 242, 242),
           tuple(916_800_000 + 200_000 * i for i in range(8)), (12, 500_000)),
    *(Region(f"AS923-{n}", f"as923_{n}" if n > 1 else "as923", _EU_DRS + ((7, 250_000), FSK), _EU_N,
             (923_200_000, 923_400_000), (10, 125_000)) for n in (1, 2, 3, 4)),
)}

# AT+BAND codes (RUI3 atcmd.c help string)
BAND_REGIONS: dict[int, str] = {0: "EU433", 1: "CN470", 2: "RU864", 3: "IN865", 4: "EU868", 5: "US915",
                                6: "AU915", 7: "KR920", 8: "AS923-1", 9: "AS923-2", 10: "AS923-3",
                                11: "AS923-4", 12: "LA915"}


# -- link model ----------------------------------------------------------------------------------------------------

# Demodulation floor (SNR, dB) per spreading factor, SX1276 datasheet table 13.
SNR_FLOOR_DB = {5: -5.0, 6: -5.0, 7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}


@dataclass(frozen=True)
class Position:
    """A point on Earth: WGS84 degrees and metres."""

    latitude: float
    longitude: float
    altitude: float = 0.0

    def distance_m(self, other: Position) -> float:
        """Great-circle distance (haversine) combined with the height difference."""
        r = 6_371_000.0
        p1, p2 = math.radians(self.latitude), math.radians(other.latitude)
        dp, dl = p2 - p1, math.radians(other.longitude - self.longitude)
        a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        ground = 2 * r * math.asin(math.sqrt(min(1.0, a)))
        return math.hypot(ground, other.altitude - self.altitude)


@dataclass(frozen=True)
class Link:
    """One reception: RSSI (dBm), SNR (dB) and whether the frame could be demodulated."""

    rssi: int
    snr: float
    heard: bool


@dataclass(frozen=True)
class LinkModel:
    """Log-distance path loss with Gaussian shadowing: PL(d) = pl_1km_db + 10·n·log10(d / 1 km) + X(σ).

    The defaults (128 dB at 1 km, n = 3.5) are a typical urban 868 MHz fit; a node 100 m away reads about
    -80 dBm, one 2 km away about -125 dBm (heard at SF9 and slower only). A missing position counts as
    `default_distance_m` away.
    """

    tx_power_dbm: float = 14.0
    pl_1km_db: float = 128.0
    exponent: float = 3.5
    shadowing_db: float = 3.0
    default_distance_m: float = 300.0
    noise_figure_db: float = 6.0
    min_distance_m: float = 10.0

    def link(self, rng: random.Random, a: Position | None, b: Position | None, sf: int, bw_hz: int,
             tx_power_dbm: float | None = None) -> Link:
        """Draw one reception between `a` and `b` with `rng` (seeded by the caller for repeatable runs)."""
        d = a.distance_m(b) if a is not None and b is not None else self.default_distance_m
        d = max(d, self.min_distance_m)
        loss = self.pl_1km_db + 10 * self.exponent * math.log10(d / 1000.0) + rng.gauss(0.0, self.shadowing_db)
        power = self.tx_power_dbm if tx_power_dbm is None else tx_power_dbm
        rssi = power - loss
        noise = -174.0 + 10 * math.log10(bw_hz) + self.noise_figure_db
        snr = min(rssi - noise, 13.5)  # LoRa SNR readings saturate around +13 dB
        heard = snr >= SNR_FLOOR_DB.get(sf, -20.0)
        # A packet's RSSI includes the noise power, so it never reads below the noise floor.
        rssi_read = max(rssi, noise)
        return Link(rssi=int(round(rssi_read)), snr=round(snr * 4) / 4, heard=heard)


# -- the P2P air ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class P2PConfig:
    """RUI3 AT+P2P parameters: frequency Hz, spreading factor, bandwidth kHz, coding rate 0..3 (4/5..4/8),
    preamble symbols, TX power dBm. Defaults are RUI3's ("868000000:7:125:0:8:14")."""

    freq_hz: int = 868_000_000
    sf: int = 7
    bw_khz: int = 125
    cr: int = 0
    preamble: int = 8
    txp_dbm: int = 14

    def time_on_air_ms(self, length: int) -> float:
        """Time on air of a raw LoRa frame of `length` bytes (explicit header, CRC on)."""
        return lora_time_on_air_ms(length, self.sf, self.bw_khz * 1000, self.cr + 1, self.preamble)

    def same_channel(self, other: P2PConfig) -> bool:
        """Whether a radio set to `other` demodulates what this configuration sends."""
        return (self.freq_hz, self.sf, self.bw_khz) == (other.freq_hz, other.sf, other.bw_khz)


class AirReceiver(Protocol):
    """What the air needs of a receiver. Called from the sender's thread: must not block or call back."""

    def receive_air(self, frame: bytes, rssi: int, snr: int, config: P2PConfig, end_ms: int) -> None: ...


@dataclass(frozen=True)
class Transmission:
    """One frame put on the air, and who got it."""

    sender: str
    frame: bytes
    end_ms: int
    config: P2PConfig
    delivered_to: tuple[str, ...]
    lost_at: tuple[str, ...]
    duplicated_at: tuple[str, ...]


@dataclass
class _Member:
    receiver: AirReceiver | None
    position: Position | None
    name: str


@dataclass
class Air:
    """The shared medium for raw LoRa frames.

    Senders call transmit(sender, frame, end_ms, config) when a frame has finished going out; every registered
    receiver other than the sender that hears it (link model, seeded `loss`) gets receive_air(...) with an RSSI
    and SNR, and with probability `duplicate` a second copy shortly after (as a repeater would cause).
    Thread-safe; receivers are called outside the air's lock.
    """

    seed: int = 0
    loss: float = 0.0
    duplicate: float = 0.0
    link_model: LinkModel = field(default_factory=LinkModel)
    _members: dict[int, _Member] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)
    transmissions: list[Transmission] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0 or not 0.0 <= self.duplicate <= 1.0:
            raise ValueError(f"loss and duplicate are probabilities, got {self.loss} and {self.duplicate}")
        self._rng = random.Random(self.seed)

    def register(self, receiver: AirReceiver, position: Position | None = None, name: str = "") -> None:
        """Let `receiver` hear frames from now on; `position` feeds the link model."""
        with self._lock:
            self._members[id(receiver)] = _Member(receiver, position, name or _name_of(receiver))

    def place(self, sender: object, position: Position | None, name: str = "") -> None:
        """Give a transmit-only `sender` a position (receivers get theirs in register())."""
        with self._lock:
            member = self._members.get(id(sender))
            if member is not None:
                member.position = position
            else:
                self._members[id(sender)] = _Member(None, position, name or _name_of(sender))

    def unregister(self, receiver: object) -> None:
        """Stop delivering to `receiver`."""
        with self._lock:
            self._members.pop(id(receiver), None)

    def transmit(self, sender: object, frame: bytes, end_ms: int, config: P2PConfig) -> int:
        """Put `frame` on the air, finished at `end_ms`; returns how many receivers got it."""
        frame = bytes(frame)
        deliveries: list[tuple[AirReceiver, int, int, int]] = []
        delivered: list[str] = []
        lost: list[str] = []
        duplicated: list[str] = []
        with self._lock:
            me = self._members.get(id(sender))
            origin = me.position if me else None
            toa = int(math.ceil(config.time_on_air_ms(len(frame))))
            for key, member in self._members.items():
                if key == id(sender) or member.receiver is None:
                    continue
                link = self.link_model.link(self._rng, origin, member.position, config.sf, config.bw_khz * 1000,
                                            config.txp_dbm)
                if not link.heard or self._rng.random() < self.loss:
                    lost.append(member.name)
                    continue
                snr = int(link.snr)
                deliveries.append((member.receiver, link.rssi, snr, end_ms))
                delivered.append(member.name)
                if self._rng.random() < self.duplicate:
                    deliveries.append((member.receiver, link.rssi, snr, end_ms + toa + 20))
                    duplicated.append(member.name)
            self.transmissions.append(Transmission(me.name if me else _name_of(sender), frame, end_ms, config,
                                                   tuple(delivered), tuple(lost), tuple(duplicated)))
        for receiver, rssi, snr, at in deliveries:
            receiver.receive_air(frame, rssi, snr, config, at)
        return len(delivered)


def _name_of(obj: object) -> str:
    return str(getattr(obj, "name", "") or f"{type(obj).__name__}@{id(obj):x}")
