"""Bridge benchmarks through real Mosquitto brokers on free loopback ports, every role its own process:

    publisher -> "LNS" broker -> consumer -> "output" broker -> subscriber

- throughput: N ChirpStack v4 uplinks published at QoS 1 as fast as a windowed publisher can; the consumer
  is (a) a bare paho relay (subscribe QoS 1, republish QoS 1 with a 1,000-message window: no decoding, no
  storage) and (b) the citynode bridge (decode, registry, dedup, outbox with fsync, QoS 1 with its window).
  Loss is counted; the bridge's rate is reported as a ratio to the relay's (target >= 0.8).
- latency: uplinks at a fixed 500/s through the bridge; time from the LNS publish to the reading's arrival at
  the subscriber (CLOCK_MONOTONIC, shared by the processes): p50 / p99 (target p99 <= 20 ms).
- scale-out: two bridge processes on an MQTT 5 shared subscription with dedup in a private redis-server,
  against one.

    .venv/bin/python -m bench.bridge_bench [--n 10000]
"""

from __future__ import annotations

import base64
import importlib.util
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEVICES = 100
N_THROUGHPUT = 10_000
LATENCY_RATE = 500
LATENCY_SECONDS = 10
RUNS = 3  # each throughput and latency figure is the median of this many runs
PUBLISH_WINDOW = 1000
TARGET_RATIO = 0.8
TARGET_P99_MS = 20.0
# The bridge acknowledges an uplink only once it is in the outbox, so the LNS broker's per-client window of
# un-acknowledged QoS 1 messages (Mosquitto: max_inflight_messages, default 20) bounds its intake; the relay
# acknowledges at once. Both run against the same broker config.
LNS_BROKER_CONF = os.environ.get("CITYNODE_BENCH_LNS_CONF", "max_inflight_messages 1000")


