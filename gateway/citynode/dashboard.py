"""A live terminal view of what the bridge publishes: per-node readings, RF and battery, recent alerts and dead
letters. `DashboardState` is pure (topic + payload in, state out); `render()` draws it with rich; `Dashboard`
subscribes to the platform broker and keeps both going. Used by `citynode demo`.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

_SOIL_COLUMNS = ("vwc_pct", "soil_temperature_c")
_FILL_COLUMNS = ("fill_pct", "distance_m", "temperature_c")


@dataclass
class NodeView:
    device_id: str
    kind: str = "?"
    asset_id: str | None = None
    measurements: dict[str, Any] = field(default_factory=dict)
    battery_v: float | None = None
    flags: list[str] = field(default_factory=list)
    rssi_dbm: float | None = None
    snr_db: float | None = None
    spreading_factor: int | None = None
    gateways: int | None = None
    fcnt: int | None = None
    time: str | None = None
    readings: int = 0
    availability: str | None = None
    alerts: set[str] = field(default_factory=set)


class DashboardState:
    """What the view shows, built only from messages on the platform broker."""

    def __init__(self, base: str = "citynode", max_events: int = 12):
        self.base = base
        self.nodes: dict[str, NodeView] = {}
        self.alerts: deque[dict] = deque(maxlen=max_events)
        self.deadletters: deque[dict] = deque(maxlen=max_events)
        self.counts = {"readings": 0, "alerts": 0, "deadletters": 0, "other": 0}
        self.bridge_state: str | None = None

    def apply(self, topic: str, payload: bytes) -> None:
        try:
            msg = json.loads(payload) if payload else None
        except ValueError:
            self.counts["other"] += 1
            return
        parts = topic.split("/")
        if len(parts) < 2 or parts[0] != self.base or not isinstance(msg, dict) and msg is not None:
            self.counts["other"] += 1
            return
        if parts[1:] == ["bridge", "state"]:
            self.bridge_state = (msg or {}).get("state")
        elif parts[1] == "deadletter":
            self.counts["deadletters"] += 1
            self.deadletters.appendleft(msg)
        elif parts[1] == "alerts" and msg:
            self.counts["alerts"] += 1
            self.alerts.appendleft(msg)
            node = self._node(msg.get("device_id"), msg.get("kind"))
            if node is not None:
                (node.alerts.add if msg.get("state") == "raised" else node.alerts.discard)(msg.get("alert"))
        elif len(parts) == 4 and msg:
            self._device(parts[1], parts[2], parts[3], msg)
        else:
            self.counts["other"] += 1

    def _node(self, device_id: str | None, kind: str | None) -> NodeView | None:
        if not device_id:
            return None
        node = self.nodes.setdefault(device_id, NodeView(device_id))
        if kind:
            node.kind = kind
        return node

    def _device(self, kind: str, device: str, what: str, msg: dict) -> None:
        node = self._node(msg.get("device_id") or device, kind)
        if what == "reading":
            self.counts["readings"] += 1
            node.readings += 1
            if node.time is None or str(msg.get("time")) >= node.time:
                node.measurements = dict(msg.get("measurements") or {})
                node.battery_v = msg.get("battery_v", node.battery_v)
                node.flags = list(msg.get("flags") or [])
                node.time = msg.get("time")
            node.asset_id = msg.get("asset_id", node.asset_id)
            rf = msg.get("rf") or {}
            node.rssi_dbm, node.snr_db = rf.get("rssi_dbm"), rf.get("snr_db")
            node.spreading_factor, node.gateways = rf.get("spreading_factor"), rf.get("gateway_count")
            node.fcnt = msg.get("fcnt", node.fcnt)
        elif what == "availability":
            node.availability = msg.get("state")
        elif what == "status":
            node.battery_v = msg.get("battery_v", node.battery_v)


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def render(state: DashboardState, title: str = "citynode demo"):
    """A rich renderable of the state."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    table = Table(expand=True, title=f"{title}: {len(state.nodes)} nodes, {state.counts['readings']} readings, "
                                     f"{state.counts['alerts']} alerts, {state.counts['deadletters']} dead letters"
                                     f" — bridge {state.bridge_state or '?'}")
    for col, justify in (("node", "left"), ("asset", "left"), ("reading", "right"), ("°C", "right"), ("V", "right"),
                         ("RSSI/SNR", "right"), ("SF/gw", "right"), ("fCnt", "right"), ("state", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "state")
    for node in sorted(state.nodes.values(), key=lambda n: (n.kind, n.device_id)):
        m = node.measurements
        if node.kind == "soil":
            value, temp = f"{_fmt(m.get('vwc_pct'))} % VWC", m.get("soil_temperature_c")
        elif node.kind == "fill":
            value, temp = f"{_fmt(m.get('fill_pct'), 0)} % full", m.get("temperature_c")
        else:
            value, temp = "", None
        marks = ", ".join(sorted(set(node.flags) | node.alerts))
        status = " ".join(x for x in (node.availability or "", marks) if x)
        style = "bold red" if node.alerts else ("yellow" if node.flags else None)
        table.add_row(node.device_id, node.asset_id or "", value, _fmt(temp), _fmt(node.battery_v, 2),
                      f"{_fmt(node.rssi_dbm, 0)}/{_fmt(node.snr_db)}",
                      f"{_fmt(node.spreading_factor)}/{_fmt(node.gateways)}", _fmt(node.fcnt), status, style=style)
    alerts = Table.grid(padding=(0, 1))
    for a in list(state.alerts)[:8]:
        alerts.add_row(str(a.get("time", ""))[11:19], a.get("state", ""), a.get("alert", ""), a.get("device_id", ""),
                       _fmt(a.get("value")), a.get("unit", "") or "")
    dead = Table.grid(padding=(0, 1))
    for d in list(state.deadletters)[:5]:
        dead.add_row(str(d.get("received_at", ""))[11:19], d.get("reason", ""), str(d.get("detail", ""))[:70])
    return Group(table, Panel(alerts, title="recent alerts"), Panel(dead, title="dead letters"))


class Dashboard:
    """Subscribes `<base>/#` on the platform broker and feeds a DashboardState (thread-safe snapshot)."""

    def __init__(self, host: str, port: int, base: str = "citynode", *, username: str | None = None,
                 password: str | None = None, tls_ca: str | None = None):
        import paho.mqtt.client as mqtt

        self.state = DashboardState(base)
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="citynode-dashboard")
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{base}/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 10)
        self.host, self.port = host, port

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.state.apply(message.topic, message.payload)

    def start(self, timeout_s: float = 10.0) -> None:
        """Connects and waits for the subscription: what is published after start() returns is seen."""
        self.client.connect_async(self.host, self.port)
        self.client.loop_start()
        if not self.subscribed.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"the live view could not subscribe on {self.host}:{self.port} "
                               f"within {timeout_s:g} s")

    def renderable(self, title: str = "citynode demo"):
        with self.lock:
            return render(self.state, title)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
