"""Two boards over raw LoRa: the node sends a signed P2P frame (codecs/citynode_codec/p2p.py) and a RAK3172
receiver (the bridge's radio) hears it. Real hardware: --receiver is the receiving RAK3172's serial port."""

import time

import serial

from citynode_codec import decode_uplink
from citynode_codec import p2p as frames

P2P = {"radio": "rak3172_p2p", "p2p_freq_hz": 868_100_000, "p2p_sf": 9, "p2p_bw_khz": 125, "p2p_rx_ms": 200}


def listen(port: serial.Serial, emulated: bool) -> None:
    """Put the receiver in continuous reception on the node's channel (RUI3: AT+NWM=0, AT+P2P, AT+PRECV)."""
    if emulated:
        return  # the emulated receiver already listens (p2p_receiver.py)
    for cmd, wait in (("AT+NWM=0", 2.0), ("AT+P2P=868100000:9:125:0:8:14", 0.3), ("AT+PRECV=65533", 0.3)):
        port.write(cmd.encode() + b"\r\n")
        time.sleep(wait)
    port.reset_input_buffer()


def test_a_p2p_frame_reaches_the_receiver_and_decodes(board, deploy, run_wake, receiver):
    with serial.Serial(receiver, 115200, timeout=20) as rx:
        listen(rx, board.emulated)
        deploy("soil", **P2P)
        key = bytes.fromhex(board.secrets.get("p2p_key", ""))
        wake = run_wake()
        assert [result for _, _, result in wake.sent][:1] == ["ok"]
        line = rx.read_until(b"\r\n").decode().strip()
    assert line.startswith("+EVT:RXP2P:")
    frame = bytes.fromhex(line.rsplit(":", 1)[1])
    marker, dev_eui, fcnt, fport, payload, _ = frames.verify(frame, key)  # MIC checked
    assert marker == frames.UPLINK and dev_eui.hex().upper() == board.dev_eui.upper()
    assert decode_uplink(fport, payload)["data"]["message"] == "soil_reading"
