"""Faults around the bridge, with real processes: brokers killed and restarted, the bridge killed with SIGKILL,
the serial receiver unplugged, the outbox's disk full. Each test streams uplinks from many devices and counts
what the platform subscriber received. The short versions run in `make test`; `make chaos` runs them at full
size (CITYNODE_CHAOS=full). Every run adds a row to docs/RELIABILITY.md (see conftest.py)."""

from __future__ import annotations

import random
import time

import pytest
from conftest import full_run
from ops_helpers import BridgeProcess, wait_for
from stream import Stream, Tally

from brokers import Mosquitto

FULL = full_run()
VERSION = "full" if FULL else "short"
pytestmark = [pytest.mark.slow] + ([pytest.mark.chaos] if FULL else [])

# The bridge acknowledges input only after storing it: let the LNS broker keep more than Mosquitto's default of
# 20 messages in flight to it (the deployment docs recommend the same setting).
LNS_CONF = "max_inflight_messages 1000"
# The platform broker forwards at once to its subscriber instead of queueing behind 20 unacknowledged messages.
OUT_CONF = "max_inflight_messages 1000"


def _settle(stream: Stream, tally: Tally, timeout: float = 180) -> None:
    stream.stop()
    wait_for(stream.drained, timeout=60, what="the LNS side to have published everything")
    try:
        wait_for(lambda: set(stream.expected) <= tally.received(), timeout=timeout, what="every reading")
    except AssertionError:
        raise AssertionError(f"not every reading arrived: {tally.counts(stream.expected)}") from None
    time.sleep(1)  # late copies (redeliveries) still count as duplicates


def _check(tally: Tally, stream: Stream, reliability, fault: str, traffic: str, notes: str = "") -> dict:
    counts = tally.counts(stream.expected)
    disorder = tally.out_of_order(stream.order)
    reliability.record(fault, traffic, counts["sent"], counts["received"], counts["lost"], counts["duplicated"],
                       notes + (f"; {disorder} devices out of order" if disorder else "; per-device order kept"),
                       VERSION)
    assert counts["lost"] == 0 and counts["unexpected"] == 0
    assert disorder == 0
    return counts


def test_the_output_broker_killed_mid_stream_loses_nothing_and_keeps_order(tmp_path, reliability):
    rate, before, outage, after = (500, 20, 30, 20) if FULL else (200, 4, 5, 4)
    with Mosquitto(tmp_path / "lns", extra_conf=LNS_CONF) as lns, \
            Mosquitto(tmp_path / "out", persistence=True, extra_conf=OUT_CONF) as out:
        tally = Tally(out.port).start()
        bridge = BridgeProcess(tmp_path / "b", lns, out).start()
        stream = Stream(lns.port, rate).start()
        try:
            time.sleep(before)
            saved = out.dir / "mosquitto.db"  # the platform's session must be on disk before the kill
            wait_for(lambda: saved.exists(), what="the broker's first autosave")
            out.kill()
            time.sleep(outage)
            out.start()
            time.sleep(after)
            _settle(stream, tally)
            _check(tally, stream, reliability, f"output broker SIGKILL for {outage} s, restarted",
                   f"{rate} readings/s, 50 devices, {before + outage + after} s",
                   "QoS 1 bridge->broker; copies are re-sends of rows whose PUBACK died with the broker")
        finally:
            stream.close()
            bridge.stop()
            tally.stop()


def test_the_input_broker_restarted_mid_stream_loses_nothing(tmp_path, reliability):
    rate, before, after = (500, 20, 20) if FULL else (200, 4, 4)
    with Mosquitto(tmp_path / "lns", persistence=True, extra_conf=LNS_CONF) as lns, \
            Mosquitto(tmp_path / "out", extra_conf=OUT_CONF) as out:
        tally = Tally(out.port).start()
        bridge = BridgeProcess(tmp_path / "b", lns, out).start()
        stream = Stream(lns.port, rate).start()
        try:
            time.sleep(before)
            lns.restart()  # a clean restart: the broker keeps the bridge's persistent session and its queue
            time.sleep(after)
            _settle(stream, tally)
            _check(tally, stream, reliability, "input (LNS) broker restarted", f"{rate} uplinks/s, 50 devices",
                   "the bridge's persistent session resumed; LNS-side re-sends deduplicated")
        finally:
            stream.close()
            bridge.stop()
            tally.stop()


def test_the_bridge_killed_ten_times_at_random_points_loses_nothing(tmp_path, reliability):
    rate, kills = (500, 10) if FULL else (200, 10)
    rng = random.Random(7)
    with Mosquitto(tmp_path / "lns", extra_conf=LNS_CONF) as lns, \
            Mosquitto(tmp_path / "out", extra_conf=OUT_CONF) as out:
        tally = Tally(out.port).start()
        bridge = BridgeProcess(tmp_path / "b", lns, out).start()
        stream = Stream(lns.port, rate).start()
        try:
            for _ in range(kills):
                time.sleep(rng.uniform(0.5, 3.0 if FULL else 1.5))
                bridge.kill()  # SIGKILL: no cleanup, whatever was in memory is gone
                bridge.start()
            time.sleep(2)
            _settle(stream, tally)
            _check(tally, stream, reliability, f"bridge SIGKILL x{kills} at random points, restarted each time",
                   f"{rate} uplinks/s, 50 devices", "outbox + input acknowledged only after storing")
        finally:
            stream.close()
            bridge.stop()
            tally.stop()


def test_a_full_outbox_disk_stops_acknowledging_says_so_and_loses_nothing(tmp_path, reliability):
    rate, seconds = (300, 20) if FULL else (200, 6)
    with Mosquitto(tmp_path / "lns", extra_conf=LNS_CONF) as lns, \
            Mosquitto(tmp_path / "out", persistence=True, extra_conf=OUT_CONF) as out:
        tally = Tally(out.port).start()
        tiny = BridgeProcess(tmp_path / "b", lns, out, overrides={"outbox": {"max_db_mb": 1}}).start()
        saved = out.dir / "mosquitto.db"  # the platform's session must be on disk before the kill
        wait_for(lambda: saved.exists(), what="the broker's first autosave")
        # The platform broker goes down, so everything piles up in an outbox capped at 1 MB: the disk is "full".
        out.kill()
        stream = Stream(lns.port, rate).start()
        roomy = None
        try:
            time.sleep(seconds)
            wait_for(lambda: tiny.metric("citynode_outbox_errors_total") > 0, timeout=60,
                     what="the outbox to report the full disk")
            status, health = tiny.health()
            assert status == 503 and health["outbox"]["storing"] is False
            assert "outbox" in tiny.log_text() and "failed" in tiny.log_text()
            tiny.kill()
            out.start()
            # More room (an operator freed the disk): everything the LNS broker kept comes through.
            roomy = BridgeProcess(tmp_path / "b", lns, out).start()
            _settle(stream, tally, timeout=60)
            _check(tally, stream, reliability, "outbox disk full (1 MB cap) while the platform broker was down",
                   f"{rate} uplinks/s for {seconds} s", "input left unacknowledged at the LNS broker until stored")
        finally:
            stream.close()
            tiny.stop()
            if roomy is not None:
                roomy.stop()
            tally.stop()
