"""The emulated P2P receiver on a pseudo-terminal, and the shared air that carries raw LoRa frames."""

from __future__ import annotations

import re
import time

import pytest
import serial

from citynode.emulation.air import Air, P2PConfig, Position
from citynode.emulation.p2p_receiver import P2PReceiver
from citynode.emulation.pty_device import monotonic_ms
from citynode.emulation.rak3172 import NWM_P2P, PRECV_CONTINUOUS, RAK3172, Settings
from citynode_codec import p2p

KEY = bytes(range(16))
NODE_EUI = bytes.fromhex("AC1F09FFFE0000A1")
RXP2P = re.compile(rb"\+EVT:RXP2P:(-?\d+):(-?\d+):([0-9A-F]+)\r\n")


class Node:
    """A sender on the air (a node's radio), placed at a position."""

    name = "node"


class Ear:
    """A bare receiver that records what reaches it."""

    def __init__(self, name: str = "ear"):
        self.name = name
        self.frames: list[tuple[bytes, int, int]] = []

    def receive_air(self, frame, rssi, snr, config, end_ms):
        self.frames.append((frame, rssi, end_ms))


def port(receiver: P2PReceiver) -> serial.Serial:
    return serial.Serial(str(receiver.path), 115200, timeout=3)


def uplink_frame(fcnt: int = 1) -> bytes:
    return p2p.build(p2p.UPLINK, NODE_EUI, fcnt, 2, b"\x01\x02\x03", KEY)


def pump(modem: RAK3172, text: bytes, limit_s: float = 3.0) -> bytes:
    """Run a modem that no pty serves in real time until it has printed `text`."""
    out, deadline = b"", time.monotonic() + limit_s
    while text not in out:
        assert time.monotonic() < deadline, f"{text!r} not printed; got {out!r}"
        due = modem.next_event_ms()
        if due is not None and due > monotonic_ms():
            time.sleep(min(due - monotonic_ms(), 20) / 1000)
        elif due is None:
            time.sleep(0.005)
        out += modem.read(monotonic_ms())
    return out


def test_frames_from_the_air_are_printed_as_rxp2p_lines(tmp_path):
    air = Air()
    node = Node()
    air.place(node, Position(52.5200, 13.4050))
    with P2PReceiver(air, link=tmp_path / "ttyP2P", position=Position(52.5209, 13.4050)) as rx, port(rx) as s:
        frame = uplink_frame()
        assert air.transmit(node, frame, monotonic_ms(), P2PConfig()) == 1
        line = s.read_until(b"\r\n")
    m = RXP2P.fullmatch(line)
    assert m, line
    assert bytes.fromhex(m.group(3).decode()) == frame
    assert -100 < int(m.group(1)) < -30  # about 100 m away
    assert p2p.verify(bytes.fromhex(m.group(3).decode()), KEY)[2] == 1


def test_a_node_modem_psend_reaches_the_receiver(tmp_path):
    air = Air()
    node = RAK3172(name="node", air=air, booted=True, now_ms=monotonic_ms(), settings=Settings(nwm=NWM_P2P))
    with P2PReceiver(air, link=tmp_path / "ttyP2P") as rx, port(rx) as s:
        frame = uplink_frame(7)
        node.write(f"AT+PSEND={frame.hex()}\r\n".encode(), monotonic_ms())
        assert pump(node, b"+EVT:TXP2P DONE\r\n") == b"OK\r\n+EVT:TXP2P DONE\r\n"
        assert RXP2P.fullmatch(s.read_until(b"\r\n")).group(3) == frame.hex().upper().encode()


def test_host_psend_goes_on_the_air_to_listening_nodes(tmp_path):
    air = Air()
    node = RAK3172(name="node", air=air, booted=True, now_ms=monotonic_ms(), settings=Settings(nwm=NWM_P2P))
    air.register(node)
    node.write(b"AT+PRECV=65534\r\n", monotonic_ms())
    assert pump(node, b"OK\r\n") == b"OK\r\n"
    down = p2p.build(p2p.DOWNLINK, NODE_EUI, 1, 10, b"\x05", KEY)
    with P2PReceiver(air, link=tmp_path / "ttyP2P") as rx, port(rx) as s:
        s.write(f"AT+PSEND={down.hex()}\r\n".encode())
        assert s.read_until(b"DONE\r\n") == b"OK\r\n+EVT:TXP2P DONE\r\n"
        [sent] = rx.sent
    assert sent.frame == down and sent.delivered_to == ("node",)
    assert RXP2P.fullmatch(pump(node, b"\r\n")).group(3) == down.hex().upper().encode()


