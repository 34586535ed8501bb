"""Fleet simulator benchmark: 200 nodes x 24 h of 15-minute sampling on virtual time (the real firmware on
MicroPython workers, emulated RAK3172 modems, the emulated ChirpStack publishing to a private Mosquitto).

    .venv/bin/python -m bench.fleet_bench

Measures the real seconds of the run, wakes per second and CPU seconds per wake (workers and host together),
and, on a shorter run, how the number of MicroPython workers changes the throughput.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "gateway") not in sys.path:
    sys.path.insert(0, str(ROOT / "gateway"))

NODES = 200
HOURS = 24
START = 1_767_225_600  # 2026-01-01T00:00:00Z: a fixed virtual start, so every run simulates the same day
SWEEP_HOURS = 4


def _run(nodes: int, hours: float, workers: int | None = None) -> dict:
    from citynode.emulation.fleet import Fleet

    t0 = time.monotonic()
    with Fleet(nodes, scenario="city", seed=1, start=START, workers=workers) as fleet:
        setup_s = time.monotonic() - t0
        fleet.run_for(hours=hours)
        s = fleet.summary()
    wakes = s["wakes"]
    return {"nodes": nodes, "virtual_hours": hours, "workers": s["workers"], "wakes": wakes,
            "load_average_after": round(os.getloadavg()[0], 2),
            "cpu_workers_ms_per_wake": round(s["cpu_workers_s"] * 1000 / wakes, 2) if wakes else None,
            "cpu_host_ms_per_wake": round(s["cpu_host_s"] * 1000 / wakes, 2) if wakes else None,
            "uplinks": s["uplinks"], "up_published": s["up_published"], "joins": s["joins"],
            "duty_cycle_deferrals": s["duty_cycle_deferrals"], "setup_s": round(setup_s, 2), "real_s": s["real_s"],
            "wakes_per_s": s["wakes_per_s"], "cpu_s": s["cpu_s"],
            "cpu_ms_per_wake": round(s["cpu_s"] * 1000 / wakes, 2) if wakes else None,
            "virtual_s_per_real_s": round(hours * 3600 / s["real_s"]) if s["real_s"] else None}


def run(results: dict) -> None:
    main = _run(NODES, HOURS)
    sweep = [_run(NODES, SWEEP_HOURS, workers=k) for k in (1, 2, 3, 4, 6)]
    results["fleet"] = {"command": ".venv/bin/python -m bench.fleet_bench", "cpus": os.cpu_count(),
                        "main": main, "workers_sweep": sweep}


def markdown(r: dict) -> str:
    f = r["fleet"]
    m = f["main"]
    lines = ["## Fleet simulator", "",
             f"Command: `make bench` (or `{f['command']}`). {m['nodes']} nodes (half soil, half fill; `city` "
             f"scenario) for {m['virtual_hours']} virtual hours of 15-minute sampling: the real firmware on "
             f"{m['workers']} MicroPython worker processes, one emulated RAK3172 per node, the emulated ChirpStack "
             f"publishing every uplink to a private Mosquitto. {f['cpus']} CPUs.", "",
             "| | value |", "|---|---|",
             f"| real seconds for {m['nodes']} nodes x {m['virtual_hours']} h | **{m['real_s']}** |",
             f"| wakes (node wake cycles) | {m['wakes']} |",
             f"| wakes per second | **{m['wakes_per_s']}** |",
             f"| CPU per wake, workers + host (ms) | {m['cpu_ms_per_wake']} ({m['cpu_workers_ms_per_wake']} + "
             f"{m['cpu_host_ms_per_wake']}) |",
             f"| virtual seconds per real second | {m['virtual_s_per_real_s']} |",
             f"| uplinks sent / published | {m['uplinks']} / {m['up_published']} |",
             f"| joins | {m['joins']} |",
             f"| duty-cycle deferrals | {m['duty_cycle_deferrals']} |",
             f"| setup (broker, LNS, workers) seconds | {m['setup_s']} |",
             f"| load average (1 min) at the end | {m['load_average_after']} |", "",
             f"Workers ({m['nodes']} nodes, {SWEEP_HOURS} virtual hours, including the first boot and join of "
             "every node):", "", "| workers | real s | wakes/s | CPU ms/wake |", "|---|---|---|---|"]
    for s in f["workers_sweep"]:
        lines.append(f"| {s['workers']} | {s['real_s']} | {s['wakes_per_s']} | {s['cpu_ms_per_wake']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    res: dict = {}
    run(res)
    print(markdown(res))
