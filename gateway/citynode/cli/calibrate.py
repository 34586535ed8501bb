"""Calibrate a node's sensor at the site and store the result in the board's config.

  citynode calibrate soil --port /dev/ttyUSB0        guided: dry point, then wet point
  citynode calibrate fill --port /dev/ttyUSB0        measure the empty container
  citynode calibrate soil --port P --yes --only wet  scripts: measure now, keep the other point from the board

Soil (capacitive probe): the probe reads a higher voltage in dry soil than in wet soil.
  1. DRY: hold the probe in the air (or put it in dry soil); readings appear live; the point is taken once
     --readings consecutive values lie within --tolerance-mv (their median).
  2. WET: put the probe in water up to its line (or saturated soil: then give --wet-vwc-pct, e.g. 45).
  3. soil_dry_mv, soil_wet_mv and soil_wet_vwc_pct are checked by the node's schema and written to config.json.
  --dry-mv / --wet-mv give a point you already know instead of measuring it.
Fill (ultrasonic sensor under the lid): with the container EMPTY and the lid closed, the median of a stable run
of readings becomes empty_distance_m; full_distance_m is --full-distance-m or the sensor's blind zone plus a
margin (A02YYUW 0.10 m, JSN-SR04T 0.32 m).

Readings come from the node's own drivers, run on the board over the USB cable; nothing is sent by radio.
Exit status: 0 calibrated, 2 not (the message says why and what to do).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="target", metavar="soil|fill", required=True)
    soil = sub.add_parser("soil", help="two-point calibration of a capacitive soil probe (dry, wet)")
    fill = sub.add_parser("fill", help="measure the empty container (empty_distance_m)")
    for s in (soil, fill):
        s.add_argument("--port", "-p", required=True, help="serial port of the board")
        s.add_argument("--yes", "-y", action="store_true", help="do not wait for Enter before each point")
        s.add_argument("--dry-run", action="store_true", help="measure and show, but do not write the config")
        s.add_argument("--json", action="store_true", help="print one JSON document for scripts")
        s.add_argument("--max-readings", type=int, default=40, help="give up after this many readings (default 40)")
    soil.add_argument("--readings", type=int, default=5, help="consecutive readings that must agree (default 5)")
    soil.add_argument("--tolerance-mv", type=float, default=15.0, help="how close they must be, mV (default 15)")
    soil.add_argument("--wet-vwc-pct", type=float, default=100.0,
                      help="moisture of the wet reference in %% (water: 100, the default; saturated soil: ~45)")
    soil.add_argument("--dry-mv", type=int, help="use this dry point instead of measuring it")
    soil.add_argument("--wet-mv", type=int, help="use this wet point instead of measuring it")
    soil.add_argument("--only", choices=("dry", "wet"), help="measure only this point; keep the other")
    fill.add_argument("--readings", type=int, default=7, help="consecutive readings that must agree (default 7)")
    fill.add_argument("--tolerance-m", type=float, default=0.02, help="how close they must be, m (default 0.02)")
    fill.add_argument("--full-distance-m", type=float, help="distance from the sensor at which it is full")


SOIL_STEPS = {
    "dry": "DRY point: hold the probe in the air (or push it into dry soil) and keep it still.",
    "wet": "WET point: put the probe in water up to its line (or in saturated soil) and keep it still.",
}


def _wait_enter(out: Any, args: argparse.Namespace, text: str) -> None:
    out.print(f"[bold]{text}[/]")
    if args.yes:
        return
    out.print("Press Enter to start measuring. ", end="")
    if not sys.stdin.readline():
        from citynode.tools.errors import ToolError

        raise ToolError("No answer (end of input).", "Run it in a terminal, or add --yes for scripts.")


def _measure(link: Any, args: argparse.Namespace, out: Any, name: str, kind: str, field: str, unit: str,
             tolerance: float) -> Any:
    from citynode.tools.calibration import measure_point, read_values

    def show(value: float, stable: bool) -> None:
        if not args.json:
            out.print(f"    {value:g} {unit}" + ("  [green]stable[/]" if stable else "  [dim]settling…[/]"))

    point = measure_point(name, lambda n: read_values(link, kind, n), field, count=args.readings,
                          tolerance=tolerance, max_readings=args.max_readings, on_reading=show)
    if not args.json:
        out.print(f"  [green]✔ {name}: {point.value:g} {unit}[/] (median of the last {args.readings})")
    return point


def _soil(link: Any, args: argparse.Namespace, out: Any, current: dict[str, Any]) -> dict[str, Any]:
    from citynode.tools.calibration import Point, soil_settings
    from citynode.tools.errors import CalibrationError

    if current["kind"] != "soil":
        raise CalibrationError("dry", "this board is configured as a fill node", [],
                               "Use `citynode calibrate fill`, or check you plugged in the right board.")
    if current["soil_sensor"] != "capacitive":
        raise CalibrationError("dry", "this node has an SDI-12 probe, which is calibrated at the factory", [],
                               "Nothing to do for SDI-12 probes.")
    given = {"dry": args.dry_mv, "wet": args.wet_mv}
    if args.only:
        other = "wet" if args.only == "dry" else "dry"
        if given[other] is None:
            given[other] = current[f"soil_{other}_mv"] or None
        if given[other] is None:
            raise CalibrationError(other, f"--only {args.only} needs the {other} point: the board has none", [],
                                   f"Measure both points, or give --{other}-mv.")
    points = {}
    for name in ("dry", "wet"):
        if given[name] is not None:
            points[name] = Point(name, float(given[name]), [])
            continue
        _wait_enter(out, args, SOIL_STEPS[name])
        points[name] = _measure(link, args, out, name, "soil", "raw_mv", "mV", args.tolerance_mv)
    return {"points": {n: {"mv": p.value, "readings": p.readings} for n, p in points.items()},
            "settings": soil_settings(points["dry"], points["wet"], args.wet_vwc_pct)}


def _fill(link: Any, args: argparse.Namespace, out: Any, current: dict[str, Any]) -> dict[str, Any]:
    from citynode.tools.calibration import fill_settings
    from citynode.tools.errors import CalibrationError

    if current["kind"] != "fill":
        raise CalibrationError("empty", "this board is configured as a soil node", [],
                               "Use `citynode calibrate soil`, or check you plugged in the right board.")
    _wait_enter(out, args, "EMPTY container: make sure it is empty and the lid with the sensor is closed.")
    point = _measure(link, args, out, "empty", "fill", "distance_m", "m", args.tolerance_m)
    return {"points": {"empty": {"distance_m": point.value, "readings": point.readings}},
            "settings": fill_settings(point, current["fill_sensor"], args.full_distance_m)}


def run(args: argparse.Namespace) -> int:
    from citynode.tools import render
    from citynode.tools.board_link import BoardLink, check_port, wait_for_repl
    from citynode.tools.calibration import board_config, write_config
    from citynode.tools.errors import ToolError
    from citynode.tools.firmware import node_config

    out = render.console(stderr=args.json)
    try:
        check_port(args.port)
        wait_for_repl(args.port)
        link = BoardLink(args.port)
        current = board_config(link)
        result = (_soil if args.target == "soil" else _fill)(link, args, out, current)
        changed = False
        if not args.dry_run:
            new, changed = write_config(link, current, result["settings"])
            result["config_crc"] = f"{node_config().checksum(new):04x}"
    except ToolError as e:
        render.print_error(e, as_json=args.json, command=f"calibrate {args.target}")
        return 2
    if args.json:
        render.emit_json({"ok": True, "target": args.target, "dry_run": args.dry_run, "changed": changed, **result})
        return 0
    settings = ", ".join(f"{k} = {v:g}" for k, v in result["settings"].items())
    if args.dry_run:
        out.print(f"[cyan]Dry run: would write {settings} (nothing written).[/]")
    elif changed:
        out.print(f"[green bold]Calibrated:[/] {settings} written to the board's config.json "
                  f"(config checksum {result['config_crc']}). The node uses it from its next wake.")
    else:
        out.print(f"[green]Calibrated: {settings}; the board's config already had these values.[/]")
    return 0
