"""`citynode <command> ...`: the table of commands and the dispatcher.

Each command lives in its own module with `add_arguments(parser)` and `run(args) -> int` (the exit code).
Modules import their heavy dependencies inside run(), so `citynode --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help shown in `citynode --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("citynode.cli.demo", "the main job: emulated nodes -> network server -> bridge -> MQTT, live view"),
    "decode": ("citynode.cli.decode", "decode payloads (hex or fport:hex lines) to JSON"),
    "encode": ("citynode.cli.encode", "encode a message (e.g. a downlink) to fport:hex"),
    "uplink": ("citynode.cli.uplink", "show what the bridge publishes for one ChirpStack/TTS uplink message"),
    "bridge": ("citynode.cli.bridge", "run the bridge: LNS or serial uplinks -> the city's MQTT (--check: validate)"),
    "simulate": ("citynode.cli.simulate", "run a fleet of emulated nodes on virtual time, publishing to MQTT"),
    "flash": ("citynode.cli.flash", "flash, configure and test one board in one go (at the site, with a laptop)"),
    "provision": ("citynode.cli.provision", "give nodes identities and keys; one board or a CSV sheet of sites"),
    "calibrate": ("citynode.cli.calibrate", "calibrate a soil probe (dry/wet) or a container's empty distance"),
    "monitor": ("citynode.cli.monitor", "watch a board's console live, with payloads decoded"),
}


def build_parser() -> argparse.ArgumentParser:
    from citynode import __version__

    parser = argparse.ArgumentParser(prog="citynode", description="citynode: open sensor nodes for cities, "
                                     "from the board to the urban data platform's MQTT.")
    parser.add_argument("--version", action="version", version=f"citynode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `citynode decode < log | head` closed the pipe: not an error
        return 0


if __name__ == "__main__":
    sys.exit(main())
