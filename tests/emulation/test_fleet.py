"""The fleet simulator end to end: the real firmware on MicroPython in virtual time, emulated RAK3172 modems, the
emulated LNS publishing ChirpStack/TTS JSON to a real Mosquitto, and what arrives there."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from datetime import datetime

import paho.mqtt.client as mqtt
import pytest

from citynode.cli.main import main as cli_main
from citynode.emulation import scenarios
from citynode.emulation.fleet import Fleet
from citynode_codec import decode_uplink

START = 1_767_225_600  # 2026-01-01T00:00:00Z
HOUR_MS = 3_600_000
CS_UP = "application/+/device/+/event/up"
TTS_UP = "v3/+/devices/+/up"


class Uplinks:
    """An MQTT subscriber collecting LNS `up` events, decoded with citynode_codec."""

    def __init__(self, port: int, topic: str = CS_UP):
        self.topic = topic
        self.items: list[dict] = []
        self.connects = 0
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleet-test-{id(self)}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "the test subscriber did not subscribe"

    def _on_connect(self, client, userdata, flags, rc, props):
        self.connects += 1
        self._subscribed.clear()
        client.subscribe(self.topic)

    def _on_message(self, client, userdata, msg):
        body = json.loads(msg.payload)
        if "uplink_message" in body:  # TTS v3
            up = body["uplink_message"]
            item = {"dev_eui": body["end_device_ids"]["dev_eui"].lower(), "fcnt": up.get("f_cnt", 0),
                    "fport": up["f_port"], "data": base64.b64decode(up["frm_payload"]), "time": up["received_at"]}
        else:  # ChirpStack v4 (the Protocol Buffers JSON mapping leaves fCnt 0 out)
            item = {"dev_eui": body["deviceInfo"]["devEui"], "fcnt": body.get("fCnt", 0), "fport": body["fPort"],
                    "data": base64.b64decode(body["data"]), "time": body["time"]}
        item["message"] = decode_uplink(item["fport"], item["data"])["data"]
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.items) >= count, timeout)
            return list(self.items)

    def wait_resubscribed(self, connects: int, timeout: float = 10.0) -> bool:
        """Wait until the subscriber has connected again (after `connects` connections) and subscribed."""
        deadline = time.monotonic() + timeout
        while self.connects <= connects or not self._subscribed.is_set():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def uplinks(mosquitto):
    sub = Uplinks(mosquitto.port)
    yield sub
    sub.close()


def run(mosquitto, sub: Uplinks, nodes: int, hours: float, scenario=None, **kw):
    """Run a fleet; return (fleet, what arrived at the broker). The fleet is closed."""
    with Fleet(nodes, scenario=scenario, broker=("127.0.0.1", mosquitto.port), seed=kw.pop("seed", 7),
               start=START, **kw) as fleet:
        fleet.run_for(hours=hours)
        assert fleet.lns.wait_published(10)
        expected = sum(s.published for s in fleet.sent)
    return fleet, sub.wait_for(expected)


def at_h(fleet: Fleet, ms: int) -> float:
    return (ms - START * 1000) / HOUR_MS


def samples(fleet: Fleet, node: str) -> list[tuple[float, dict, list[str]]]:
    """(hour, sample, batch flags) of every sample `node` sent in a batch, from the sent records."""
    out = []
    for s in fleet.sent:
        if s.node == node and s.message and s.message.get("message") == "batch":
            for smp in s.message["samples"]:
                out.append((at_h(fleet, s.virtual_ms + smp["offset_s"] * 1000), smp, s.message["flags"]))
    return sorted(out, key=lambda x: x[0])


def alarms(fleet: Fleet, event: str) -> list[tuple[str, float, dict]]:
    return [(s.node, at_h(fleet, s.virtual_ms), s.message) for s in fleet.sent
            if s.message and s.message.get("message") == "alarm" and s.message.get("event") == event]


# -- the whole path ------------------------------------------------------------------------------------------------


def test_a_small_fleet_runs_a_day_and_every_uplink_reaches_the_broker_once_with_the_values_sent(mosquitto, uplinks):
    city = json.loads((scenarios.PRESET_DIR / "city.json").read_text())
    city["network"] = {"duplicate_probability": 0.2}  # a second integration publishing some uplinks again
    fleet, got = run(mosquitto, uplinks, nodes=6, hours=24, scenario=city)
    s = fleet.summary()
    assert s["up_duplicated"] > 0 and s["up_published"] == s["uplinks"] + s["up_duplicated"]
    assert s["nodes"] == 6 and s["soil_nodes"] == 3 and s["fill_nodes"] == 3
    assert s["wakes"] >= 6 * 95  # 15-minute sampling for a day (first wakes spread over the first interval)
    assert s["joins"] == 6 and s["crashes"] == 0 and s["watchdog_resets"] == 0
    published = Counter()
    for rec in fleet.sent:
        published[(rec.dev_eui, rec.fcnt, rec.fport, rec.payload_hex)] += rec.published
    arrived = Counter((u["dev_eui"], u["fcnt"], u["fport"], u["data"].hex()) for u in got)
    assert s["uplinks"] > 6 * 20 and arrived == +published  # each publication exactly once, nothing else
    by_key = {(r.dev_eui, r.fcnt): r for r in fleet.sent}
    for u in got:
        assert u["message"] == by_key[(u["dev_eui"], u["fcnt"])].message
    kinds = Counter(u["message"]["message"] for u in {(u["dev_eui"], u["fcnt"]): u for u in got}.values())
    assert kinds["status"] == 6 and kinds["batch"] >= 6 * 23


def test_the_lns_timestamps_advance_by_the_sampling_interval(mosquitto, uplinks):
    scenario = {"config": {"batch_size": 1}}  # one reading per wake, so one uplink per 15 minutes
    fleet, got = run(mosquitto, uplinks, nodes=2, hours=3, scenario=scenario)
    for node in fleet.nodes:
        times = sorted(datetime.fromisoformat(u["time"]).timestamp() for u in got
                       if u["dev_eui"] == node.dev_eui and u["message"]["message"] != "status")
        times = times[1:]  # the first wake also joined the network: its reading went out a few seconds later
        steps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # A reading the duty cycle held back goes out with the next one (as a batch): a step of two intervals.
        assert all(abs(step - 900 * round(step / 900)) <= 1 and step > 800 for step in steps), steps
        assert len(steps) >= 8 and sum(abs(step - 900) <= 1 for step in steps) >= 8
        assert START + 900 <= times[0] < START + 2700  # virtual time, not the wall clock


# -- scenarios -----------------------------------------------------------------------------------------------------


def test_soil_dries_along_the_scenario_and_an_irrigation_raises_it_again(mosquitto, uplinks):
    fleet, got = run(mosquitto, uplinks, nodes=4, hours=24, scenario="drying")
    world = scenarios.load("drying").worlds["soil"]
    soil = [n for n in fleet.nodes if n.kind == "soil"]
    assert len(soil) == 3
    for node in soil:
        series = samples(fleet, node.name)
        before = [(h, smp["vwc_pct"]) for h, smp, _ in series if h < 18]
        after = [(h, smp["vwc_pct"]) for h, smp, _ in series if h > 18.5]
        assert len(before) >= 60 and after
        for h, vwc in before:  # the node reports the simulated drying within the probe's noise
            assert abs(vwc - (world["vwc_start"] - world["dry_per_day"] * h / 24)) < 1.0, (h, vwc)
        assert before[-1][1] < 11 and min(v for _, v in after) > 30
    raised = [(n, h) for n, h, m in alarms(fleet, "soil_dry") if not m["cleared"]]
    cleared = [(n, h) for n, h, m in alarms(fleet, "soil_dry") if m["cleared"]]
    assert sorted(n for n, _ in raised) == sorted(n.name for n in soil)
    assert all(14 < h < 16 for _, h in raised) and all(18 <= h < 18.6 for _, h in cleared)
    assert len(cleared) == 3
    sent_alarms = {(a["dev_eui"], a["fcnt"]) for a in got if a["message"]["message"] == "alarm"}
    assert len(sent_alarms) == 6  # and they all reached the broker


def test_a_container_reaches_its_fill_alarm_and_its_emptying_is_detected(mosquitto, uplinks):
    scenario = {"soil_share": 0.0, "fill": {"fill_start": 40, "fill_per_day": 96, "collections_h": [15]}}
    fleet, got = run(mosquitto, uplinks, nodes=2, hours=20, scenario=scenario)
    for node in fleet.nodes:
        full = [(h, m) for n, h, m in alarms(fleet, "fill_full") if n == node.name and not m["cleared"]]
        emptied = [(h, m) for n, h, m in alarms(fleet, "emptied") if n == node.name]
        assert len(full) == 1 and 12.4 < full[0][0] < 13, full  # 40 % + 4 %/h reaches 90 % at 12.5 h
        assert full[0][1]["fill_pct"] >= 90
        assert len(emptied) == 1 and 15 <= emptied[0][0] < 15.3 and emptied[0][1]["fill_pct"] <= 2
        levels = [(h, smp["fill_pct"]) for h, smp, _ in samples(fleet, node.name)]
        assert max(p for h, p in levels if h < 15) >= 98 and all(p < 25 for h, p in levels if h > 15.3)
    assert {a["message"]["event"] for a in got if a["message"]["message"] == "alarm"} >= {"fill_full", "emptied"}


def test_a_sensor_fault_window_yields_null_values_and_sensor_fault_flags_and_the_node_keeps_its_schedule(
        mosquitto, uplinks):
    scenario = {"stagger": False, "groups": [
        {"nodes": [1], "world": {"faults": [{"sensor": "soil", "from_h": 4, "to_h": 7, "mode": "absent"}]}},
        {"nodes": [0], "world": {"faults": [{"sensor": "fill", "from_h": 4, "to_h": 7, "mode": "absent"}]}}]}
    fleet, got = run(mosquitto, uplinks, nodes=3, hours=10, scenario=scenario)
    for node, field in ((fleet.nodes[1], "vwc_pct"), (fleet.nodes[0], "fill_pct")):
        series = samples(fleet, node.name)
        inside = [(smp, flags) for h, smp, flags in series if 4.05 < h < 6.95]
        outside = [smp for h, smp, _ in series if h < 3.95 or h > 7.05]
        assert len(inside) >= 10 and all(smp[field] is None and "sensor_fault" in flags for smp, flags in inside)
        assert outside and all(smp[field] is not None for smp in outside)
        assert sum(smp[field] is None for _, smp, _ in series) == 12  # 3 hours of 15-minute samples
        assert node.wakes == 40  # every 15 minutes, faults or not
        faults = [m["cleared"] for n, _, m in alarms(fleet, "sensor_fault") if n == node.name]
        assert faults == [False, True]
    healthy = samples(fleet, fleet.nodes[2].name)
    assert all("sensor_fault" not in flags for _, _, flags in healthy)


def test_a_gateway_outage_loses_the_unconfirmed_uplinks_sent_during_it_and_they_are_not_sent_again(
        mosquitto, uplinks):
    fleet, got = run(mosquitto, uplinks, nodes=4, hours=12, scenario="outage")
    lost = [s for s in fleet.sent if not s.heard]
    assert lost and all(6 <= at_h(fleet, s.virtual_ms) < 8 for s in lost)
    assert all(s.heard for s in fleet.sent if not 6 <= at_h(fleet, s.virtual_ms) < 8)
    assert len(lost) == 8  # 4 nodes x 2 hours of hourly batches
    assert fleet.summary()["uplinks_lost"] == len(lost)
    arrived = {(u["dev_eui"], u["fcnt"]) for u in got}
    assert not arrived & {(s.dev_eui, s.fcnt) for s in lost}
    # The firmware does not retransmit unconfirmed batches: samples measured during the outage never arrive.
    for node in fleet.nodes:
        hours = [at_h(fleet, (datetime.fromisoformat(u["time"]).timestamp() + smp["offset_s"]) * 1000)
                 for u in got if u["dev_eui"] == node.dev_eui and u["message"]["message"] == "batch"
                 for smp in u["message"]["samples"]]
        assert not [h for h in hours if 6.01 < h < 7.5]
        assert [h for h in hours if h > 8.5]  # and it carries on afterwards


def test_a_power_cycle_makes_the_node_rejoin_and_report_reset_cause_power_on(mosquitto, uplinks):
    scenario = {"events": [{"at_h": 3, "do": "power_cycle", "nodes": [1], "off_s": 60}]}
    fleet, got = run(mosquitto, uplinks, nodes=2, hours=5, scenario=scenario)
    node = fleet.nodes[1]
    statuses = [(at_h(fleet, s.virtual_ms), s.fcnt, s.message) for s in fleet.sent
                if s.node == node.name and s.message["message"] == "status"]
    assert [m["reset_cause"] for _, _, m in statuses] == ["power_on", "power_on"]
    h, fcnt, msg = statuses[1]
    assert 3 <= h < 3.3 and fcnt == 0 and msg["wake_count"] == 1  # a new session, a fresh sleep memory
    assert [j.node for j in fleet.joins].count(node.name) == 2 and fleet.summary()["power_cycles"] == 1
    other = [s.message for s in fleet.sent if s.node == fleet.nodes[0].name and s.message["message"] == "status"]
    assert len(other) == 1
    assert any(u["dev_eui"] == node.dev_eui and u["message"] == msg for u in got)


def test_a_reboot_downlink_is_acknowledged_and_the_node_restarts_with_reset_cause_soft_reset(mosquitto, uplinks):
    scenario = {"stagger": False, "events": [
        {"at_h": 1.1, "do": "downlink", "nodes": [1], "message": "reboot", "fields": {"seq": 3}}]}
    fleet, got = run(mosquitto, uplinks, nodes=2, hours=3, scenario=scenario)
    node = fleet.nodes[1]
    seen = [(at_h(fleet, s.virtual_ms), s.message) for s in fleet.sent
            if s.node == node.name and s.message["message"] != "batch"]
    kinds = [(m["message"], m.get("command") or m.get("reset_cause")) for _, m in seen]
    assert kinds == [("status", "power_on"), ("downlink_ack", "reboot"), ("status", "soft_reset")]
    assert seen[1][1]["seq"] == 3 and seen[1][1]["result"] == "applied"
    assert fleet.summary()["reboots"] == 1 and [j.node for j in fleet.joins].count(node.name) == 1
    assert any(u["dev_eui"] == node.dev_eui and u["message"] == seen[2][1] for u in got)


def test_a_wake_running_past_the_watchdog_resets_the_node_and_it_reports_reset_cause_watchdog(mosquitto, uplinks):
    with Fleet(1, scenario={"stagger": False}, broker=("127.0.0.1", mosquitto.port), seed=4, start=START) as fleet:
        fleet.run_for(hours=1.7)
        fleet.wake_limit_ms = 2000  # every wake that waits for TX_DONE is cut short from here on
        fleet.run_for(hours=0.1)
        resets = fleet.summary()["watchdog_resets"]
        fleet.wake_limit_ms = 600_000
        fleet.run_for(hours=1.5)
    assert resets >= 10
    statuses = [(at_h(fleet, s.virtual_ms), s.message["reset_cause"]) for s in fleet.sent
                if s.message["message"] == "status"]
    assert statuses[0][1] == "power_on" and {c for _, c in statuses[1:]} == {"watchdog"}
    # The cut comes while the node waits for TX_DONE, after its modem has sent the batch. The node marked the
    # batch as in flight in its sleep memory before handing it over, so after the reset it does not send the
    # same samples again under a new frame counter (duplicates no platform could recognise by FCnt).
    batches = [s for s in fleet.sent if s.message["message"] == "batch"]
    loop = [s for s in batches if 1.74 < at_h(fleet, s.virtual_ms) < 1.8]
    assert len(loop) == 1
    samples = [(round(at_h(fleet, s.virtual_ms) * 3600 + smp["offset_s"]), smp["fill_pct"]) for s in batches
               for smp in s.message["samples"]]
    assert len(samples) == len(set(samples))
    assert any(at_h(fleet, s.virtual_ms) > 1.9 for s in batches)  # normal batches again once wakes are not cut


def test_a_set_interval_downlink_rewrites_the_config_in_the_node_flash_and_changes_its_schedule(mosquitto, uplinks):
    scenario = {"stagger": False, "events": [{"at_h": 1.1, "do": "downlink", "nodes": [0], "message": "set_interval",
                                              "fields": {"seq": 2, "sample_interval_s": 600}}]}
    with Fleet(2, scenario=scenario, broker=("127.0.0.1", mosquitto.port), seed=6, start=START) as fleet:
        fleet.run_for(hours=4)
        configs = [json.loads((n.dir / "config.json").read_text()) for n in fleet.nodes]
        wakes = [n.wakes for n in fleet.nodes]
    assert configs[0]["sample_interval_s"] == 600 and configs[1]["sample_interval_s"] == 900
    acks = [s.message for s in fleet.sent if s.message["message"] == "downlink_ack"]
    assert [(a["command"], a["result"], a["seq"]) for a in acks] == [("set_interval", "applied", 2)]
    assert wakes[1] == 16 and wakes[0] == 8 + 13  # 15-minute wakes until 1.75 h, then every 10 minutes
    later = [s.message for s in fleet.sent if s.node == fleet.nodes[0].name and at_h(fleet, s.virtual_ms) > 2]
    assert later and all(m["sample_interval_s"] == 600 for m in later if m["message"] == "batch")


def test_the_tts_flavour_publishes_tts_v3_uplinks_with_virtual_timestamps(mosquitto):
    sub = Uplinks(mosquitto.port, TTS_UP)
    try:
        fleet, got = run(mosquitto, sub, nodes=3, hours=4, flavour="tts")
    finally:
        sub.close()
    assert len(got) == sum(s.published for s in fleet.sent) >= 3 * 4
    by_key = {(r.dev_eui, r.fcnt): r for r in fleet.sent}
    for u in got:
        rec = by_key[(u["dev_eui"], u["fcnt"])]
        assert u["message"] == rec.message and u["time"].endswith("Z")
        assert abs(datetime.fromisoformat(u["time"].replace("Z", "+00:00")).timestamp() * 1000 - rec.virtual_ms) < 1


def test_the_broker_restarting_mid_run_is_survived_and_uplinks_arrive_again(mosquitto, uplinks):
    connects = uplinks.connects

    def restart():
        mosquitto.restart()
        assert uplinks.wait_resubscribed(connects)  # the platform side is back before the fleet goes on

    with Fleet(3, scenario="broker_restart", broker=("127.0.0.1", mosquitto.port), seed=3, start=START,
               on_broker_restart=restart) as fleet:
        fleet.run_for(hours=16)
        assert fleet.lns.wait_published(10)
        after = [s for s in fleet.sent if at_h(fleet, s.virtual_ms) > 12.5]
        got = uplinks.wait_for(sum(s.published for s in fleet.sent))
        assert fleet.summary()["broker_restarts"] == 1
    assert uplinks.connects > connects
    arrived = {(u["dev_eui"], u["fcnt"]) for u in got}
    assert len(after) >= 9 and all((s.dev_eui, s.fcnt) in arrived for s in after)


# -- the simulator itself ------------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_uplinks_at_the_same_virtual_times(mosquitto, uplinks):
    def once():
        with Fleet(4, scenario="stress", broker=("127.0.0.1", mosquitto.port), seed=11, start=START) as fleet:
            fleet.run_for(hours=8)
            return [(s.node, s.fcnt, s.payload_hex, s.virtual_ms, s.heard, s.published) for s in fleet.sent]

    first = once()
    assert len(first) > 20 and sorted(first) == sorted(once())


def test_a_killed_worker_is_restarted_and_its_nodes_carry_on_with_their_sleep_memory(mosquitto, uplinks):
    with Fleet(2, broker=("127.0.0.1", mosquitto.port), seed=5, start=START, workers=2) as fleet:
        fleet.run_for(hours=2)
        wakes = fleet.nodes[0].state()["wake"]
        victim = fleet._workers[0].proc
        victim.kill()
        victim.wait()
        fleet.run_for(hours=2)
        s = fleet.summary()
        assert s["worker_restarts"] == 1 and victim.poll() is not None
        assert fleet.nodes[0].state()["wake"] == wakes + 8  # same sleep memory, no reset in between
        assert [m.message["reset_cause"] for m in fleet.sent if m.message["message"] == "status"] == ["power_on"] * 2
        procs = [w.proc for w in fleet._workers]
    assert all(p.poll() is not None for p in procs)  # close() left no process behind


def test_the_cli_prints_a_summary_and_writes_the_report(mosquitto, uplinks, tmp_path, capsys):
    report = tmp_path / "run.jsonl"
    code = cli_main(["simulate", "--nodes", "4", "--hours", "3", "--broker", f"127.0.0.1:{mosquitto.port}",
                     "--seed", "2", "--report", str(report), "--start", "2026-01-01T00:00:00Z"])
    out = capsys.readouterr().out
    assert code == 0
    assert "wakes" in out and "uplinks sent" in out and "duty-cycle deferrals" in out
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    summary = rows[-1]
    assert summary["event"] == "summary" and summary["nodes"] == 4 and summary["wakes"] >= 44
    ups = [r for r in rows if r["event"] == "uplink"]
    assert len(ups) == summary["uplinks"] and len([r for r in rows if r["event"] == "join"]) == 4
    assert all(r["message"] == decode_uplink(r["fport"], bytes.fromhex(r["payload_hex"]))["data"] for r in ups)
    got = uplinks.wait_for(summary["up_published"])
    assert sorted((u["dev_eui"], u["fcnt"]) for u in got) == sorted((r["dev_eui"], r["fcnt"]) for r in ups)


def test_every_preset_scenario_loads_and_gives_the_soil_share_it_asks_for():
    assert {"city", "drying", "filling", "faults", "outage", "power_cycle", "broker_restart", "stress"} <= set(
        scenarios.presets())
    for name in scenarios.presets():
        sc = scenarios.load(name)
        plans = sc.plan(20, seed=1)
        assert sum(p.kind == "soil" for p in plans) == round(20 * sc.soil_share), name
        assert all(p.world["kind"] == p.kind == p.config["kind"] for p in plans)
    drying = scenarios.load("drying").plan(8)
    assert all(p.world["irrigations"] == [{"at_h": 18, "to": 34}] for p in drying if p.kind == "soil")


def test_a_scenario_with_an_unknown_key_or_a_bad_event_is_refused_with_the_reason(tmp_path):
    with pytest.raises(scenarios.ScenarioError, match="unknown keys"):
        scenarios.load({"name": "x", "gatways": 2})
    with pytest.raises(scenarios.ScenarioError, match="'do' must be one of"):
        scenarios.load({"events": [{"at_h": 1, "do": "explode"}]})
    with pytest.raises(scenarios.ScenarioError, match="data_rate"):
        scenarios.load({"network": {"data_rate": 9}})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(scenarios.ScenarioError, match="not valid JSON"):
        scenarios.load(bad)
    with pytest.raises(scenarios.ScenarioError, match="no such preset"):
        scenarios.load("no-such-scenario")
