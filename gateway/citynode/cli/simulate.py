"""Simulate a fleet of citynode nodes on virtual time: the real firmware on MicroPython, emulated RAK3172
modems and an emulated network server that publishes ChirpStack v4 (or TTS v3) uplinks to MQTT.

  citynode simulate --nodes 20 --hours 24                 a day of a 20-node fleet, private broker
  citynode simulate --nodes 200 --hours 24 --report run.jsonl
  citynode simulate --scenario drying --broker 127.0.0.1:1883     publish to your broker (run the bridge there)
  citynode simulate --scenario my-city.json --flavour tts --speed 600   10 virtual minutes per real second
  citynode simulate --list-scenarios

Half the nodes measure soil moisture under street trees, half the fill level of waste containers (the scenario
can change the mix). Each node samples every 15 minutes and sends batches, alarms and a daily status as it
would in the street; a simulated day of a small fleet takes seconds. Without --broker a private Mosquitto (or
the pure-Python amqtt broker) is started on a free port and stopped at the end; with --broker, subscribe to
application/+/device/+/event/up (ChirpStack) or v3/+/devices/+/up (TTS) to watch the uplinks arrive, with
timestamps from the virtual clock.

Scenarios: city (default), drying, filling, faults, outage, power_cycle, broker_restart, stress, or a JSON
file in the same format (gateway/citynode/emulation/scenarios.py documents it). A broker_restart event
restarts the private broker; with --broker it is skipped (counted).

The summary at the end: nodes, wakes, uplinks sent, heard and lost at the network server, publications and
duplicates, joins, duty-cycle deferrals, transmit failures, resets, real seconds and wakes per second.
--report FILE writes every uplink and join as JSON lines (node, dev_eui, fcnt, fport, payload_hex, the decoded
message, virtual time, heard, published), then the summary, so a test can compare what the nodes sent with
what the platform received.

Exit status: 0 after a run, 1 when nodes crashed or workers had to be restarted, 2 for bad usage (unknown
scenario, broker not reachable, no micropython binary).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", "-n", type=int, default=20, help="how many nodes (default 20)")
    p.add_argument("--hours", type=float, help="virtual hours to run (default: the scenario's, else 24)")
    p.add_argument("--scenario", "-s", default="city", help="preset name or JSON file (default: city)")
    p.add_argument("--broker", help="host:port of the MQTT broker (default: start a private one)")
    p.add_argument("--flavour", choices=("chirpstack", "tts"), default="chirpstack",
                   help="network server to emulate (default: chirpstack)")
    p.add_argument("--seed", type=int, default=0, help="seed for identities, spreads and radio (default 0)")
    p.add_argument("--report", help="write the uplink/join records and the summary here (JSON lines)")
    p.add_argument("--speed", type=float, help="virtual seconds per real second (default: as fast as possible)")
    p.add_argument("--workers", type=int, help="MicroPython worker processes (default: 2 per CPU)")
    p.add_argument("--start", help="virtual start time, ISO 8601 (default: now)")
    p.add_argument("--application-id", help="ChirpStack application ID / TTS application in the topics")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help="print every node log line")
    p.add_argument("--list-scenarios", action="store_true", help="list the preset scenarios and exit")


def _fail(message: str) -> int:
    print(f"citynode simulate: {message}", file=sys.stderr)
    return 2


def _start(text: str | None) -> float | None:
    if text is None:
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _print_summary(s: dict, out=None) -> None:
    out = out or sys.stdout  # looked up at call time: tests and tools may swap it
    rows = [
        ("scenario", f"{s['scenario']} ({s['flavour']}, seed {s['seed']})"),
        ("nodes", f"{s['nodes']} ({s['soil_nodes']} soil, {s['fill_nodes']} fill) on {s['workers']} workers"),
        ("virtual time", f"{s['virtual_start']} .. {s['virtual_end']} ({s['virtual_hours']} h)"),
        ("wakes", s["wakes"]),
        ("uplinks sent", s["uplinks"]),
        ("  heard", s["uplinks_heard"]),
        ("  lost at the LNS", s["uplinks_lost"]),
        ("  published", f"{s['up_published']} ({s['up_duplicated']} duplicated)"),
        ("joins", f"{s['joins']} of {s['join_requests']} requests"),
        ("duty-cycle deferrals", s["duty_cycle_deferrals"]),
        ("tx failures", ", ".join(f"{k} {v}" for k, v in sorted(s["tx_failures"].items())) or "0"),
        ("resets", f"{s['power_cycles']} power cuts, {s['watchdog_resets']} watchdog, {s['reboots']} reboots"),
        ("broker restarts", s["broker_restarts"]),
        ("real seconds", s["real_s"]),
        ("wakes per second", s["wakes_per_s"]),
        ("CPU seconds", s["cpu_s"]),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=out)


def run(args: argparse.Namespace) -> int:
    from citynode.emulation import scenarios
    from citynode.emulation.fleet import Fleet, FleetError
    from citynode.emulation.lns import LNSError

    if args.list_scenarios:
        for name, text in scenarios.describe().items():
            print(f"{name:<16}{text}")
        return 0
    if args.nodes < 1:
        return _fail("--nodes must be at least 1")
    try:
        scenario = scenarios.load(args.scenario)
        start = _start(args.start)
    except (scenarios.ScenarioError, ValueError) as e:
        return _fail(str(e))
    hours = args.hours if args.hours is not None else (scenario.hours or 24.0)
    if hours <= 0:
        return _fail("--hours must be positive")

    def on_log(node, t_ms, text):
        print(f"{t_ms / 1000:.3f} {node.name} {text}", file=sys.stderr)

    lns_options = {}
    if args.application_id:
        lns_options["application_id"] = args.application_id
    fleet = Fleet(args.nodes, scenario=scenario, broker=args.broker, flavour=args.flavour, seed=args.seed,
                  workers=args.workers, start=start, speed=args.speed, on_log=on_log if args.verbose else None,
                  lns_options=lns_options)
    try:
        try:
            fleet.start()
        except (FleetError, LNSError) as e:
            return _fail(str(e))
        progress = sys.stderr.isatty() and not args.verbose
        done = 0.0
        while done < hours:
            step = min(1.0, hours - done)
            fleet.run_for(hours=step)
            done += step
            if progress:
                s = fleet.summary()
                print(f"\r{done:g}/{hours:g} h  wakes {s['wakes']}  uplinks {s['uplinks']}", end="",
                      file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr)
        summary = fleet.summary()
        if args.report:
            fleet.write_report(args.report)
    except KeyboardInterrupt:
        print("\ninterrupted; summary so far:", file=sys.stderr)
        summary = fleet.summary()
    finally:
        fleet.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
        if args.report:
            print(f"report: {args.report}")
    return 1 if summary["crashes"] or summary["worker_restarts"] else 0
