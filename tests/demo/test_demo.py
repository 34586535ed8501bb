"""`make demo` end to end: broker, fleet on the real MicroPython, bridge, live view; and nothing left behind."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from citynode.demo import Demo

pytestmark = pytest.mark.slow


def _processes_using(path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(path) in line]


def test_the_demo_delivers_every_sample_the_fleet_sent_once_and_stops_cleanly(tmp_path):
    demo = Demo(nodes=4, speed=None, workdir=tmp_path, ui=False)
    try:
        demo.start()
        demo.run_for(hours=3)
        assert demo.settle(timeout_s=30)
        heard = [s for s in demo.fleet.sent if s.heard and s.message["message"] in ("batch", "fill_reading",
                                                                                    "soil_reading")]
        samples = sum(len(s.message.get("samples", [None])) for s in heard)
        summary = demo.summary()
        names = {n.name for n in demo.fleet.nodes}
    finally:
        demo.stop()
    assert samples > 0 and summary["readings_at_platform"] == samples
    assert summary["devices_seen"] == 4 and set(demo.dashboard.state.nodes) == names
    assert summary["deadletters"] == 0
    assert _processes_using(tmp_path) == []


def test_the_demo_command_runs_with_only_python_and_prints_a_summary():
    out = subprocess.run([sys.executable, "-m", "citynode", "demo", "--nodes", "2", "--hours", "1", "--no-ui",
                          "--json"], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    import json

    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["nodes"] == 2 and summary["devices_seen"] == 2 and summary["readings_at_platform"] > 0


def test_without_mosquitto_the_demo_runs_on_the_embedded_python_broker(tmp_path):
    demo = Demo(nodes=2, speed=None, workdir=tmp_path, ui=False, broker_kind="amqtt")
    try:
        demo.start()
        demo.run_for(hours=2)
        assert demo.settle(timeout_s=30)
        summary = demo.summary()
    finally:
        demo.stop()
    assert summary["broker_kind"] == "amqtt" and summary["readings_at_platform"] > 0
    assert _processes_using(tmp_path) == []


def test_ctrl_c_in_the_terminal_stops_everything_in_order_and_leaves_nothing_running():
    # A Ctrl-C reaches the whole foreground process group; simulate it with killpg on the demo's own group.
    import json
    import os
    import signal
    import socket

    proc = subprocess.Popen([sys.executable, "-m", "citynode", "demo", "--nodes", "2", "--no-ui", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in proc.stderr:
            if "subscribed to" in line:  # the bridge's input is up: the fleet is running
                break
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert "connection lost" not in err  # the broker outlived the bridge: it is stopped last
    summary = json.loads(out.strip().splitlines()[-1])
    host, port = summary["broker"].rsplit(":", 1)
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1).close()
    left = subprocess.run(["ps", "-o", "pid=", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert left == []
