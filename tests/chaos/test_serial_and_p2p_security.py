"""The serial P2P path through the real bridge process: an emulated RAK3172 receiver on a pseudo-terminal, frames
sent over the emulated air by nodes with their own keys. The receiver is unplugged and plugged back while
LoRaWAN traffic keeps flowing; forged, replayed, rolled-back and unknown frames are all refused, counted in the
metrics and never published."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import full_run
from ops_helpers import BridgeProcess, wait_for
from stream import Stream, Tally

from citynode.core.messages import message_id
from citynode.emulation.air import Air, P2PConfig
from citynode.emulation.p2p_receiver import P2PReceiver
from citynode.emulation.pty_device import monotonic_ms
from citynode_codec import encode, p2p

from brokers import Mosquitto

FULL = full_run()
VERSION = "full" if FULL else "short"
pytestmark = [pytest.mark.slow] + ([pytest.mark.chaos] if FULL else [])

EUI = "ac1f09fffe000077"
KEY = bytes.fromhex("5c0ffee05c0ffee05c0ffee05c0ffee0")
CHANNEL = P2PConfig(freq_hz=868_100_000)  # what the bridge's serial source tunes the receiver to


def _registry(path: Path) -> Path:
    path.write_text(f"""
[[device]]
dev_eui = "{EUI.upper()}"
name = "bin-p2p-77"
kind = "fill"
asset_id = "B-0077"
source = "serial"
expected_interval_s = 900
empty_distance_m = 1.2
full_distance_m = 0.2
p2p_key = "{KEY.hex()}"
""")
    return path


def _frame(fcnt: int, *, key: bytes = KEY, eui: str = EUI) -> tuple[bytes, str]:
    fport, payload = encode("fill_reading", {"fill_pct": fcnt % 100, "distance_m": 1.0, "temperature_c": 10,
                                             "battery_v": 3.6})
    return p2p.build(p2p.UPLINK, bytes.fromhex(eui), fcnt, fport, payload, key), message_id(eui, fcnt, fport,
                                                                                             payload, 0)


def _bridge(tmp_path, lns, out, link) -> BridgeProcess:
    return BridgeProcess(tmp_path / "b", lns, out, overrides={
        "registry": {"path": str(_registry(tmp_path / "registry.toml"))},
        "input.serial": {"port": str(link), "state_path": str(tmp_path / "p2p-counters.sqlite"),
                         "freq_hz": 868_100_000, "reopen_min_s": 0.1, "reopen_max_s": 0.5}})


@pytest.fixture
def setup(tmp_path):
    air = Air()
    link = tmp_path / "ttyRAK0"
    receiver = P2PReceiver(air, link=link)
    node = object()
    air.place(node, None, "bin-p2p-77")
    with Mosquitto(tmp_path / "lns", extra_conf="max_inflight_messages 1000") as lns, \
            Mosquitto(tmp_path / "out", extra_conf="max_inflight_messages 1000") as out:
        yield air, receiver, node, lns, out, link
    receiver.close()


def _wait_serial(bridge: BridgeProcess, connected: bool) -> None:
    wait_for(lambda: bridge.health()[1].get("sources", {}).get("serial", {}).get("connected") is connected,
             timeout=30, what=f"the serial source {'connected' if connected else 'gone'}")


def test_the_serial_receiver_unplugged_and_back_is_reopened_while_lorawan_keeps_flowing(tmp_path, setup,
                                                                                         reliability):
    air, receiver, node, lns, out, link = setup
    rate, outage = (300, 10) if FULL else (100, 3)
    tally = Tally(out.port).start()
    bridge = _bridge(tmp_path, lns, out, link).start()
    _wait_serial(bridge, True)
    stream = Stream(lns.port, rate).start()
    p2p_expected, fcnt = [], 0
    try:
        for _ in range(5):
            fcnt += 1
            frame, mid = _frame(fcnt)
            assert air.transmit(node, frame, monotonic_ms(), CHANNEL) == 1
            p2p_expected.append(mid)
        wait_for(lambda: set(p2p_expected) <= tally.received(), what="P2P readings before the unplug")
        receiver.unplug()
        _wait_serial(bridge, False)
        lorawan_during = len(stream.expected)
        time.sleep(outage)  # LoRaWAN uplinks keep arriving while the serial port is gone
        assert len(stream.expected) > lorawan_during
        receiver.replug()
        _wait_serial(bridge, True)
        for _ in range(5):
            fcnt += 1
            frame, mid = _frame(fcnt)
            assert air.transmit(node, frame, monotonic_ms(), CHANNEL) == 1
            p2p_expected.append(mid)
        stream.stop()
        wait_for(stream.drained, what="the LNS side to have published everything")
        everything = stream.expected + p2p_expected
        wait_for(lambda: set(everything) <= tally.received(), timeout=120, what="every reading")
        counts = tally.counts(everything)
        reliability.record("serial receiver unplugged and plugged back (pty closed, reopened)",
                           f"{rate} LoRaWAN uplinks/s + 10 P2P frames, {outage} s unplugged", counts["sent"],
                           counts["received"], counts["lost"], counts["duplicated"],
                           "the bridge reopened the port with backoff; LoRaWAN never paused", VERSION)
        assert counts["lost"] == 0 and counts["unexpected"] == 0
    finally:
        stream.close()
        bridge.stop()
        tally.stop()


def test_forged_replayed_rolled_back_and_unknown_p2p_frames_are_refused_counted_and_never_published(
        tmp_path, setup, reliability):
    air, receiver, node, lns, out, link = setup
    tally = Tally(out.port).start()
    bridge = _bridge(tmp_path, lns, out, link).start()
    _wait_serial(bridge, True)
    good = []
    attacks = 0
    try:
        for fcnt in (10, 11, 12):
            frame, mid = _frame(fcnt)
            air.transmit(node, frame, monotonic_ms(), CHANNEL)
            good.append(mid)
        wait_for(lambda: set(good) <= tally.received(), what="the genuine frames")
        forged = bytearray(_frame(13)[0])
        forged[-1] ^= 0x01  # a flipped MIC bit
        attempts = [bytes(forged),
                    _frame(14, key=bytes(16))[0],  # signed with a wrong key
                    _frame(11)[0],  # a replay of a frame already accepted
                    _frame(5)[0],  # an older counter (rollback)
                    _frame(20, eui="ac1f09fffe00dead")[0]]  # a device nobody registered
        for frame in attempts:
            air.transmit(node, frame, monotonic_ms(), CHANNEL)
            attacks += 1
        wait_for(lambda: bridge.metric("citynode_rejected_total") >= len(attempts),
                 what="every hostile frame counted")
        rejected_before_restart = bridge.metric("citynode_rejected_total")
        # A bridge restart must not reopen the door to old counters.
        bridge.stop()
        bridge.start()
        _wait_serial(bridge, True)
        for frame in (_frame(12)[0], _frame(9)[0]):
            air.transmit(node, frame, monotonic_ms(), CHANNEL)
            attacks += 1
        frame, mid = _frame(15)  # and a genuine new frame still gets through
        air.transmit(node, frame, monotonic_ms(), CHANNEL)
        good.append(mid)
        wait_for(lambda: mid in tally.received(), what="the genuine frame after the attacks")
        wait_for(lambda: bridge.metric("citynode_rejected_total") >= 2, what="the post-restart rejections counted")
        counts = tally.counts(good)
        published = tally.received()
        reliability.record("P2P attacks: forged MIC, wrong key, replay, counter rollback (also after a bridge "
                           "restart), unknown device", f"{attacks} hostile + {len(good)} genuine frames",
                           len(good), counts["received"], counts["lost"], counts["duplicated"],
                           f"{attacks} of {attacks} hostile frames refused and counted; none published", VERSION)
        assert published == set(good) and counts["lost"] == 0
        assert rejected_before_restart == len(attempts)  # each one counted (the metric restarts with the process)
    finally:
        bridge.stop()
        tally.stop()
