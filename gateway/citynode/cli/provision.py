"""Give nodes their identity, keys and site settings, put them on the boards, and write what the bridge and the
network server need.

  citynode provision --port /dev/ttyUSB0 --name tree-0001 --kind soil --asset-id T-0001 --lat 52.52 --lon 13.405
  citynode provision --port /dev/ttyUSB0 --sheet sites.csv           bulk: one row per node, boards one by one
  citynode provision --sheet sites.csv --no-flash                    files only, no board attached

For each node (one row of the sheet, or the site given on the command line):
  1. identity: the DevEUI of its RAK3172 modem (else one made from the board's MAC, else a random one), an
     AppKey and a P2P key made with Python's `secrets`. They are made once and kept in OUT/keys/NAME.json
     (mode 0600): running again never makes new keys for a node. Keys are never shown: only masked (a1b2…ef).
  2. config: kind, sensor model, calibration, container geometry, interval, location and asset id, checked
     against the node's own schema before any board is touched;
  3. the board: everything `citynode flash` does (firmware with --firmware, the app, config.json, secrets.json,
     one test wake cycle);
  4. outputs, rewritten after every finished node: the bridge's registry (--registry, .toml or .csv),
     OUT/tts-devices.json and .csv (The Things Stack import), OUT/chirpstack-devices.jsonl (ChirpStack v4 REST
     requests), OUT/nodes/NAME/ (the node's files). Import files hold keys (mode 0600): import them, then keep
     them safe or delete them.

Importing into the network server (LoRaWAN nodes only; P2P nodes get their key in the registry):
  The Things Stack Console: the application -> Import end devices -> "The Things Stack JSON" -> tts-devices.json
  ttn-lw-cli end-devices create --application-id APP < OUT/tts-devices.json
  ChirpStack v4 (give --chirpstack-application and --chirpstack-device-profile, or export them for envsubst):
    envsubst < OUT/chirpstack-devices.jsonl | while read -r req; do curl -fsS -X POST \\
      "$CHIRPSTACK_REST$(jq -r .path <<<"$req")" -H "Grpc-Metadata-Authorization: Bearer $TOKEN" \\
      -H "Content-Type: application/json" -d "$(jq -c .body <<<"$req")"; done
  ($CHIRPSTACK_REST: the chirpstack-rest-api address, e.g. http://localhost:8090; TOKEN: an API key.)

Bulk mode: the sheet is CSV (spreadsheet export) with the columns name, kind and optionally board, port,
asset_id, lat, lon, sensor, interval_s, dev_eui, labels, and any node config key (soil_dry_mv,
empty_distance_m, ...). Rows are done one after another with a progress bar; without a port column it asks
you to connect each board (--yes: do not ask). OUT/provision-state.json records finished rows: after an
interruption run the same command again and it continues at the first unfinished row.

Exit status: 0 all done, 1 a node failed its check, 2 something stopped the run (the message says what to do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from citynode.tools.board_link import BOARDS

    p.add_argument("--port", "-p", help="serial port of the board (or a port column in the sheet)")
    p.add_argument("--board", "-b", choices=sorted(BOARDS), default="esp32", help="board type (default esp32)")
    p.add_argument("--sheet", type=Path, metavar="SITES.csv", help="bulk: one row per node and site")
    site = p.add_argument_group("one node (instead of --sheet)")
    site.add_argument("--name", help="device name in the registry and topics (a-z 0-9 _ -)")
    site.add_argument("--kind", choices=("soil", "fill"), help="soil moisture or fill level node")
    site.add_argument("--sensor", help="soil: capacitive|smt100|teros12|cs650; fill: a02yyuw|jsn_sr04t_uart|"
                                       "jsn_sr04t_pulse")
    site.add_argument("--asset-id", help="tree or container number")
    site.add_argument("--lat", help="latitude (decimal degrees)")
    site.add_argument("--lon", help="longitude (decimal degrees)")
    site.add_argument("--interval-s", help="seconds between measurements (60..15300)")
    site.add_argument("--dev-eui", help="use this DevEUI instead of the modem's")
    site.add_argument("--labels", help="registry labels, key=value;key=value")
    site.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="any node config key, e.g. --set soil_dry_mv=2480 --set empty_distance_m=1.3")
    out = p.add_argument_group("outputs")
    out.add_argument("--out", type=Path, default=Path("provisioning"),
                     help="folder for keys, run state and import files (default ./provisioning)")
    out.add_argument("--registry", type=Path, help="the bridge's registry to write (default OUT/registry.toml)")
    out.add_argument("--network", choices=("chirpstack", "tts"), default="chirpstack",
                     help="network server of the LoRaWAN nodes (the registry's source; default chirpstack)")
    out.add_argument("--join-eui", default="0000000000000000", help="JoinEUI (AppEUI) for the nodes")
    out.add_argument("--frequency-plan", default="EU_863_870_TTN", help="TTS frequency plan id")
    out.add_argument("--chirpstack-application", help="ChirpStack application id (UUID) for the import file")
    out.add_argument("--chirpstack-device-profile", help="ChirpStack device-profile id (UUID) for the import file")
    how = p.add_argument_group("how")
    how.add_argument("--firmware", type=Path, metavar="MICROPYTHON.bin", help="write MicroPython first")
    how.add_argument("--frozen", action="store_true", help="the app is frozen into the firmware image")
    how.add_argument("--no-flash", action="store_true", help="only make identities and files; touch no board")
    how.add_argument("--no-check", action="store_true", help="skip the test wake cycle")
    how.add_argument("--keep-going", action="store_true", help="bulk: go on with the next row after a failure")
    how.add_argument("--yes", "-y", action="store_true", help="never ask (for scripts)")
    how.add_argument("--dry-run", action="store_true", help="show what would be done; write nothing")
    how.add_argument("--json", action="store_true", help="print one JSON document for scripts")


def _sites(args: argparse.Namespace) -> list[Any]:
    from citynode.tools.errors import SheetError
    from citynode.tools.sitesheet import load_sheet, make_site

    if args.sheet:
        return load_sheet(args.sheet)
    if not args.name or not args.kind:
        raise SheetError("the command line", None, "give --sheet, or --name and --kind for one node")
    cells = {"name": args.name, "kind": args.kind, "sensor": args.sensor, "asset_id": args.asset_id, "lat": args.lat,
             "lon": args.lon, "interval_s": args.interval_s, "dev_eui": args.dev_eui, "labels": args.labels}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SheetError("the command line", "--set", f"{item!r} is not KEY=VALUE")
        cells[key.strip().lower()] = value
    return [make_site({k: v for k, v in cells.items() if v is not None}, 1, "the command line")]


def _options(args: argparse.Namespace) -> Any:
    from citynode.tools.outputs import CS_APPLICATION, CS_PROFILE, NetworkSettings
    from citynode.tools.provisioning import Options

    net = NetworkSettings(args.network, args.frequency_plan, args.chirpstack_application or CS_APPLICATION,
                          args.chirpstack_device_profile or CS_PROFILE)
    return Options(out_dir=args.out, registry=args.registry or args.out / "registry.toml", board=args.board,
                   port=args.port, join_eui=args.join_eui, net=net, firmware=args.firmware, frozen=args.frozen,
                   flash=not args.no_flash, check=not args.no_check, dry_run=args.dry_run)


def _ask(out: Any, text: str) -> str:
    out.print(text, end="")
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.strip().lower()


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from citynode.tools import render
    from citynode.tools.errors import SheetError, ToolError
    from citynode.tools.flashing import Flasher
    from citynode.tools.identity import EUI_SOURCES, normalise_hex
    from citynode.tools.provisioning import Provisioner, RowResult

    out = render.console(stderr=args.json)
    try:
        if normalise_hex(args.join_eui, 8) is None:
            raise SheetError("--join-eui", None, "must be 16 hex digits")
        args.join_eui = normalise_hex(args.join_eui, 8)
        sites = _sites(args)
        opts = _options(args)
        prov = Provisioner(opts, Flasher())
    except ToolError as e:
        render.print_error(e, as_json=args.json, command="provision")
        return 2
    flasher = prov.flasher
    if not args.json:
        flasher.on_step = lambda s: render.print_step(out, s, flasher.last_check)
    todo = [s for s in sites if not prov.state.is_done(s.name)]
    swap = opts.flash and len(todo) > 1 and any(not s.port for s in todo)
    if swap and not args.yes and not sys.stdin.isatty():
        flasher.close()
        render.print_error(SheetError(str(args.sheet), "port", "several boards share one port, and nobody can be "
                                      "asked to swap them"), as_json=args.json, command="provision")
        return 2
    if not args.json:
        done_before = len(sites) - len(todo)
        out.print(f"[bold]{len(sites)} node(s); {done_before} already done[/]"
                  + (f", continuing at {todo[0].where} ({todo[0].name})" if todo and done_before else "")
                  + (" [cyan](dry run: nothing is written)[/]" if args.dry_run else ""))
    results: list[RowResult] = [RowResult(s, "already_done") for s in sites if s not in todo]
    stopped = None
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=out,
                        disable=args.json or not out.is_terminal)
    with flasher, progress:
        task = progress.add_task("provisioning", total=len(sites), completed=len(sites) - len(todo))
        for n, site in enumerate(todo, start=1):
            progress.update(task, description=f"{site.name}")
            if not args.json:
                out.print(f"\n[bold]({len(sites) - len(todo) + n}/{len(sites)}) {site.name}[/] — {site.kind} "
                          f"node{', asset ' + site.asset_id if site.asset_id else ''} ({site.where})")
            try:
                if swap and not args.yes:
                    answer = _ask(out, f"Connect the board for {site.name} to {prov.port_of(site)} and press Enter "
                                       "(s: skip this row, q: stop) ")
                    if answer == "q":
                        stopped = "stopped on request"
                        break
                    if answer == "s":
                        continue
                res = prov.provision(site)
            except (ToolError, EOFError) as e:
                err = e if isinstance(e, ToolError) else ToolError("no answer (end of input)")
                res = RowResult(site, "failed", prov.keys.get(site.name), error=err.to_json())
                if not args.json:
                    render.print_error(err, as_json=False, command="provision")
            results.append(res)
            if not args.json:
                if res.identity is not None:
                    m = res.identity.masked()
                    source = EUI_SOURCES.get(m["dev_eui_source"], m["dev_eui_source"])
                    out.print(f"  identity: DevEUI {m['dev_eui']} ({source}), AppKey {m['app_key']}, "
                              f"P2P key {m['p2p_key']} (keys masked; kept in {prov.keys.folder})")
                colour = {"done": "green", "would": "cyan"}.get(res.status, "red")
                out.print(f"  [{colour}]{res.status}[/]")
            progress.advance(task)
            if res.status == "failed" and not args.keep_going:
                stopped = f"stopped at {site.where} ({site.name}); fix it and run the same command again"
                break
    failed = [r for r in results if r.status == "failed"]
    files = next((r.files for r in reversed(results) if r.files), {})
    if args.json:
        render.emit_json({"ok": not failed and stopped is None, "dry_run": args.dry_run, "stopped": stopped,
                          "out": str(opts.out_dir), "outputs": {k: v for k, v in files.items()
                                                                if k not in ("config", "secrets")},
                          "rows": [r.to_json() for r in sorted(results, key=lambda r: r.site.row)]})
    else:
        done = sum(r.status in ("done", "already_done") for r in results)
        out.print(f"\n[bold]{done} of {len(sites)} node(s) done.[/]" + (f" [red]{stopped}.[/]" if stopped else ""))
        for what, path in files.items():
            if what not in ("config", "secrets"):
                out.print(f"  {what}: {path}")
        if any(k.startswith(("tts", "chirpstack")) for k in files):
            out.print("  [yellow]The network-server files hold keys (mode 0600): import them, then keep them safe "
                      "or delete them.[/]")
    if any(r.error and r.error.get("error") != "check_failed" for r in failed):
        return 2  # something stopped a node before it was set up
    return 1 if failed else 0
