"""How the field commands talk: rich text for people at the board, one JSON document for scripts (--json).
Nothing here ever receives a key: callers pass masked identities only."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

from .errors import ToolError
from .flashing import CheckResult, Step
from .logparse import describe

SYMBOLS = {"done": "[green]✔[/]", "unchanged": "[dim]=[/]", "skipped": "[dim]–[/]", "would": "[cyan]→[/]",
           "failed": "[red]✘[/]"}


def console(stderr: bool = False) -> Console:
    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=True)


def step_line(s: Step) -> str:
    return f"{SYMBOLS.get(s.status, '?')} [bold]{s.name:<9}[/] {escape(s.detail)}"


def print_step(out: Console, s: Step, check: CheckResult | None = None) -> None:
    """One step; after the check step, what the node measured and sent."""
    out.print(step_line(s))
    if s.name == "check" and check is not None:
        print_check(out, check)
    for cmd in s.data.get("commands", []):
        out.print(f"    [dim]$ {escape(' '.join(cmd))}[/]")
    if "command" in s.data:
        out.print(f"    [dim]$ {escape(' '.join(s.data['command']))}[/]")


def print_check(out: Console, check: CheckResult) -> None:
    for e in check.events:
        if e.kind in ("sample", "tx", "downlink", "sensor_error"):
            colour = "red" if e.kind == "sensor_error" else "cyan" if e.kind == "sample" else "magenta"
            out.print(f"    [{colour}]{escape(describe(e))}[/]")
    for w in check.warnings:
        out.print(f"  [yellow]! {escape(w)}[/]")
    for err in check.errors:
        out.print(f"  [red]✘ {escape(err)}[/]")


def print_error(err: ToolError, *, as_json: bool, command: str) -> None:
    if as_json:
        emit_json({"ok": False, **err.to_json()})
        return
    out = console(stderr=True)
    out.print(f"[red bold]citynode {command}:[/] {escape(err.message)}")
    if err.hint:
        out.print(f"  [yellow]What to do:[/] {escape(err.hint)}")


def emit_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)