def _brokers() -> Any:
    """tests/brokers.py (the Mosquitto launcher the tests use), loaded by path."""
    spec = importlib.util.spec_from_file_location("citynode_test_brokers", ROOT / "tests" / "brokers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dev_eui(i: int) -> str:
    return f"ac1f09ff{i:08x}"


# -- the roles, each in its own process -----------------------------------------------------------------------


def _uplink(i: int, now_iso: str) -> tuple[str, bytes, tuple[str, int]]:
    from citynode_codec import encode

    device, fcnt = i % DEVICES, i // DEVICES + 1
    fport, payload = encode("soil_reading", {"vwc_pct": round(10 + (i % 300) / 10, 1), "soil_temperature_c": 12.5,
                                             "battery_v": 3.6})
    eui = _dev_eui(device)
    body = {"deduplicationId": str(uuid.uuid4()), "time": now_iso,
            "deviceInfo": {"applicationId": "bench", "applicationName": "bench", "deviceName": f"tree-{device:04d}",
                           "devEui": eui},
            "devAddr": "00189440", "dr": 5, "fCnt": fcnt, "fPort": fport, "data": base64.b64encode(payload).decode(),
            "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -97, "snr": 4.5}],
            "txInfo": {"frequency": 867100000, "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7}}}}
    return f"application/bench/device/{eui}/event/up", json.dumps(body).encode(), (eui, fcnt)


def _windowed_publisher(port: int, client_id: str) -> tuple[Any, threading.Semaphore]:
    """A started QoS 1 publisher and the semaphore that keeps at most PUBLISH_WINDOW of its messages un-acked
    (acquire before each publish; the PUBACK releases)."""
    import paho.mqtt.client as mqtt

    window = threading.Semaphore(PUBLISH_WINDOW)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(PUBLISH_WINDOW)
    client.on_publish = lambda *a: window.release()
    client.connect("127.0.0.1", port, 60)
    client.loop_start()
    return client, window


def _publisher(port: int, n: int, rate: float | None, go: Any, out: Any) -> None:
    """Publishes n uplinks at QoS 1 (at most PUBLISH_WINDOW un-acked), paced at `rate` per second if given."""

    messages = [_uplink(i, "2026-05-04T09:34:15Z") for i in range(n)]
    client, window = _windowed_publisher(port, f"bench-pub-{os.getpid()}")
    go.wait()
    sent: dict[tuple[str, int], float] = {}
    start = time.monotonic()
    for i, (topic, payload, key) in enumerate(messages):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        window.acquire()
        sent[key] = time.monotonic()
        client.publish(topic, payload, qos=1)
    for _ in range(PUBLISH_WINDOW):
        window.acquire(timeout=60)
    client.disconnect()
    client.loop_stop()
    out.put({"start": start, "sent": sent})


def _subscriber(port: int, topic: str, shape: str, expect: int, timeout: float, ready: Any, out: Any) -> None:
    """Counts distinct (dev_eui, fcnt) keys until `expect` arrived or `timeout` passed since the first."""
    import paho.mqtt.client as mqtt

    received: dict[tuple[str, int], float] = {}
    duplicates = 0
    done = threading.Event()
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        nonlocal duplicates
        now = time.monotonic()
        body = json.loads(msg.payload)
        key = ((body["dev_eui"], body["fcnt"]) if shape == "reading"
               else (body["deviceInfo"]["devEui"], body["fCnt"]))
        with lock:
            if key in received:
                duplicates += 1
            else:
                received[key] = now
                if len(received) >= expect:
                    done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}")
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", port, 60)
    client.loop_start()
    done.wait(timeout)
    time.sleep(0.5)  # late duplicates
    client.disconnect()
    client.loop_stop()
    with lock:
        out.put({"received": dict(received), "duplicates": duplicates})


def _relay(lns_port: int, out_port: int, ready: Any, stop: Any) -> None:
    """The baseline: subscribe at QoS 1, republish each message unchanged at QoS 1 (windowed)."""
    import paho.mqtt.client as mqtt

    pub, window = _windowed_publisher(out_port, f"bench-relay-out-{os.getpid()}")

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        window.acquire()
        pub.publish("relay/" + msg.topic.split("/")[3], msg.payload, qos=1)

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-relay-in-{os.getpid()}")
    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("application/+/device/+/event/up", qos=1)
    sub.on_subscribe = lambda *a: ready.set()
    sub.connect("127.0.0.1", lns_port, 60)
    sub.loop_start()
    stop.wait()
    sub.loop_stop()
    pub.loop_stop()


# -- orchestration ----------------------------------------------------------------------------------------


class _Bridge:
    """A bridge process (`citynode bridge`) with a config for these brokers."""

    def __init__(self, workdir: Path, lns_port: int, out_port: int, *, instance: str = "",
                 shared_group: str = "", redis_url: str = "") -> None:
        brokers = _brokers()
        self.metrics_port = brokers.free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        lines = ["[bridge]", f'instance = "{instance}"', f'shared_group = "{shared_group}"',
                 "[input.chirpstack]", 'host = "127.0.0.1"', f"port = {lns_port}", "anonymous = true",
                 f'client_id = "bench-bridge-in{"-" + instance if instance else ""}"', 'application_id = "bench"',
                 "[output]", 'host = "127.0.0.1"', f"port = {out_port}", "anonymous = true",
                 "[outbox]", f'path = "{workdir / "outbox.sqlite"}"',
                 "[registry]", f'path = "{workdir.parent.parent / "registry.csv"}"',
                 "[dedup]"] + ([f'redis_url = "{redis_url}"'] if redis_url else []) + [
                 "[metrics]", f"port = {self.metrics_port}", "[log]", 'level = "WARNING"']
        self.config = workdir / "bridge.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = open(workdir / "bridge.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "citynode", "bridge", "--config", str(self.config)],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited: {(self.config.parent / 'bridge.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("bridge did not become healthy")

    def uplinks(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("citynode_uplinks_total{"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _registry(path: Path) -> None:
    rows = ["dev_eui,name,kind,expected_interval_s"]
    rows += [f"{_dev_eui(i)},tree-{i:04d},soil,900" for i in range(DEVICES)]
    path.write_text("\n".join(rows) + "\n")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(ctx: Any, lns_port: int, out_port: int, topic: str, shape: str, n: int, rate: float | None,
             watch: dict[str, list[int]] | None = None) -> dict:
    ready, go = ctx.Event(), ctx.Event()
    sub_q, pub_q = ctx.Queue(), ctx.Queue()
    timeout = 120.0 if rate is None else n / rate + 60
    sub = ctx.Process(target=_subscriber, args=(out_port, topic, shape, n, timeout, ready, sub_q))
    sub.start()
    if not ready.wait(20):
        raise RuntimeError("subscriber not ready")
    pub = ctx.Process(target=_publisher, args=(lns_port, n, rate, go, pub_q))
    pub.start()
    time.sleep(1.0)  # the publisher builds its messages first
    watch = watch or {}
    cpu_before = {name: sum(_cpu_seconds(p) for p in pids) for name, pids in watch.items()}
    go.set()
    sent = pub_q.get(timeout=timeout + 60)
    got = sub_q.get(timeout=timeout + 60)
    cpu = {name: round(sum(_cpu_seconds(p) for p in pids) - cpu_before[name], 2) for name, pids in watch.items()}
    pub.join(30)
    sub.join(30)
    received = got["received"]
    lost = sum(1 for key in sent["sent"] if key not in received)
    last = max(received.values()) if received else sent["start"]
    out = {"n": n, "received": len(received), "lost": lost, "duplicates": got["duplicates"],
           "seconds": round(last - sent["start"], 3),
           "msg_per_s": round(len(received) / (last - sent["start"]), 1) if received else 0.0,
           "cpu_seconds": cpu}
    latencies = sorted((received[k] - t) * 1000 for k, t in sent["sent"].items() if k in received)
    if latencies:
        out["latency_ms"] = {"p50": round(statistics.median(latencies), 2),
                             "p90": round(latencies[int(0.90 * (len(latencies) - 1))], 2),
                             "p99": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
                             "max": round(latencies[-1], 2)}
    return out


def _scenario(work: Path, name: str, consumer: str, n: int, rate: float | None = None, bridges: int = 1) -> dict:
    """Fresh brokers, one consumer (relay or bridge processes), one measurement."""
    brokers = _brokers()
    ctx = mp.get_context("spawn")
    base = work / name
    redis = None
    with brokers.Mosquitto(base / "lns", extra_conf=LNS_BROKER_CONF) as lns, brokers.Mosquitto(base / "out") as out:
        stop_relay = ctx.Event()
        procs: list[Any] = []
        running: list[_Bridge] = []
        try:
            if consumer == "relay":
                ready = ctx.Event()
                relay = ctx.Process(target=_relay, args=(lns.port, out.port, ready, stop_relay))
                relay.start()
                procs.append(relay)
                if not ready.wait(20):
                    raise RuntimeError("relay not ready")
                topic, shape = "relay/+", "uplink"
            else:
                group, redis_url = "", ""
                if bridges > 1:
                    redis_port = brokers.free_port()
                    redis = subprocess.Popen(["/usr/bin/redis-server", "--port", str(redis_port), "--bind",
                                              "127.0.0.1", "--save", "", "--appendonly", "no"],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    group, redis_url = "bench", f"redis://127.0.0.1:{redis_port}/0"
                for i in range(bridges):
                    instance = f"b{i}" if bridges > 1 else ""
                    running.append(_Bridge(base / f"bridge{i}", lns.port, out.port, instance=instance,
                                           shared_group=group, redis_url=redis_url))
                for b in running:
                    b.wait_healthy()
                topic, shape = "citynode/soil/+/reading", "reading"
            watch = {"consumer": [p.pid for p in procs] + [b.proc.pid for b in running],
                     "brokers": [lns.proc.pid, out.proc.pid]}
            result = _measure(ctx, lns.port, out.port, topic, shape, n, rate, watch)
            if len(running) > 1:
                result["uplinks_per_bridge"] = [b.uplinks() for b in running]
            return result
        finally:
            stop_relay.set()
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.kill()
            for b in running:
                b.stop()
            if redis is not None:
                redis.terminate()
                redis.wait(10)


def run(results: dict, n: int = N_THROUGHPUT) -> None:
    """Runs every bridge benchmark and stores the numbers in results["bridge"]."""
    work = Path(tempfile.mkdtemp(prefix="citynode-bridge-bench-"))
    try:
        _registry(work / "registry.csv")
        # On a 2-core machine shared by brokers, publisher and subscriber, single runs scatter (p99 from 7 to
        # 40 ms seen in consecutive runs): each figure is the median of RUNS runs, the relay and the bridge
        # alternating so that both see the same conditions.
        relays, bridges_ = [], []
        for i in range(RUNS):
            relays.append(_scenario(work, f"relay{i}", "relay", n))
            bridges_.append(_scenario(work, f"bridge{i}", "bridge", n))
        latencies = [_scenario(work, f"latency{i}", "bridge", LATENCY_RATE * LATENCY_SECONDS, rate=LATENCY_RATE)
                     for i in range(RUNS)]
        shared = _scenario(work, "shared", "bridge", n, bridges=2)
        relay = _median_run(relays, lambda r: r["msg_per_s"])
        bridge = _median_run(bridges_, lambda r: r["msg_per_s"])
        latency = _median_run(latencies, lambda r: r.get("latency_ms", {}).get("p99", float("inf")))
        relay["runs_msg_per_s"] = [r["msg_per_s"] for r in relays]
        bridge["runs_msg_per_s"] = [r["msg_per_s"] for r in bridges_]
        latency["runs_p99_ms"] = [r.get("latency_ms", {}).get("p99") for r in latencies]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = bridge["msg_per_s"] / relay["msg_per_s"] if relay["msg_per_s"] else 0.0
    p99 = latency.get("latency_ms", {}).get("p99", float("inf"))
    results["bridge"] = {
        "workload": f"{n} ChirpStack v4 uplinks (soil readings) from {DEVICES} registered devices, QoS 1 end to end",
        "relay": relay, "bridge": bridge, "ratio_to_relay": round(ratio, 3),
        "ratio_target": TARGET_RATIO, "ratio_met": ratio >= TARGET_RATIO and bridge["lost_all_runs"] == 0,
        "latency_at_rate": {"rate_per_s": LATENCY_RATE, **latency}, "p99_target_ms": TARGET_P99_MS,
        "p99_met": p99 <= TARGET_P99_MS and latency["lost_all_runs"] == 0,
        "shared_two_bridges": shared,
        "shared_speedup": round(shared["msg_per_s"] / bridge["msg_per_s"], 3) if bridge["msg_per_s"] else 0.0,
    }


def markdown(results: dict) -> str:
    b = results["bridge"]

    def mark(ok: bool) -> str:
        return "met" if ok else "**MISSED**"

    lat = b["latency_at_rate"].get("latency_ms", {})
    lines = [
        "## Bridge", "", b["workload"] + "; every role is its own process; real Mosquitto brokers on loopback.", "",
        "| Scenario | msg/s | received | lost | duplicates |", "|---|---|---|---|---|",
        f"| bare paho relay (baseline) | {b['relay']['msg_per_s']} | {b['relay']['received']} | "
        f"{b['relay']['lost']} | {b['relay']['duplicates']} |",
        f"| citynode bridge | {b['bridge']['msg_per_s']} | {b['bridge']['received']} | {b['bridge']['lost']} | "
        f"{b['bridge']['duplicates']} |",
        f"| two bridges, shared subscription + Redis dedup | {b['shared_two_bridges']['msg_per_s']} | "
        f"{b['shared_two_bridges']['received']} | {b['shared_two_bridges']['lost']} | "
        f"{b['shared_two_bridges']['duplicates']} |", "",
        f"- Readings lost over all runs: relay {b['relay'].get('lost_all_runs')}, bridge "
        f"{b['bridge'].get('lost_all_runs')}, bridge at {LATENCY_RATE}/s {b['latency_at_rate'].get('lost_all_runs')}.",
        f"- Bridge / relay throughput: **{b['ratio_to_relay']}** (target >= {b['ratio_target']}: "
        f"{mark(b['ratio_met'])}); medians of {RUNS} runs each, msg/s per run: relay "
        f"{b['relay'].get('runs_msg_per_s')}, bridge {b['bridge'].get('runs_msg_per_s')}.",
        f"- Latency at {b['latency_at_rate']['rate_per_s']} uplinks/s, LNS publish to reading received: p50 "
        f"{lat.get('p50')} ms, p90 {lat.get('p90')} ms, p99 **{lat.get('p99')} ms**, max {lat.get('max')} ms "
        f"(target p99 <= {b['p99_target_ms']} ms: {mark(b['p99_met'])}); the run with the median p99 of {RUNS}, "
        f"p99 per run: {b['latency_at_rate'].get('runs_p99_ms')} ms.",
        f"- Two bridge processes vs one: x{b['shared_speedup']} (uplinks per process: "
        f"{b['shared_two_bridges'].get('uplinks_per_bridge')}).",
        f"- CPU per message in the consumer process: relay {_us(b['relay'])} µs, bridge {_us(b['bridge'])} µs. "
        "What limits the bridge: it is one CPython process (one core for the GIL) doing per uplink the LNS "
        "receive and JSON parse, the decode, two JSON publications (reading + retained state; states are "
        "coalesced only when a backlog builds), an fsync'd SQLite commit before the acknowledgement, and paho's "
        "publish/PUBACK work, on a machine whose cores the brokers, publisher and subscriber share. Two "
        "processes add a Redis round trip per uplink and compete for the same cores.", "",
    ]
    return "\n".join(lines)


def _median_run(runs: list[dict], key: Any) -> dict:
    """The run whose figure is the median (RUNS is odd), with the losses of all runs: a loss in any run counts."""
    chosen = dict(sorted(runs, key=key)[len(runs) // 2])
    chosen["lost_all_runs"] = sum(r["lost"] for r in runs)
    return chosen


def _us(result: dict) -> float:
    """Consumer CPU microseconds per message received."""
    received = result.get("received") or 1
    return round(result.get("cpu_seconds", {}).get("consumer", 0.0) / received * 1e6)


def main(argv: list[str]) -> int:
    n = int(argv[argv.index("--n") + 1]) if "--n" in argv else N_THROUGHPUT
    results: dict = {}
    run(results, n)
    print(json.dumps(results["bridge"], indent=1))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
