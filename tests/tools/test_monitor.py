"""`citynode monitor` on an emulated board's console: decoded lines as the node wakes, through resets and a
pulled cable, and a clean stop on Ctrl-C. The monitor runs as its own process, as a technician starts it."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading

import pytest

from citynode.tools.board_link import BOARDS
from citynode.tools.flashing import Flasher, FlashJob

SECRETS = {"join_eui": "70b3d57ed005c17e", "app_key": "2b7e151628aed2a6abf7158809cf4f3c"}


class Monitor:
    """`citynode monitor` in a subprocess; its output lines arrive in a queue."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "citynode", "monitor", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str) -> str:
        """The next line containing `text` (a hang guard, not a timing check: 20 s)."""
        while True:
            line = self.lines.get(timeout=20)
            self.seen.append(line)
            if text in line:
                return line

    def finish(self) -> list[str]:
        """Wait for the monitor to end; every line it printed."""
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return self.seen

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def node(make_rig, tmp_path):
    """A soil node with the app, config and keys on its board and a modem on a network, on a stable port link."""
    rig = make_rig("soil", link=tmp_path / "ttyUSB0")
    with Flasher() as flasher:
        flasher.run(FlashJob(str(rig.board.pts), BOARDS["esp32"], config={"kind": "soil", "batch_size": 1},
                             secrets=SECRETS, check=False, restart=False))
    return rig


@pytest.fixture
def monitor():
    started: list[Monitor] = []

    def start(*args: str) -> Monitor:
        m = Monitor(*args)
        started.append(m)
        return m

    yield start
    for m in started:
        m.close()


def events(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_monitor_prints_each_wake_with_the_uplink_decoded(node, monitor):
    m = monitor("--port", str(node.board.path), "--json", "--count", "3")
    m.wait_for('"connected"')
    node.board.wake(cause="power_on")
    got = events(m.finish())
    assert m.proc.returncode == 0
    kinds = [e["type"] for e in got if e["type"] not in ("console", "connected")]
    assert kinds[:2] == ["sample", "tx"]
    tx = next(e for e in got if e["type"] == "tx")
    assert tx["result"] == "ok" and tx["decoded"]["data"]["message"] == "soil_reading"
    assert tx["hex"] == node.network.uplinks[0].payload.hex()


def test_monitor_shows_a_downlink_and_what_the_node_did_with_it(node, monitor):
    from citynode_codec import encode

    fport, payload = encode("set_interval", {"sample_interval_s": 1800})
    node.network.queue_downlink(node.dev_eui, fport, payload)
    m = monitor("--port", str(node.board.path), "--json")
    m.wait_for('"connected"')
    node.board.wake(cause="power_on")
    down = json.loads(m.wait_for('"downlink"'))
    assert (down["command"], down["result"]) == ("set_interval", "applied")
    assert down["decoded"]["data"]["sample_interval_s"] == 1800


def test_monitor_keeps_going_when_the_board_resets_and_shows_the_restart(node, monitor):
    m = monitor("--port", str(node.board.path), "--json", "--count", "5")
    m.wait_for('"connected"')
    node.board.wake(cause="power_on")
    m.wait_for('"tx"')
    node.board.reset()
    m.wait_for('"reset"')
    node.board.wake()
    got = events(m.finish())
    kinds = [e["type"] for e in got]
    assert "sample" in kinds[kinds.index("reset"):]  # the wake after the restart is shown too


def test_monitor_reconnects_when_the_cable_is_pulled_and_plugged_back(node, monitor):
    m = monitor("--port", str(node.board.path), "--json", "--count", "2")
    m.wait_for('"connected"')
    node.board.unplug()
    m.wait_for('"disconnected"')
    node.board.replug()
    m.wait_for('"connected"')
    node.board.wake(cause="power_on")
    got = events(m.finish())
    assert m.proc.returncode == 0 and any(e["type"] == "sample" for e in got)


def test_ctrl_c_stops_the_monitor_cleanly(node, monitor):
    m = monitor("--port", str(node.board.path))
    m.wait_for("connected to")
    m.proc.send_signal(signal.SIGINT)
    lines = m.finish()
    assert m.proc.returncode == 0
    assert any("monitor stopped" in line for line in lines)
    assert not any("Traceback" in line for line in lines)


def test_a_port_another_program_holds_is_reported(node, monitor, port_holder):
    port_holder(str(node.board.path))
    m = monitor("--port", str(node.board.path), "--json")
    lines = m.finish()
    assert m.proc.returncode == 2 and json.loads(lines[-1])["error"] == "port_busy"
