"""Watch a board's console live: the node's log lines as they happen, with uplink and downlink payloads decoded.

  citynode monitor --port /dev/ttyUSB0              colours for people; Ctrl-C to stop
  citynode monitor --port /dev/ttyUSB0 --json       one JSON object per line, for scripts
  citynode monitor --port /dev/ttyUSB0 --count 10   stop after 10 node lines

What you see: the reading of every wake (`reading: vwc_pct 23.4 ...`), every uplink decoded with the payload
codec (`uplink soil_reading on port 1: {...} -> ok`), downlinks and what the node did with them, sensor and
radio errors in red, and the board's other console output dimmed. The monitor keeps running when the board
resets (its banner shows as "board restarted") and when the cable is pulled and plugged back in.
Opening the port does not reset the board. Another program holding the port (mpremote, a terminal) is
reported; close it first.

JSON lines: {"type": "sample"|"tx"|"downlink"|"sensor_error"|"config_error"|"radio"|"log"|"reset"|"console"|
"connected"|"disconnected", "text": ..., "time": ISO 8601, ...decoded fields}.
Exit status: 0 (also after Ctrl-C), 2 when the port cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any

STYLES = {"sample": "cyan", "tx": "magenta", "downlink": "yellow", "sensor_error": "red", "config_error": "red",
          "radio": "red", "log": "white", "reset": "bold blue", "console": "dim"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", "-p", required=True, help="serial port of the board")
    p.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200, MicroPython's)")
    p.add_argument("--json", action="store_true", help="one JSON object per line, for scripts")
    p.add_argument("--count", type=int, help="stop after this many node lines ([cn] ...)")
    p.add_argument("--quiet", "-q", action="store_true", help="show only the node's lines, not other console output")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _show(out: Any, args: argparse.Namespace, kind: str, text: str, event: Any = None) -> None:
    from rich.markup import escape

    from citynode.tools.logparse import describe

    if args.json:
        obj = event.to_json() if event is not None else {"type": kind, "text": text}
        print(json.dumps({**obj, "time": _now()}, ensure_ascii=False), flush=True)
        return
    stamp = datetime.now().strftime("%H:%M:%S")
    if kind in ("connected", "disconnected"):
        msg = f"connected to {text}" if kind == "connected" else f"board disconnected ({text}); waiting for it…"
        out.print(f"[dim]{stamp}[/] [bold yellow]── {escape(msg)}[/]")
    elif kind == "reset":
        out.print(f"[dim]{stamp}[/] [{STYLES['reset']}]── board restarted: {escape(text)}[/]")
    else:
        out.print(f"[dim]{stamp}[/] [{STYLES.get(kind, 'white')}]{escape(describe(event))}[/]")


def run(args: argparse.Namespace) -> int:
    from citynode.tools import render
    from citynode.tools.board_link import check_port
    from citynode.tools.console import SerialConsole
    from citynode.tools.errors import PortMissing, ToolError
    from citynode.tools.logparse import parse_line

    out = render.console()
    console = SerialConsole(args.port, args.baud)
    seen = 0
    try:
        try:
            check_port(args.port)
        except PortMissing:
            pass  # the cable may be on its way: wait for the port like after an unplug
        if not args.json:
            out.print(f"[bold]Watching {args.port}[/] (Ctrl-C to stop)")
        for chunk in console.chunks():
            if chunk.kind != "line":
                _show(out, args, chunk.kind, chunk.text)
                continue
            if not chunk.text.strip():
                continue
            event = parse_line(chunk.text)
            if args.quiet and event.kind in ("console",):
                continue
            _show(out, args, event.kind, chunk.text, event)
            if event.kind not in ("console", "reset"):
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
    except ToolError as e:
        render.print_error(e, as_json=args.json, command="monitor")
        return 2
    except KeyboardInterrupt:
        console.stop.set()
        if not args.json:
            out.print("\n[dim]monitor stopped.[/]")
    finally:
        sys.stdout.flush()
    return 0
