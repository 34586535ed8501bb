"""Node faults in emulation: the real firmware on MicroPython in a virtual-time fleet, with sensors that fail,
a modem that goes silent or answers errors, joins failing for hours, corrupt sleep memory, a broken config and
a power cut in the middle of a config write. Each time the node keeps its schedule, says what is wrong in its
uplinks, and recovers when the fault clears."""

from __future__ import annotations

import json

import pytest
from conftest import full_run

from citynode.emulation.fleet import Fleet

FULL = full_run()
VERSION = "full" if FULL else "short"
pytestmark = [pytest.mark.slow] + ([pytest.mark.chaos] if FULL else [])
START = 1_767_225_600  # 2026-01-01T00:00:00Z


def _hours(fleet: Fleet, ms: int) -> float:
    return (ms - fleet.start_ms) / 3_600_000


def _samples(fleet: Fleet, node: int, key: str):
    """(hour, value, flags) of every sample node `node` sent, from batches, readings and alarms."""
    out = []
    for s in fleet.sent:
        if s.node != fleet.nodes[node].name or not s.message:
            continue
        m = s.message
        h = _hours(fleet, s.virtual_ms)
        if m["message"] == "batch":
            out += [(h + smp["offset_s"] / 3600, smp.get(key), m["flags"]) for smp in m["samples"]]
        elif m["message"] in ("soil_reading", "fill_reading", "alarm"):
            out.append((h, m.get(key), m["flags"]))
    return out


def _fleet(on_log=None, **scenario) -> Fleet:
    base = {"stagger": False, "soil_share": 0.5, "config": {"batch_size": 1}}
    base.update(scenario)
    return Fleet(2, scenario=base, seed=3, start=START, broker=None, on_log=on_log)


def _index(fleet: Fleet, kind: str) -> int:
    return next(n.index for n in fleet.nodes if n.kind == kind)


@pytest.mark.parametrize("mode", ["absent", "stuck", "noisy", "out_of_range"])
def test_a_failing_sensor_is_flagged_while_the_node_keeps_its_schedule_and_recovers(mode, reliability):
    fault = {"sensor": "fill", "from_h": 2, "to_h": 4, "mode": mode}
    with _fleet(fill={"fill_start": 30, "fill_per_day": 12, "faults": [fault]}) as fleet:
        fleet.run_for(hours=6)
        i = _index(fleet, "fill")
        wakes = fleet.nodes[i].wakes
        samples = _samples(fleet, i, "fill_pct")
    during = [s for s in samples if 2.05 < s[0] < 3.95]
    after = [s for s in samples if s[0] > 4.3]
    assert wakes >= 6 * 4  # a wake every 15 minutes throughout
    if mode == "absent":
        assert during and all(v is None and "sensor_fault" in f for _, v, f in during)
    elif mode == "out_of_range":
        assert during and all("out_of_range" in f or "sensor_fault" in f for _, v, f in during)
    elif mode == "stuck":
        assert during and len({v for _, v, _ in during}) <= 2  # the value stops following the container
    else:
        assert during
    assert after and all(v is not None and "sensor_fault" not in f for _, v, f in after)
    reliability.record(f"sensor {mode} for 2 h (fill node)", "2 nodes, 6 virtual hours, 15-min samples",
                       len(samples), len(samples), 0, 0,
                       f"{len(during)} samples in the window flagged/nulled as expected; values back after it",
                       VERSION)


def test_a_silent_modem_costs_uplinks_not_samples_and_the_backlog_goes_out_afterwards(reliability):
    with _fleet(config={"batch_size": 4}) as fleet:
        fleet.schedule(fleet.at_hours(2), lambda f: setattr(f.nodes[0].modem.faults, "silent", True))
        fleet.schedule(fleet.at_hours(5), lambda f: setattr(f.nodes[0].modem.faults, "silent", False))
        fleet.run_for(hours=9)
        wakes = fleet.nodes[0].wakes
        samples = _samples(fleet, 0, "vwc_pct")
    during = [s for s in fleet.sent if s.node == fleet.nodes[0].name and 2.05 < _hours(fleet, s.virtual_ms) < 4.95]
    hours = sorted(round(h * 4) / 4 for h, _, _ in samples)
    assert wakes >= 9 * 4 and not during
    # every quarter-hour sample of the silent period arrived later (up to the 16 a node can keep)
    missing = [q / 4 for q in range(2 * 4, 5 * 4) if q / 4 not in hours]
    assert missing == []
    reliability.record("modem silent for 3 h", "1 soil node, 9 virtual hours", len(samples), len(samples), 0, 0,
                       "no uplink while silent; the 12 samples taken meanwhile went out in later batches", VERSION)


