"""The citynode demo: a fleet of emulated sensor nodes (the real firmware on MicroPython, emulated RAK3172
modems and network server) -> the bridge -> MQTT, with a live view of the readings, alerts and each node's
radio and battery as the city platform would receive them.

  citynode demo                       12 nodes, 60 virtual seconds per real second, until Ctrl-C
  citynode demo --nodes 40 --speed 300
  citynode demo --broker 127.0.0.1:1883     use your own broker (and watch citynode/# yourself)
  citynode demo --hours 6 --no-ui --json    run 6 virtual hours as fast as possible, print a summary

Needs nothing installed but Python: without --broker it starts a private Mosquitto, or, where Mosquitto is
not installed, an embedded Python broker. Ctrl-C stops everything and leaves no process behind.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", "-n", type=int, default=12, help="how many nodes, soil and fill mixed (default 12)")
    p.add_argument("--speed", type=float, default=60.0,
                   help="virtual seconds per real second (default 60: a 15-minute sample every 15 s)")
    p.add_argument("--hours", type=float, help="stop after this many virtual hours (default: run until Ctrl-C)")
    p.add_argument("--scenario", default="city", help="fleet scenario (see `citynode simulate --list-scenarios`)")
    p.add_argument("--broker", help="host:port of an existing MQTT broker (default: start a private one)")
    p.add_argument("--no-ui", action="store_true", help="no live view: print a summary line now and then")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")


def _broker(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def run(args: argparse.Namespace) -> int:
    from citynode.demo import Demo

    try:
        broker = _broker(args.broker)
    except ValueError:
        print(f"citynode demo: --broker must be host:port, got {args.broker!r}", file=sys.stderr)
        return 2
    ui = not args.no_ui and sys.stdout.isatty()
    speed = None if args.hours is not None and args.no_ui else args.speed
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("citynode demo: starting the broker, the fleet and the bridge ...", file=sys.stderr, flush=True)
    demo = Demo(args.nodes, speed=speed, scenario=args.scenario, broker=broker, ui=ui)
    try:
        demo.start()
    except Exception as e:  # noqa: BLE001 - one line for people, not a traceback
        print(f"citynode demo: could not start: {e}", file=sys.stderr)
        return 2
    runner = threading.Thread(target=_drive, args=(demo, args.hours, stop), name="fleet", daemon=True)
    try:
        runner.start()
        if ui:
            _live(demo, runner, stop)
        else:
            while runner.is_alive():
                runner.join(timeout=5)
                if not args.json:
                    print(json.dumps(demo.summary()), flush=True)
        if args.hours is not None:
            demo.settle(timeout_s=30)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        runner.join(timeout=30)
        summary = demo.summary()
        demo.stop()
    print(json.dumps(summary) if args.json else
          f"citynode demo: {summary['nodes']} nodes, {summary['virtual_hours']} virtual hours, "
          f"{summary['uplinks_sent']} uplinks, {summary['readings_at_platform']} readings and "
          f"{summary['alerts_at_platform']} alerts at the platform; everything stopped.")
    return 0


def _drive(demo, hours: float | None, stop: threading.Event) -> None:
    if hours is not None:
        step = 0.25
        done = 0.0
        while done < hours and not stop.is_set():
            demo.run_for(hours=min(step, hours - done))
            done += step
        return
    demo.run_forever(stop)


def _live(demo, runner: threading.Thread, stop: threading.Event) -> None:
    from rich.live import Live

    with Live(demo.dashboard.renderable(), refresh_per_second=2, screen=False) as live:
        while runner.is_alive() and not stop.is_set():
            time.sleep(0.5)
            s = demo.summary()
            live.update(demo.dashboard.renderable(
                f"citynode demo (Ctrl-C to stop) — broker {s['broker']} ({s['broker_kind']}), "
                f"virtual time +{s['virtual_hours']} h"))