def test_receiver_in_65534_mode_refuses_psend_as_rui3_does(tmp_path):
    with P2PReceiver(Air(), link=tmp_path / "ttyP2P", mode=PRECV_CONTINUOUS) as rx, port(rx) as s:
        s.write(b"AT+PSEND=0102\r\n")
        assert s.read_until(b"\r\n") == b"AT_BUSY_ERROR\r\n"
        s.write(b"AT+PRECV=65534\r\n")
        assert s.read_until(b"AT_BUSY_ERROR\r\n") == b"P2P_RX_ON already\r\nAT_BUSY_ERROR\r\n"


def test_frames_on_another_channel_are_not_heard(tmp_path):
    air = Air()
    node = Node()
    with P2PReceiver(air, link=tmp_path / "ttyP2P", config=P2PConfig(freq_hz=868_100_000)) as rx, port(rx) as s:
        air.transmit(node, b"\x01", monotonic_ms(), P2PConfig(freq_hz=868_300_000))
        air.transmit(node, b"\x02", monotonic_ms(), P2PConfig(freq_hz=868_100_000, sf=9))
        air.transmit(node, b"\x03", monotonic_ms(), P2PConfig(freq_hz=868_100_000))
        assert RXP2P.fullmatch(s.read_until(b"\r\n")).group(3) == b"03"


def test_replugged_receiver_boots_with_reception_off_until_the_host_re_arms_it(tmp_path):
    air = Air()
    node = Node()
    with P2PReceiver(air, link=tmp_path / "ttyP2P") as rx:
        rx.unplug()
        rx.replug()
        with port(rx) as s:
            s.timeout = 0.2
            for _ in range(20):  # AT until the modem is up: input is lost while it boots
                s.write(b"AT\r\n")
                if s.read_until(b"OK\r\n").endswith(b"OK\r\n"):
                    break
            s.reset_input_buffer()
            s.timeout = 3
            s.write(b"AT+PRECV=?\r\n")
            assert s.read_until(b"OK\r\n") == b"P2P_RX_OFF\r\nOK\r\n"
            air.transmit(node, b"\x01", monotonic_ms(), P2PConfig())  # nobody listens: lost
            s.write(b"AT+PRECV=65533\r\n")
            assert s.read_until(b"OK\r\n") == b"OK\r\n"
            air.transmit(node, b"\x02", monotonic_ms(), P2PConfig())
            assert s.read_until(b"\r\n").endswith(b":02\r\n")


def test_duplication_on_the_air_prints_the_frame_twice(tmp_path):
    air = Air(duplicate=1.0)
    with P2PReceiver(air, link=tmp_path / "ttyP2P") as rx, port(rx) as s:
        air.transmit(Node(), b"\xc1", monotonic_ms(), P2PConfig())
        first, second = s.read_until(b"\r\n"), s.read_until(b"\r\n")
    assert first == second and first.endswith(b":C1\r\n")


# -- the air on its own --------------------------------------------------------------------------------------------


def test_loss_and_duplication_are_repeatable_with_a_seed():
    def run(seed: int) -> list[tuple[bytes, int, int]]:
        air = Air(seed=seed, loss=0.3, duplicate=0.3)
        ear = Ear()
        air.register(ear)
        for i in range(50):
            air.transmit(Node(), bytes([i]), i * 1000, P2PConfig())
        return ear.frames

    first = run(5)
    assert first == run(5) and first != run(6)
    delivered = {frame for frame, _, _ in first}
    assert 20 < len(delivered) < 50 and len(first) > len(delivered)  # some lost, some twice


def test_a_sender_does_not_hear_itself_and_far_receivers_hear_nothing():
    air = Air()
    near, far = Ear("near"), Ear("far")
    node = Ear("node")
    air.register(node, Position(52.52, 13.405))
    air.register(near, Position(52.521, 13.405))
    air.register(far, Position(52.75, 13.405))  # about 25 km
    assert air.transmit(node, b"\x01", 0, P2PConfig(sf=12)) == 1
    assert (node.frames, far.frames) == ([], [])
    assert near.frames[0][0] == b"\x01"
    assert air.transmissions[0].lost_at == ("far",)


def test_loss_must_be_a_probability():
    with pytest.raises(ValueError):
        Air(loss=1.5)
