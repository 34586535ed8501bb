"""An emulated P2P receiver: a RAK3172 in LoRa P2P mode, receiving continuously, on a pseudo-terminal.

It is what the citynode bridge talks to when nodes send raw LoRa frames (codecs/citynode_codec/p2p.py): every
frame on the air that it hears is printed as "+EVT:RXP2P:<rssi>:<snr>:<HEX>", and AT+PSEND=<hex> from the bridge
puts a downlink frame on the air for the nodes.

RUI3 refuses AT+PSEND with AT_BUSY_ERROR while AT+PRECV=65534 is listening (service_lora_p2p_send: the radio is
busy unless the 65533 mode is on), so the receiver starts in 65533, "listen continuously and still allow TX".
Pass mode=PRECV_CONTINUOUS to get the 65534 behaviour. After a power cycle (replug) the modem boots with
reception off, as the firmware does; the host must send AT+PRECV again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .air import Air, P2PConfig, Position, Transmission
from .pty_device import PtyDevice, monotonic_ms
from .rak3172 import NWM_P2P, PRECV_CONTINUOUS_TX, RAK3172, Faults, Settings


class P2PReceiver:
    """A RAK3172 P2P receiver registered on `air` and served on a pseudo-terminal (`path`)."""

    def __init__(self, air: Air, *, link: str | Path | None = None, position: Position | None = None,
                 config: P2PConfig | None = None, mode: int = PRECV_CONTINUOUS_TX, name: str = "p2p-receiver",
                 echo: bool = False, seed: int = 0, faults: Faults | None = None,
                 firmware_version: str = "4.1.1", clock: Callable[[], int] = monotonic_ms):
        self.air = air
        self.config = config or P2PConfig()
        self.modem = RAK3172(name=name, air=air, seed=seed, faults=faults, firmware_version=firmware_version,
                             settings=Settings(nwm=NWM_P2P, p2p=self.config, echo=echo), booted=True,
                             now_ms=clock())
        self.modem.start_p2p_receiver(self.config, mode)
        air.register(self.modem, position, name)
        try:
            self.pty = PtyDevice(self.modem, link=link, clock=clock)
        except BaseException:
            air.unregister(self.modem)
            raise

    @property
    def path(self) -> Path:
        """The serial port to open (the stable link when one was given)."""
        return self.pty.path

    @property
    def sent(self) -> list[Transmission]:
        """Frames this receiver put on the air (downlinks from the host), oldest first."""
        return [t for t in self.air.transmissions if t.sender == self.modem.name]

    def unplug(self) -> None:
        """The receiver's USB adapter disappears."""
        self.pty.unplug()

    def replug(self) -> None:
        """It comes back, freshly powered (reception off until the host sends AT+PRECV)."""
        self.pty.replug()

    def close(self) -> None:
        """Leave the air and release the pseudo-terminal."""
        self.air.unregister(self.modem)
        self.pty.close()

    def __enter__(self) -> P2PReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
