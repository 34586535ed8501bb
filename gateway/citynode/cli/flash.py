"""Flash a board, configure it for this site and prove it works, in one command.

  citynode flash --port /dev/ttyUSB0 --board esp32 --config node.json --secrets secrets.json
  citynode flash --port /dev/ttyUSB0 --board rak11200 --firmware ESP32_GENERIC-v1.25.0.bin --config node.json
  citynode flash --port /dev/ttyUSB0 --board esp32 --dry-run          what would change; nothing is written

What it does, step by step:
  1. checks the serial port: it exists and no other program (a serial monitor, an IDE) holds it;
  2. with --firmware: compares the MicroPython image with the board (esptool verify-flash) and, only if it
     differs, erases the flash and writes it (esptool erase-flash, write-flash 0x1000);
  3. checks the board answers, runs MicroPython on an ESP32, and that its config is for this --board;
  4. builds the node app (.mpy) and copies only the files that changed (SHA-256), plus the micropython-lib
     LoRa packages when the radio is an SX1262 (radio sx126x_p2p); with --frozen only main.py;
  5. writes config.json (checked against the node's own schema first: a bad setting stops everything before
     the board is touched) and secrets.json (never shown);
  6. runs one wake cycle and shows the reading and the uplinks it sent, decoded;
  7. restarts the board so it runs on its own.
Running it again changes nothing and says so. Without --config the board keeps its config (a new board gets
the defaults); without --secrets it keeps its keys.

RAK11200: to write firmware, tie BOOT0 to GND and press RESET first; remove the link and press RESET when
asked. Exit status: 0 the node works, 1 it was set up but the check found a problem, 2 it could not be set up
(the message says why and what to do).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from citynode.tools.board_link import BOARDS

    p.add_argument("--port", "-p", required=True, help="serial port of the board, e.g. /dev/ttyUSB0")
    p.add_argument("--board", "-b", required=True, choices=sorted(BOARDS), help="which board this is")
    p.add_argument("--firmware", type=Path, metavar="MICROPYTHON.bin",
                   help="MicroPython image (ESP32_GENERIC .bin) to write first; left out: MicroPython is on it")
    p.add_argument("--config", type=Path, metavar="FILE", help="the node's config.json for this site")
    p.add_argument("--secrets", type=Path, metavar="FILE", help="the node's secrets.json (keys; keep it 0600)")
    p.add_argument("--frozen", action="store_true",
                   help="the app is frozen into the firmware image (firmware/manifest.py): copy only main.py")
    p.add_argument("--dry-run", action="store_true", help="show what would be done; write nothing")
    p.add_argument("--no-check", action="store_true", help="skip the test wake cycle (it sends an uplink)")
    p.add_argument("--yes", "-y", action="store_true", help="never ask (for scripts)")
    p.add_argument("--json", action="store_true", help="print one JSON document for scripts")


def _after_firmware(args: argparse.Namespace, out: Any) -> Callable[[Any], None]:
    """On a RAK11200 the ROM bootloader stays until BOOT0 is released: ask the technician to do it."""

    def ask(board: Any) -> None:
        if board.name != "rak11200" or args.yes or not sys.stdin.isatty():
            return
        out.print("[yellow]Remove the BOOT0 link, press RESET on the board, then press Enter.[/]")
        input()

    return ask


def run(args: argparse.Namespace) -> int:
    from citynode.tools import render
    from citynode.tools.board_link import BOARDS
    from citynode.tools.errors import ToolError
    from citynode.tools.firmware import load_config_file
    from citynode.tools.flashing import Flasher, FlashJob
    from citynode.tools.identity import load_secrets

    out = render.console(stderr=args.json)
    try:
        config = load_config_file(args.config) if args.config else None
        secrets, warnings = load_secrets(args.secrets) if args.secrets else (None, [])
        for w in warnings:
            out.print(f"[yellow]! {w}[/]")
        job = FlashJob(args.port, BOARDS[args.board], firmware=args.firmware, config=config,
                       config_source=str(args.config), secrets=secrets, frozen=args.frozen, dry_run=args.dry_run,
                       check=not args.no_check)
        if not args.json:
            out.print(f"[bold]Setting up the {args.board} board on {args.port}[/]"
                      + (" [cyan](dry run: nothing is written)[/]" if args.dry_run else ""))
        if args.firmware and args.board == "rak11200" and not (args.yes or args.dry_run) and sys.stdin.isatty():
            out.print("[yellow]Tie BOOT0 to GND and press RESET on the board (its ROM bootloader takes the "
                      "firmware), then press Enter.[/]")
            input()
        with Flasher(after_firmware=_after_firmware(args, out)) as flasher:
            if not args.json:
                flasher.on_step = lambda s: render.print_step(out, s, flasher.last_check)
            report = flasher.run(job)
    except ToolError as e:
        render.print_error(e, as_json=args.json, command="flash")
        return 2
    if args.json:
        render.emit_json({**report.to_json(), "dry_run": args.dry_run, "warnings": warnings})
    else:
        if args.dry_run:
            out.print("[cyan]Dry run: nothing was written to the board.[/]")
        elif not report.changed:
            out.print("[green]Nothing to change: the board was already set up like this.[/]")
        if report.check is not None:
            out.print("[green bold]The node works.[/]" if report.ok else
                      "[red bold]The node is set up, but the check found a problem (see above).[/]")
    return 0 if report.ok else 1
