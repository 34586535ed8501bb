"""Fault injection: shared fixtures and the reliability table.

Every fault test records a row (what was injected, how much traffic, sent / received / lost / duplicated)
with the `reliability` fixture. At the end of the session the rows are written as a Markdown table to the file
named by CITYNODE_RELIABILITY_REPORT (`make chaos` points it at docs/RELIABILITY.md); otherwise to
.pytest_cache/reliability.md, so `make test` never rewrites a tracked file.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bridge_ops"))
sys.path.insert(0, str(ROOT / "tests"))

_ROWS: list[dict] = []


class Reliability:
    def record(self, fault: str, traffic: str, sent: int, received: int, lost: int, duplicated: int,
               notes: str = "", version: str = "") -> None:
        _ROWS.append({"fault": fault, "traffic": traffic, "sent": sent, "received": received, "lost": lost,
                      "duplicated": duplicated, "notes": notes, "version": version})


@pytest.fixture
def reliability() -> Reliability:
    return Reliability()


def full_run() -> bool:
    """True under `make chaos` (the long runs); the short versions run in `make test`."""
    return os.environ.get("CITYNODE_CHAOS") == "full"


def pytest_sessionfinish(session, exitstatus) -> None:
    if not _ROWS:
        return
    target = Path(os.environ.get("CITYNODE_RELIABILITY_REPORT") or ROOT / ".pytest_cache" / "reliability.md")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    lines = ["# Reliability", "",
             f"Written by the fault-injection tests themselves (`make chaos`; the short versions run in `make test`) "
             f"on {when}, commit {commit}, {os.cpu_count()} cores {platform.machine()}. Each row is one run: what was "
             "injected, the traffic, and what the platform subscriber (a real MQTT client on the output broker) "
             "counted. *lost* = readings sent but never received; *duplicated* = deliveries of a message id "
             "already received (MQTT QoS 1 is at-least-once: a copy always carries the same message id, so an "
             "idempotent consumer drops it).", "",
             "| fault | version | traffic | sent | received | lost | duplicated | notes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in _ROWS:
        lines.append(f"| {r['fault']} | {r['version']} | {r['traffic']} | {r['sent']} | {r['received']} | "
                     f"{r['lost']} | {r['duplicated']} | {r['notes']} |")
    extra = Path(os.environ.get("CITYNODE_FUZZ_SUMMARY", ""))
    if extra.name and extra.exists():
        try:
            lines += _fuzz_table(json.loads(extra.read_text()), extra)
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")


def _fuzz_table(fuzz: dict, path: Path) -> list[str]:
    """The fuzz run's summary (tests/fuzz/run.py --summary) as a table: inputs, speed and findings per target."""
    lines = ["", "## Coverage-guided fuzzing (atheris)", "",
             f"{fuzz['total_runs']:,} inputs in {fuzz['seconds']:.0f} s over the eight targets of tests/fuzz (each "
             f"target's share set by its measured speed), {fuzz['crashes']} crashes or broken invariants, "
             f"{len(fuzz['known_findings'])} known findings hit. Raw numbers: `{_shown(path)}`.", "",
             "| target | inputs | execs/s | corpus files | new coverage units | crashes |", "|---|---|---|---|---|---|"]
    for name, t in fuzz["targets"].items():
        lines.append(f"| {name} | {t['runs']:,} | {t['execs_per_s']:,} | {t['corpus_files']} | {t['new_units']} | "
                     f"{len(t['crashes'])} |")
    return lines


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