def test_joins_failing_for_hours_back_off_and_the_node_joins_when_the_network_answers(reliability):
    attempts: list[int] = []

    def on_log(node, virtual_ms, text):
        if node.index == 0 and "not joined (join_" in text and "join_backoff" not in text:
            attempts.append(virtual_ms)

    with _fleet(on_log=on_log, config={"batch_size": 4}) as fleet:
        node = fleet.nodes[0]
        node.modem.faults.join_failures = 10_000  # the network refuses every join from the start
        fleet.schedule(fleet.at_hours(6), lambda f: setattr(f.nodes[0].modem.faults, "join_failures", 0))
        fleet.run_for(hours=8)
        sent = [s for s in fleet.sent if s.node == node.name]
        wakes = node.wakes
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert wakes >= 8 * 4 and len(attempts) >= 3
    # Exponential backoff: gaps never shrink (beyond a few seconds of wake jitter) and end far longer than they
    # started; attempts happen only at wakes, so the first gaps are one sample interval.
    assert all(b >= a - 5000 for a, b in zip(gaps, gaps[1:], strict=False)) and gaps[-1] >= 2 * gaps[0]
    # joined within the backoff cap (1 h) after the network answers again, and sent what it had
    assert sent and 6 <= min(_hours(fleet, s.virtual_ms) for s in sent) <= 7.25
    reliability.record("joins refused for 6 h", "1 soil node, 8 virtual hours", len(sent), len(sent), 0, 0,
                       f"{len(attempts)} join attempts with growing gaps, then joined and sent", VERSION)


def test_corrupt_sleep_memory_restarts_the_node_cleanly_and_reports_it(reliability):
    with _fleet() as fleet:
        fleet.run_for(hours=1)
        fleet.nodes[0].blob = b"CN\x01" + bytes(40)  # garbage with a plausible header
        fleet.run_for(hours=2)
        statuses = [s.message for s in fleet.sent if s.node == fleet.nodes[0].name and s.message
                    and s.message["message"] == "status"]
        wakes = fleet.nodes[0].wakes
    assert wakes >= 3 * 4 and any("state_lost" in m["flags"] for m in statuses)
    reliability.record("corrupt RTC (sleep) memory", "1 soil node, 3 virtual hours", len(statuses), len(statuses),
                       0, 0, "fresh state + a status with state_lost; schedule kept", VERSION)


def test_a_broken_config_means_safe_defaults_and_a_flag_until_it_is_fixed(reliability):
    with _fleet() as fleet:
        fleet.run_for(hours=1)
        cfg_path = fleet.nodes[0].dir / "config.json"
        good = cfg_path.read_text()
        cfg_path.write_text(good[: len(good) // 2])  # a partial file
        fleet.run_for(hours=2)
        cfg_path.write_text(good)
        fleet.run_for(hours=2)
        samples = _samples(fleet, 0, "vwc_pct")
        wakes = fleet.nodes[0].wakes
    broken = [s for s in samples if 1.3 < s[0] < 2.9]
    fixed = [s for s in samples if s[0] > 3.3]
    assert wakes >= 5 * 4
    assert broken and all("config_error" in f for _, _, f in broken)
    assert fixed and all("config_error" not in f for _, _, f in fixed)
    reliability.record("partial config.json", "1 soil node, 5 virtual hours", len(samples), len(samples), 0, 0,
                       "defaults + config_error while broken, normal after the fix", VERSION)


def test_a_power_cut_in_the_middle_of_a_config_write_leaves_the_old_config_in_force(reliability):
    with _fleet() as fleet:
        fleet.run_for(hours=1)
        node = fleet.nodes[0]
        before = json.loads((node.dir / "config.json").read_text())
        # The write got as far as the temporary file when the power went: half a file, never renamed.
        (node.dir / "config.json.tmp").write_text(json.dumps({**before, "sample_interval_s": 600})[:20])
        fleet.power_cycle([0], off_s=30)
        fleet.run_for(hours=2)
        after = json.loads((node.dir / "config.json").read_text())
        samples = _samples(fleet, 0, "vwc_pct")
        statuses = [s.message for s in fleet.sent if s.node == node.name and s.message
                    and s.message["message"] == "status"]
    assert after == before
    assert statuses[-1]["reset_cause"] == "power_on" and "config_error" not in statuses[-1]["flags"]
    assert all("config_error" not in f for h, _, f in samples if h > 1)
    reliability.record("power cut during a config write", "1 soil node, 3 virtual hours", len(samples),
                       len(samples), 0, 0, "the old config stayed in force (atomic rename), no config_error",
                       VERSION)
