"""The one-command demo: an MQTT broker, a fleet of emulated nodes running the real firmware, the emulated
network server, the bridge, and a live view of what reaches the platform side.

    with Demo(nodes=12, speed=60) as demo:   # starts everything, in the order data flows backwards
        demo.run_for(hours=1)                # or demo.run_forever(stop_event)

Everything runs on one broker: the network server publishes under application/..., the bridge under
citynode/... . With no broker given, a private Mosquitto is started, or, where Mosquitto is not installed, an
embedded Python broker (amqtt), so the demo needs nothing but Python. stop() leaves no process behind.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from citynode.bridge import Bridge
from citynode.config import parse_config
from citynode.dashboard import Dashboard
from citynode.emulation.broker import start_broker
from citynode.emulation.fleet import Fleet

APPLICATION_ID = "citynode-demo"


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def registry_toml(fleet: Fleet) -> str:
    """The bridge's registry for the fleet's nodes: names, kinds, assets, positions, container geometry."""
    lines = ["# written by citynode demo for its emulated fleet", ""]
    for n in fleet.nodes:
        entry = {"dev_eui": n.dev_eui.upper(), "name": n.name, "kind": n.kind,
                 "asset_id": ("T-" if n.kind == "soil" else "C-") + f"{n.index + 1:04d}",
                 "lat": round(n.position.latitude, 6), "lon": round(n.position.longitude, 6),
                 "expected_interval_s": int(n.config.get("sample_interval_s", 900))
                 * int(n.config.get("batch_size", 4)),
                 "source": "chirpstack"}
        if n.kind == "fill":
            entry["empty_distance_m"] = float(n.world.get("empty_m", n.config.get("empty_distance_m", 1.2)))
            entry["full_distance_m"] = float(n.world.get("full_m", n.config.get("full_distance_m", 0.2)))
        lines.append("[[device]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
        lines.append("")
    return "\n".join(lines)


class Demo:
    def __init__(self, nodes: int = 12, *, speed: float | None = 60.0, scenario: str = "city",
                 broker: tuple[str, int] | None = None, seed: int = 1, workdir: str | Path | None = None,
                 ui: bool = True, broker_kind: str | None = None):
        self.node_count, self.speed, self.scenario, self.seed, self.ui = nodes, speed, scenario, seed, ui
        self._broker_arg = broker
        self._broker_kind = broker_kind  # None: Mosquitto when installed, else the embedded amqtt
        self._tmp = tempfile.TemporaryDirectory(prefix="citynode-demo-") if workdir is None else None
        self.dir = Path(workdir if workdir is not None else self._tmp.name)
        self.broker = None
        self.host, self.port = "127.0.0.1", 0
        self.fleet: Fleet | None = None
        self.bridge: Bridge | None = None
        self.dashboard: Dashboard | None = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> Demo:
        try:
            if self._broker_arg is None:
                self.broker = start_broker(self.dir / "broker", kind=self._broker_kind)
                self.host, self.port = self.broker.host, self.broker.port
            else:
                self.host, self.port = self._broker_arg
            # The view subscribes first, so it sees the bridge's first publications too.
            self.dashboard = Dashboard(self.host, self.port, "citynode")
            self.dashboard.start()
            self.fleet = Fleet(self.node_count, scenario=self.scenario, broker=(self.host, self.port),
                               seed=self.seed, speed=self.speed, workdir=self.dir / "fleet",
                               lns_options={"application_id": APPLICATION_ID, "qos": 1})
            self.fleet.start()
            (self.dir / "registry.toml").write_text(registry_toml(self.fleet))
            self.bridge = Bridge(parse_config(self._bridge_config()))
            self.bridge.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _bridge_config(self) -> dict[str, Any]:
        broker = {"host": self.host, "port": self.port, "tls": False, "anonymous": True}
        return {
            "bridge": {"tick_interval_s": 1},
            "input": {"chirpstack": {**broker, "application_id": APPLICATION_ID, "qos": 1, "clean_session": False,
                                     "client_id": "citynode-demo-bridge-in"}},
            "output": {**broker, "client_id": "citynode-demo-bridge-out", "base_topic": "citynode"},
            "outbox": {"path": str(self.dir / "outbox.sqlite"), "synchronous": "normal"},
            "registry": {"path": str(self.dir / "registry.toml")},
            "metrics": {"enabled": False},
            "log": {"level": "WARNING", "format": "text"},
        }

    def run_for(self, hours: float = 0.0, seconds: float = 0.0) -> None:
        """Advance the fleet's virtual time (paced by `speed`, or as fast as possible when speed is None)."""
        assert self.fleet is not None
        self.fleet.run_for(hours=hours, seconds=seconds)

    def run_forever(self, stop: threading.Event, step_s: float = 60.0) -> None:
        while not stop.is_set():
            self.run_for(seconds=step_s)

    def settle(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything the fleet's network server published has reached the live view: the bridge
        received every `up` event, stored and published all it made of them, and the view holds every reading."""
        assert self.bridge is not None and self.fleet is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._settled():
                return True
            time.sleep(0.1)
        return self._settled()

    def _settled(self) -> bool:
        _, health = self.bridge.health()
        received = sum(s["received"] for s in health["sources"].values())
        if received < sum(s.published for s in self.fleet.sent):  # `up` events the LNS published
            return False
        if health["outbox"]["depth"] or health["queue"]:
            return False
        stored = self.bridge.metrics.registry.get_sample_value("citynode_readings_out_total") or 0
        with self.dashboard.lock if self.dashboard else self._lock:
            seen = self.dashboard.state.counts["readings"] if self.dashboard else stored
        return seen >= stored

    def summary(self) -> dict[str, Any]:
        fleet = self.fleet.summary() if self.fleet else {}
        with self.dashboard.lock if self.dashboard else self._lock:
            view = self.dashboard.state if self.dashboard else None
            return {"broker": f"{self.host}:{self.port}", "broker_kind": getattr(self.broker, "kind", "external"),
                    "nodes": self.node_count, "uplinks_sent": fleet.get("uplinks"),
                    "readings_at_platform": view.counts["readings"] if view else 0,
                    "alerts_at_platform": view.counts["alerts"] if view else 0,
                    "deadletters": view.counts["deadletters"] if view else 0,
                    "devices_seen": len(view.nodes) if view else 0,
                    "virtual_hours": round((self.fleet.now_ms - self.fleet.start_ms) / 3.6e6, 2) if self.fleet else 0}

    def stop(self) -> None:
        """Stop in the order that loses nothing: nodes first, then the bridge drains, then the rest."""
        for closer in (lambda: self.fleet and self.fleet.close(), lambda: self.bridge and self.bridge.stop(),
                       lambda: self.dashboard and self.dashboard.stop(), lambda: self.broker and self.broker.stop()):
            try:
                closer()
            except Exception:  # noqa: BLE001 - keep stopping the others; each logs its own trouble
                pass
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Demo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
