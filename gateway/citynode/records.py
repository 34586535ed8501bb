"""The records that flow through the bridge, one way:

    source -> Uplink | Rejected -> pipeline -> [Publication, ...] -> outbox -> MQTT sink -> platform

Sources (ChirpStack, The Things Stack, the serial P2P receiver) all turn what they receive into the same
`Uplink`, or into a `Rejected` that says why it is not a citynode uplink (it goes to the dead-letter topic).
The pipeline turns an Uplink into `Publication`s: plain (topic, payload, retain) triples that the outbox
stores and the MQTT sink publishes. Nothing in here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class RxInfo:
    """One gateway (or the serial receiver) that heard the uplink."""

    gateway_id: str
    rssi_dbm: float | None = None
    snr_db: float | None = None


@dataclass(frozen=True)
class Uplink:
    """A radio uplink as a network server or receiver reports it, independent of where it came from."""

    source: str  # "chirpstack", "tts" or "serial"
    dev_eui: str  # 16 lowercase hex digits
    fport: int
    payload: bytes
    received_at: datetime  # UTC, aware: the network server's time, else the bridge's receipt time
    fcnt: int | None = None  # LoRaWAN FCntUp or the P2P frame counter; None when the source has none
    device_name: str | None = None  # the network server's name for the device, if it sent one
    rx: tuple[RxInfo, ...] = ()
    spreading_factor: int | None = None
    frequency_hz: int | None = None
    confirmed: bool = False
    source_id: str | None = None  # the source's own id for this uplink (deduplicationId, correlation id)
    raw: bytes | None = None  # the message exactly as received, for the dead-letter topic


@dataclass(frozen=True)
class Rejected:
    """Something a source received that is not a usable citynode uplink, and why."""

    source: str
    reason: str  # short, stable reason code, e.g. "invalid_json", "not_citynode", "bad_mic", "replayed_fcnt"
    detail: str  # one line for people
    received_at: datetime
    dev_eui: str | None = None
    raw: bytes | None = None


@dataclass(frozen=True)
class Publication:
    """One MQTT message for the platform. `key` makes it idempotent: the same uplink always yields the
    same keys, so a redelivered uplink never becomes a second, different message."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1
    key: str = ""  # message id for readings and alerts; for retained state, "<topic>" (latest wins)


@dataclass(frozen=True)
class Downlink:
    """A downlink to a node, already encoded by the codec."""

    dev_eui: str
    fport: int
    payload: bytes
    confirmed: bool = False
    request_id: str | None = None
    seq: int | None = None
    via: str | None = None  # the source to send it through ("chirpstack", "tts", "serial"), if known


# A source hands every Uplink or Rejected to this callback, together with a function to call once the
# result is safely stored (the outbox committed): sources that can, acknowledge their input only then.
Emit = Callable[[Uplink | Rejected, Callable[[], None]], None]


@dataclass
class SourceStats:
    """Counters a source keeps for the metrics endpoint."""

    received: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    connected: bool = False
