"""`make bench`: run every benchmark, write bench/results.json and docs/BENCHMARKS.md.

    .venv/bin/python -m bench [codec firmware bridge fleet]

Each benchmark module has run(results) and, optionally, markdown(results). A benchmark that fails is recorded
as failed with its error, never silently dropped.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["codec", "firmware", "bridge", "fleet"]


def _generic_markdown(name: str, data) -> str:
    lines = [f"## {name.capitalize()}", "", "```json", json.dumps(data, indent=1, default=str)[:6000], "```"]
    return "\n".join(lines) + "\n"


def _machine() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": commit.strip(), "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_average": os.getloadavg()}


def main(argv: list[str]) -> int:
    wanted = argv or MODULES
    results: dict = {"machine": _machine(), "failed": {}}
    sections = []
    for name in wanted:
        start = time.monotonic()
        try:
            mod = importlib.import_module(f"bench.{name}_bench")
        except ModuleNotFoundError as e:
            results["failed"][name] = f"not available: {e}"
            continue
        try:
            mod.run(results)
            results.setdefault("seconds", {})[name] = round(time.monotonic() - start, 1)
            md = getattr(mod, "markdown", None)
            key = name if name in results else None
            sections.append(md(results) if md else _generic_markdown(name, results.get(key, {})))
            print(f"bench {name}: done in {results['seconds'][name]} s", flush=True)
        except Exception as e:  # noqa: BLE001 - a failed benchmark is reported, the others still run
            results["failed"][name] = f"{type(e).__name__}: {e}"
            print(f"bench {name}: FAILED\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    m = results["machine"]
    head = ["# Benchmarks", "",
            f"Produced by `make bench` on {m['date']} (commit {m['commit']}, Python {m['python']}, {m['cpus']} "
            f"cores {m['machine']}, load average {m['load_average'][0]:.2f} at start). Raw numbers: "
            "`bench/results.json`. A target that is not reached is marked **MISSED** with what limits it.", ""]
    if results["failed"]:
        head += ["Benchmarks that did not run: " + "; ".join(f"{k}: {v}" for k, v in results["failed"].items()), ""]
    (ROOT / "docs" / "BENCHMARKS.md").write_text("\n".join(head) + "\n" + "\n".join(sections))
    print(f"wrote bench/results.json and docs/BENCHMARKS.md ({len(sections)} sections)")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
