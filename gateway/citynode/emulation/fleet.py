"""A fleet of emulated nodes in virtual time: the real firmware on the real MicroPython, emulated RAK3172 modems
and an emulated LoRaWAN network server that publishes ChirpStack v4 / TTS v3 JSON to a real MQTT broker.

    with Fleet(nodes=20, scenario="drying", broker=("127.0.0.1", 1883)) as fleet:
        fleet.run_for(hours=24)
        fleet.sent            # what the nodes put on the air (SentUplink records)
        fleet.summary()       # wakes, uplinks, joins, duty-cycle deferrals, losses, real seconds, wakes/s

How it runs. Worker processes (MicroPython Unix port running firmware/citynode_fw/hal/fleet.py) host the nodes,
several per process; this host owns every node's modem (rak3172.RAK3172, explicit time) and the network server
(lns.EmulatedLNS). The host keeps each node's next wake and sends "wake node at T with cause C" to the node's
worker; during the wake the node's UART writes and reads come here and go to its modem at the node's virtual time
(protocol: hal/fleet.py). Nodes are independent except through the network server, so workers run in parallel:
a wake may start when it is at most `skew_s` of virtual time ahead of the earliest wake not yet finished, and
scheduled actions (power cuts, broker restarts, anything passed to schedule()) are barriers: every wake before
the action finishes first, none after it starts. Gateway outages are a function of time, applied to each
uplink at its own virtual time, so they are exact whatever order the workers report in.

Time. Every node has its own virtual clock (epoch milliseconds); the LNS stamps its JSON with the virtual time
of the uplink it handles. `speed` (virtual seconds per real second) slows a run down for demos; without it a
fleet runs as fast as the CPUs allow.

Faithfulness notes. A node's UART is off during deep sleep: what its modem prints meanwhile is dropped (counted
in `modem_bytes_dropped`). A watchdog that expires in virtual time resets the node (cause "watchdog", the sleep
memory it last saved); a wake that takes more than `wake_timeout_s` of real time kills its worker, which is
restarted, and the node resets the same way. A power cut loses the sleep memory and restarts the modem (the
session goes, so the node joins again).
"""

from __future__ import annotations

import heapq
import json
import os
import random
import selectors
import subprocess
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import scenarios as scenario_mod
from .air import Position
from .lns import EmulatedLNS, Gateway
from .micropython import MicroPythonMissing
from .micropython import micropython_binary as find_micropython
from .rak3172 import RAK3172, EmulatorError, JoinAccept, Outcome, Settings

__all__ = ["Fleet", "FleetError", "SentUplink", "JoinRecord", "micropython_binary"]

CENTER = Position(52.5200, 13.4050)  # where the simulated city is (gateway 0 stands here)
_BOOT_MS = 1500  # a reset board runs again after its boot (ROM, MicroPython start, boot.py)
_DEFAULT_WDT_MS = 60000
_SEED_SALT = "citynode-fleet"
_MAX_WORKER_RESTARTS = 20


class FleetError(EmulatorError):
    """The fleet cannot run as asked (missing binary, worker failure, bad argument)."""


# -- records -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentUplink:
    """One uplink a node put on the air, as its modem handed it to the network (lost ones too).

    heard: some online gateway received it. published: how many `up` events the LNS published for it (0 when
    lost or dropped as a replay, 2 for a duplicated publication). message: the payload decoded with
    citynode_codec ({"message": ..., ...}), None for an empty frame.
    """

    node: str
    dev_eui: str
    kind: str
    fcnt: int
    fport: int | None
    payload_hex: str
    message: dict[str, Any] | None
    virtual_ms: int
    time: str
    heard: bool
    published: int
    confirmed: bool = False
    retransmission: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"event": "uplink", **asdict(self)}


@dataclass(frozen=True)
class JoinRecord:
    node: str
    dev_eui: str
    virtual_ms: int
    time: str
    accepted: bool

    def to_json(self) -> dict[str, Any]:
        return {"event": "join", **asdict(self)}


def iso(ms: int) -> str:
    """Virtual epoch milliseconds as RFC 3339 UTC."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


# -- finding MicroPython and the firmware --------------------------------------------------------------------------


def micropython_binary() -> str:
    """The Unix port (citynode.emulation.micropython), a missing one reported as a FleetError."""
    try:
        return find_micropython()
    except MicroPythonMissing as e:
        raise FleetError(str(e)) from None


def firmware_paths() -> tuple[Path, Path]:
    """(firmware dir holding citynode_fw, codecs dir holding citynode_codec); $CITYNODE_FIRMWARE overrides."""
    import citynode_codec

    codecs = Path(citynode_codec.__file__).resolve().parent.parent
    fw = Path(os.environ["CITYNODE_FIRMWARE"]) if os.environ.get("CITYNODE_FIRMWARE") else \
        Path(__file__).resolve().parents[3] / "firmware"
    if not (fw / "citynode_fw" / "hal" / "fleet.py").exists():
        raise FleetError(f"no firmware at {fw} (a source checkout is needed; or set CITYNODE_FIRMWARE)")
    return fw, codecs


# -- nodes and workers ---------------------------------------------------------------------------------------------


@dataclass
class FleetNode:
    """One emulated node: identity, flash folder, modem, sleep memory (held here between wakes) and schedule."""

    index: int
    name: str
    kind: str
    dev_eui: str
    world: dict[str, Any]
    config: dict[str, Any]
    dir: Path
    position: Position
    modem: RAK3172 | None = None
    blob: bytes = b""
    wakes: int = 0
    next_ms: int = 0
    cause: str = "power_on"
    gen: int = 0
    modem_t: int = 0
    modem_power_on: bool = False
    logs: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=50))

    def state(self) -> dict[str, Any] | None:
        """The node's sleep memory (app/state.py frame: 7-byte header, then JSON), None when empty/corrupt."""
        if len(self.blob) < 7 or self.blob[:2] != b"CN":
            return None
        n = (self.blob[5] << 8) | self.blob[6]
        try:
            return json.loads(self.blob[7:7 + n])
        except ValueError:
            return None


class _Worker:
    """One MicroPython process hosting some nodes."""

    def __init__(self, index: int, argv: list[str], errlog: Path):
        self.index = index
        self.argv = argv
        self.errlog = errlog
        self.heap: list[tuple[int, int, int, int]] = []  # (t_ms, seq, node index, node gen)
        self.nodes: list[FleetNode] = []
        self.node: FleetNode | None = None  # the node awake now
        self.wake_t = 0
        self.real_start = 0.0
        self.buf = bytearray()
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def spawn(self) -> None:
        with open(self.errlog, "ab") as err:
            try:
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                             bufsize=0)
            except OSError as e:
                raise FleetError(f"cannot start {self.argv[0]}: {e}") from e
        self.buf = bytearray()
        self.node = None

    @property
    def out_fd(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def send(self, head: bytes, body: bytes = b"") -> None:
        assert self.proc is not None and self.proc.stdin is not None
        data = head + b" %d\n" % len(body) + body
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def cpu_s(self) -> float:
        """User + system CPU seconds of the live process (Linux /proc), 0 when unknown."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def stop(self, timeout: float = 2.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write(b"Q 0\n")
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait(timeout=10)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


class _NodeNetwork:
    """The modem's network: the shared LNS, entered at the uplink's own virtual time, with records kept."""

    def __init__(self, fleet: Fleet, node: FleetNode):
        self.fleet, self.node = fleet, node

    def join(self, dev_eui: bytes, join_eui: bytes, app_key: bytes, now_ms: int, *, dr: int = 0) -> JoinAccept | None:
        lns = self.fleet._enter_lns(now_ms, dev_eui)
        result = lns.join(dev_eui, join_eui, app_key, now_ms, dr=dr)
        self.fleet.joins.append(JoinRecord(self.node.name, self.node.dev_eui, now_ms, iso(now_ms), bool(result)))
        return result

    def uplink(self, dev_eui: bytes, fcnt: int, port: int | None, payload: bytes, confirmed: bool, dr: int,
               now_ms: int, *, ack: bool = False, adr: bool = False) -> Outcome:
        fleet = self.fleet
        lns = fleet._enter_lns(now_ms, dev_eui)
        before = (lns.stats["uplinks"], lns.stats["up_duplicates"], lns.stats["uplinks_retransmitted"])
        outcome = lns.uplink(dev_eui, fcnt, port, payload, confirmed, dr, now_ms, ack=ack, adr=adr)
        new = lns.stats["uplinks"] - before[0]
        published = (new if port is not None else 0) + lns.stats["up_duplicates"] - before[1]
        message = None
        if port is not None:
            from citynode_codec import decode_uplink

            decoded = decode_uplink(port, bytes(payload))
            message = decoded.get("data", {"errors": decoded.get("errors")})
        fleet.sent.append(SentUplink(self.node.name, self.node.dev_eui, self.node.kind, fcnt, port,
                                     bytes(payload).hex(), message, now_ms, iso(now_ms), outcome.heard, published,
                                     confirmed, lns.stats["uplinks_retransmitted"] > before[2]))
        return outcome


# -- the fleet -----------------------------------------------------------------------------------------------------


class Fleet:
    """N emulated nodes (soil and fill, mixed) on virtual time; see the module docstring.

    nodes: how many. scenario: preset name, JSON file, dict or scenarios.Scenario (default "city").
    broker: (host, port) or "host:port" of the MQTT broker the LNS publishes to; None starts a private one
      (broker.start_broker) that close() stops. flavour: "chirpstack" or "tts". seed: all randomness (identities,
      spreads, stagger, radio) derives from it. workers: MicroPython processes (default: 2 per CPU, at most nodes).
    start: the virtual start, epoch seconds or datetime (default: now, whole minutes). speed: virtual seconds per
      real second (None: as fast as possible). skew_s: how far in virtual time one node may run ahead of another.
    wake_timeout_s: real seconds a wake may take before its worker is killed (the node resets: watchdog).
    wake_limit_s: virtual seconds a wake may take, whatever the firmware's own watchdog says (a board-level
      watchdog; the node resets with cause "watchdog"). Both may be changed between runs.
    on_broker_restart: called for a "broker_restart" event (default: restart the private broker).
    on_log: called with (node, virtual_ms, text) for each log line of a node.
    lns_options: extra keyword arguments for EmulatedLNS (application_id, tenant_id, qos, ...).
    """

    def __init__(self, nodes: int = 6, *, scenario: Any = None, broker: tuple[str, int] | str | None = None,
                 flavour: str = "chirpstack", seed: int = 0, workers: int | None = None,
                 workdir: str | Path | None = None, start: float | datetime | None = None,
                 speed: float | None = None, skew_s: float = 900.0, wake_timeout_s: float = 30.0,
                 wake_limit_s: float = 600.0,
                 on_broker_restart: Callable[[], None] | None = None,
                 on_log: Callable[[FleetNode, int, str], None] | None = None,
                 lns_options: dict[str, Any] | None = None, heap: str = "16M"):
        if nodes < 1:
            raise FleetError("a fleet needs at least one node")
        if speed is not None and speed <= 0:
            raise FleetError("speed must be positive")
        self.scenario = scenario_mod.load(scenario)
        self.node_count = nodes
        self.flavour = flavour
        self.seed = seed
        self.worker_count = max(1, min(nodes, workers or 2 * (os.cpu_count() or 1)))
        self.speed = speed
        self.skew_ms = int(skew_s * 1000)
        self.wake_timeout_s = wake_timeout_s
        self.wake_limit_ms = int(wake_limit_s * 1000)
        self.on_broker_restart = on_broker_restart
        self.on_log = on_log
        self.lns_options = dict(lns_options or {})
        self.heap = heap
        if isinstance(start, datetime):
            start = start.timestamp()
        self.start_ms = int((start if start is not None else time.time() // 60 * 60) * 1000)
        self.now_ms = self.start_ms
        self._broker_arg = broker
        self._tmp = tempfile.TemporaryDirectory(prefix="citynode-fleet-") if workdir is None else None
        self.workdir = Path(workdir if workdir is not None else self._tmp.name)
        self.broker = None  # the private broker (emulation.broker.Broker) when this fleet started one
        self.broker_host, self.broker_port = "", 0
        self.lns: EmulatedLNS | None = None
        self.gateways: list[Gateway] = []
        self.nodes: list[FleetNode] = []
        self.sent: list[SentUplink] = []
        self.joins: list[JoinRecord] = []
        self.counters: Counter[str] = Counter()
        self.tx_failures: Counter[str] = Counter()
        self.real_s = 0.0
        self._workers: list[_Worker] = []
        self._selector: selectors.BaseSelector | None = None
        self._actions: list[tuple[int, int, str, Callable[[Fleet], None]]] = []
        self._seq = 0
        self._outages: list[tuple[str, int, int]] = []  # (gateway EUI or "all", from_ms, to_ms)
        self._lns_ms = self.start_ms
        self._mqtt_events: Counter[str] = Counter()
        self._real_anchor: tuple[float, int] | None = None
        self._cpu_done = 0.0
        self._cpu_base = self._cpu_host = 0.0
        self._started = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> Fleet:
        """Start the broker (if needed), the LNS and the workers; schedule first wakes and scenario events."""
        if self._started:
            return self
        self._started = True
        t = os.times()
        self._cpu_base = t.user + t.system
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        sc = self.scenario
        rng = random.Random(f"{_SEED_SALT}-{self.seed}")
        if self._broker_arg is None:
            from .broker import start_broker

            self.broker = start_broker(self.workdir / "broker")
            self.broker_host, self.broker_port = self.broker.host, self.broker.port
        elif isinstance(self._broker_arg, str):
            host, _, port = self._broker_arg.rpartition(":")
            if not port.isdigit():
                raise FleetError(f"broker must be host:port, not {self._broker_arg!r}")
            self.broker_host, self.broker_port = host or "127.0.0.1", int(port)
        else:
            self.broker_host, self.broker_port = self._broker_arg[0], int(self._broker_arg[1])
        net = sc.network
        gateways = [Gateway(f"0016c001f1{self.seed & 0xFF:02x}{i:04x}",
                            position=_offset(CENTER, 500.0 * (i > 0), 120.0 * i)) for i in range(
                                max(1, int(net.get("gateways", 1))))]
        opts = {"seed": self.seed, "duplicate_probability": float(net.get("duplicate_probability", 0.0)),
                **self.lns_options}
        self.lns = EmulatedLNS(self.broker_host, self.broker_port, flavour=self.flavour, gateways=gateways,
                               clock=self._lns_clock, **opts)
        self.gateways = gateways
        self._watch_lns_connection()
        data_rate = int(net.get("data_rate", 5))
        radius = float(net.get("radius_m", 800.0))
        interval_ms = sc.sample_interval_s * 1000
        fw, codecs = firmware_paths()
        for plan in sc.plan(self.node_count, self.seed):
            i = plan.index
            dev_eui = f"70b3d57ed0{self.seed & 0xFF:02x}{i:04x}"
            name = f"{plan.kind}-{i:03d}"
            pos = _offset(CENTER, radius * rng.random() ** 0.5, rng.uniform(0, 360))
            world = {**plan.world, "start": self.start_ms // 1000, "seed": plan.world.get("seed", self.seed * 7919 + i)}
            node = FleetNode(i, name, plan.kind, dev_eui, world, self._node_config(plan, dev_eui, name, pos),
                             self.workdir / "nodes" / name, pos)
            join_eui = "70b3d57ed0000000"
            app_key = rng.randbytes(16).hex()
            node.dir.mkdir(parents=True, exist_ok=True)
            (node.dir / "config.json").write_text(json.dumps(node.config, sort_keys=True) + "\n")
            (node.dir / "secrets.json").write_text(json.dumps({"join_eui": join_eui, "app_key": app_key}) + "\n")
            first = self.start_ms + (rng.randrange(interval_ms) if sc.stagger else 0)
            node.next_ms = node.modem_t = first
            # The modem powers up with the board (booted=False: its banner comes after the boot time).
            node.modem = RAK3172(dev_eui=dev_eui, network=_NodeNetwork(self, node), name=name,
                                 seed=self.seed * 100003 + i, settings=Settings(dr=data_rate), now_ms=first,
                                 booted=False)
            self.lns.add_device(dev_eui, name=name, position=pos, join_eui=join_eui, app_key=app_key,
                                tags={"kind": plan.kind, "simulated": "true"})
            self.nodes.append(node)
        argv = [micropython_binary(), "-X", f"heapsize={self.heap}", "-c",
                f"import sys\nsys.path[:0] = [{str(fw)!r}, {str(codecs)!r}]\n"
                "from citynode_fw.hal import fleet\nfleet.main()\n"]
        self._selector = selectors.DefaultSelector()
        for k in range(self.worker_count):
            w = _Worker(k, argv, self.workdir / f"worker-{k}.stderr")
            w.nodes = [n for n in self.nodes if n.index % self.worker_count == k]
            self._workers.append(w)
            self._spawn(w)
        for node in self.nodes:
            self._push(node, node.next_ms, "power_on")
        for ev in sc.events:
            self._schedule_event(ev)

    def close(self) -> None:
        """Stop the workers, the LNS and the private broker; remove the temporary folder. Idempotent."""
        if self._closed:
            return
        t = os.times()
        self._cpu_host = t.user + t.system - self._cpu_base
        self._closed = True
        for w in self._workers:
            self._cpu_done += w.cpu_s()
            w.stop()
        if self._selector is not None:
            self._selector.close()
        if self.lns is not None:
            self.lns.close()
        if self.broker is not None:
            self.broker.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ----------------------------------------------------------------------------------------------

    def schedule(self, virtual_ms: int, action: Callable[[Fleet], None], name: str = "action") -> None:
        """Run `action(fleet)` at `virtual_ms`: after every wake that starts earlier, before any that starts then
        or later."""
        self._seq += 1
        heapq.heappush(self._actions, (int(virtual_ms), self._seq, name, action))

    def at_hours(self, hours: float) -> int:
        """The virtual time `hours` after the start."""
        return self.start_ms + int(round(hours * 3_600_000))

    def run_until(self, virtual_ms: int) -> None:
        """Run every wake and action scheduled before `virtual_ms`."""
        if not self._started:
            self.start()
        if self._closed:
            raise FleetError("the fleet is closed")
        t0 = time.monotonic()
        if self.speed is not None:
            self._real_anchor = (t0, self.now_ms)
        try:
            while True:
                action_t = self._actions[0][0] if self._actions else None
                limit = virtual_ms if action_t is None or action_t >= virtual_ms else action_t
                self._run_wakes(limit)
                if action_t is None or action_t >= virtual_ms:
                    break
                _, _, name, action = heapq.heappop(self._actions)
                self.counters["actions"] += 1
                self.now_ms = max(self.now_ms, action_t)
                self._lns_ms = self.now_ms
                action(self)
            if self._real_anchor is not None:  # with `speed`, the run lasts its share of real time to the end
                due = self._real_anchor[0] + (virtual_ms - self._real_anchor[1]) / 1000.0 / self.speed
                time.sleep(max(0.0, due - time.monotonic()))
            self.now_ms = max(self.now_ms, virtual_ms)
        finally:
            self.real_s += time.monotonic() - t0

    def run_for(self, hours: float = 0.0, *, seconds: float = 0.0) -> None:
        """Advance the virtual time by `hours` (plus `seconds`)."""
        self.run_until(self.now_ms + int(round(hours * 3_600_000 + seconds * 1000)))

    def power_cycle(self, nodes: Iterable[int] | None = None, off_s: float = 5.0, at_ms: int | None = None) -> None:
        """Cut the power of `nodes` (indexes; None: all) now (or at `at_ms`, via schedule) for `off_s` seconds."""
        picked = list(range(len(self.nodes))) if nodes is None else list(nodes)
        if at_ms is not None:
            self.schedule(at_ms, lambda f: f.power_cycle(picked, off_s), "power_cycle")
            return
        for i in picked:
            node = self.nodes[i]
            t = max(self.now_ms, node.modem_t) + int(off_s * 1000)
            node.blob = b""
            node.modem_power_on = True
            self._push(node, t, "power_on")
            node.logs.append((self.now_ms, f"(simulator) power cut for {off_s:g} s"))
            self.counters["power_cycles"] += 1

    def gateway_outage(self, from_ms: int, to_ms: int, gateway: str | int = "all") -> None:
        """Take a gateway (index, EUI or "all") offline from `from_ms` to `to_ms` (virtual)."""
        if gateway == "all":
            eui = "all"
        elif isinstance(gateway, int):
            if not 0 <= gateway < len(self.gateways):
                raise FleetError(f"no gateway {gateway} (there are {len(self.gateways)})")
            eui = self.gateways[gateway].eui
        else:
            eui = gateway.lower()
            if not any(g.eui == eui for g in self.gateways):
                raise FleetError(f"no gateway {gateway}")
        self._outages.append((eui, int(from_ms), int(to_ms)))

    def restart_broker(self) -> None:
        """The broker hook: on_broker_restart, else restart the private broker; then wait for the LNS to reconnect."""
        self.counters["broker_restarts"] += 1
        before = Counter(self._mqtt_events)
        if self.on_broker_restart is not None:
            self.on_broker_restart()
        elif self.broker is not None:
            self.broker.restart()
        else:
            self.counters["broker_restarts_skipped"] += 1
            return
        self._wait_lns_reconnected(before, 20.0)

    def node(self, key: int | str) -> FleetNode:
        """A node by index, name or DevEUI."""
        if isinstance(key, int):
            return self.nodes[key]
        for n in self.nodes:
            if key in (n.name, n.dev_eui) or key.lower() == n.dev_eui:
                return n
        raise KeyError(key)

    @property
    def stats(self) -> dict[str, Any]:
        return self.summary()

    def cpu_s(self) -> tuple[float, float]:
        """(workers, host): CPU seconds of the MicroPython workers and of this process since start()."""
        workers = self._cpu_done + sum(w.cpu_s() for w in self._workers if w.proc is not None)
        t = os.times()
        host = self._cpu_host if self._closed else t.user + t.system - self._cpu_base
        return workers, host

    def summary(self) -> dict[str, Any]:
        """Counts of the run so far (JSON-ready)."""
        lns_stats = self.lns.stats if self.lns is not None else Counter()
        c = self.counters
        wakes = c["wakes"]
        sent = [s for s in self.sent if s.fport is not None]
        cpu_workers, cpu_host = self.cpu_s()
        return {
            "scenario": self.scenario.name, "flavour": self.flavour, "seed": self.seed,
            "nodes": len(self.nodes), "soil_nodes": sum(n.kind == "soil" for n in self.nodes),
            "fill_nodes": sum(n.kind == "fill" for n in self.nodes), "workers": self.worker_count,
            "virtual_start": iso(self.start_ms), "virtual_end": iso(self.now_ms),
            "virtual_hours": round((self.now_ms - self.start_ms) / 3_600_000, 3),
            "wakes": wakes, "uplinks": len(sent), "uplinks_heard": sum(s.heard for s in sent),
            "uplinks_lost": sum(not s.heard for s in sent), "up_published": sum(s.published for s in sent),
            "up_duplicated": int(lns_stats["up_duplicates"]), "uplinks_replayed": int(lns_stats["uplinks_replayed"]),
            "retransmissions": sum(s.retransmission for s in sent),
            "join_requests": len(self.joins), "joins": sum(j.accepted for j in self.joins),
            "tx_ok": c["tx_ok"], "duty_cycle_deferrals": c["duty_cycle"], "tx_failures": dict(self.tx_failures),
            "not_joined_wakes": c["not_joined"], "state_lost": c["state_lost"],
            "watchdog_resets": c["watchdog"], "worker_restarts": c["worker_restarts"], "reboots": c["reboot"],
            "crashes": c["crash"], "power_cycles": c["power_cycles"], "broker_restarts": c["broker_restarts"],
            "modem_bytes_dropped": c["modem_bytes_dropped"],
            "real_s": round(self.real_s, 3), "cpu_s": round(cpu_workers + cpu_host, 3),
            "cpu_workers_s": round(cpu_workers, 3), "cpu_host_s": round(cpu_host, 3),
            "wakes_per_s": round(wakes / self.real_s, 1) if self.real_s > 0 else None,
        }

    def records(self) -> list[dict[str, Any]]:
        """Uplink and join records in virtual-time order, as JSON objects."""
        rows = [s.to_json() for s in self.sent] + [j.to_json() for j in self.joins]
        return sorted(rows, key=lambda r: (r["virtual_ms"], r["node"]))

    def write_report(self, path: str | Path) -> Path:
        """JSON lines: every uplink and join record, then {"event": "summary", ...}."""
        path = Path(path)
        with path.open("w", encoding="utf-8") as f:
            for row in self.records():
                f.write(json.dumps(row, separators=(",", ":")) + "\n")
            f.write(json.dumps({"event": "summary", **self.summary()}, separators=(",", ":")) + "\n")
        return path

    # -- scenario events -----------------------------------------------------------------------------------------

    def _schedule_event(self, ev: scenario_mod.Event) -> None:
        at = self.at_hours(ev.at_h)
        p = ev.params
        kinds = [n.kind for n in self.nodes]
        if ev.do == "gateway_offline":
            self.gateway_outage(at, at + int(round(float(p.get("for_h", 1.0)) * 3_600_000)), p.get("gateway", "all"))
        elif ev.do == "power_cycle":
            picked = sorted(scenario_mod.select(p.get("nodes", "all"), kinds, "events.nodes"))
            self.power_cycle(picked, float(p.get("off_s", 5.0)), at_ms=at)
        elif ev.do == "broker_restart":
            self.schedule(at, lambda f: f.restart_broker(), "broker_restart")
        elif ev.do == "downlink":
            picked = sorted(scenario_mod.select(p.get("nodes", "all"), kinds, "events.nodes"))
            fport, data = scenario_mod.downlink_payload(p)
            confirmed = bool(p.get("confirmed", False))

            def queue(f: Fleet) -> None:
                assert f.lns is not None
                for i in picked:
                    f.lns.enqueue(f.nodes[i].dev_eui, fport, data, confirmed)

            self.schedule(at, queue, "downlink")

    # -- the scheduler -------------------------------------------------------------------------------------------

    def _push(self, node: FleetNode, t: int, cause: str) -> None:
        node.gen += 1
        node.next_ms, node.cause = t, cause
        self._seq += 1
        heapq.heappush(self._workers[node.index % self.worker_count].heap, (t, self._seq, node.index, node.gen))

    def _top(self, w: _Worker) -> tuple[int, int, int, int] | None:
        heap = w.heap
        while heap and self.nodes[heap[0][2]].gen != heap[0][3]:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _run_wakes(self, limit: int) -> None:
        """Run wakes until none starting before `limit` is left and none is running."""
        assert self._selector is not None
        while True:
            wait_s = self._dispatch(limit)
            busy = [w for w in self._workers if w.node is not None]
            if not busy:
                if wait_s is None:
                    return
                time.sleep(wait_s)
                continue
            timeout = self.wake_timeout_s if wait_s is None else min(wait_s, self.wake_timeout_s)
            for key, _ in self._selector.select(timeout):
                self._read(key.data)
            now = time.monotonic()
            for w in busy:
                if w.node is not None and now - w.real_start > self.wake_timeout_s:
                    self._worker_failed(w, f"wake took more than {self.wake_timeout_s} s of real time")

    def _dispatch(self, limit: int) -> float | None:
        """Start every wake that may start now. Returns real seconds until a throttled wake may start, or None."""
        tops = {}
        low = None
        for w in self._workers:
            if w.node is not None:
                low = w.wake_t if low is None else min(low, w.wake_t)
            top = self._top(w)
            if top is not None:
                low = top[0] if low is None else min(low, top[0])
                if w.node is None:
                    tops[w.index] = top
        if low is None:
            return None
        horizon = min(limit, low + self.skew_ms)
        wait = None
        for k, top in tops.items():
            t = top[0]
            if t >= horizon:
                continue
            if self.speed is not None and self._real_anchor is not None:
                due = self._real_anchor[0] + (t - self._real_anchor[1]) / 1000.0 / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    wait = delay if wait is None else min(wait, delay)
                    continue
            w = self._workers[k]
            heapq.heappop(w.heap)
            self._start_wake(w, self.nodes[top[2]], t)
        return wait

    def _start_wake(self, w: _Worker, node: FleetNode, t: int) -> None:
        modem = node.modem
        assert modem is not None
        if node.modem_power_on:
            node.modem_power_on = False
            node.modem_t = max(node.modem_t, t)
            modem.power_on(node.modem_t)
        t_modem = max(t, node.modem_t)
        dropped = modem.read(t_modem)  # printed while the node slept: its UART was off
        node.modem_t = t_modem
        self.counters["modem_bytes_dropped"] += len(dropped)
        try:
            w.send(b"W %d %d %s %d" % (node.index, t, node.cause.encode(), self.wake_limit_ms), node.blob)
        except OSError:  # the worker died while idle: restart it, the wake waits for it
            self._push(node, t, node.cause)
            self._worker_failed(w, "worker exited")
            return
        w.node, w.wake_t, w.real_start = node, t, time.monotonic()

    # -- worker I/O ----------------------------------------------------------------------------------------------

    def _spawn(self, w: _Worker) -> None:
        assert self._selector is not None
        w.spawn()
        self._selector.register(w.out_fd, selectors.EVENT_READ, w)
        for node in w.nodes:
            spec = json.dumps({"dir": str(node.dir) + "/", "scenario": node.world}).encode()
            w.send(b"N %d" % node.index, spec)

    def _read(self, w: _Worker) -> None:
        try:
            data = os.read(w.out_fd, 1 << 16)
        except OSError:
            data = b""
        if not data:
            self._worker_failed(w, "worker exited")
            return
        buf = w.buf
        buf += data
        pos = 0
        proc = w.proc
        while w.proc is proc:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            fields = bytes(buf[pos:nl]).split()
            try:
                n = int(fields[-1])
            except (ValueError, IndexError):
                self._worker_failed(w, f"bad message {bytes(buf[pos:nl])[:80]!r}")
                return
            end = nl + 1 + n
            if len(buf) < end:
                break
            body = bytes(buf[nl + 1:end])
            pos = end
            self._on_message(w, fields, body)
        if w.proc is proc:
            del buf[:pos]

    def _on_message(self, w: _Worker, fields: list[bytes], body: bytes) -> None:
        node = w.node
        op = fields[0]
        if node is None:
            if op == b"l":
                self.counters["worker_messages"] += 1
                return
            self._worker_failed(w, f"message {op!r} outside a wake")
            return
        modem = node.modem
        assert modem is not None
        if op == b"r":
            t = max(int(fields[1]), node.modem_t)
            node.modem_t = t
            out = modem.read(t)
            due = modem.next_event_ms()
            w.send(b"D -" if due is None else b"D %d" % due, out)
        elif op == b"w":
            t = max(int(fields[1]), node.modem_t)
            node.modem_t = t
            modem.write(body, t)
        elif op == b"l":
            self._on_log(node, int(fields[1]), body.decode("utf-8", "replace"))
        elif op == b"s":
            self._finish(w, node, int(fields[1]), int(fields[2]), fields[3].decode(), body)
        else:
            self._worker_failed(w, f"unknown message {op!r}")

    def _on_log(self, node: FleetNode, t: int, text: str) -> None:
        node.logs.append((t, text))
        c = self.counters
        if text.startswith("tx "):
            result = text.rsplit(" ", 1)[-1]
            if result == "ok":
                c["tx_ok"] += 1
            elif result == "duty_cycle":
                c["duty_cycle"] += 1
            else:
                self.tx_failures[result] += 1
        elif text.startswith("radio: not joined"):
            c["not_joined"] += 1
        elif text.startswith("state lost"):
            c["state_lost"] += 1
        if self.on_log is not None:
            self.on_log(node, t, text)

    def _finish(self, w: _Worker, node: FleetNode, t_end: int, sleep_ms: int, flags: str, blob: bytes) -> None:
        w.node = None
        node.wakes += 1
        node.blob = blob
        self.counters["wakes"] += 1
        marks = set() if flags == "-" else set(flags.split(","))
        for mark in marks:
            self.counters[mark] += 1
        if "watchdog" in marks:
            node.logs.append((t_end, "(simulator) watchdog reset"))
            self._push(node, t_end + _BOOT_MS, "watchdog")
        elif "reboot" in marks:
            self._push(node, t_end + _BOOT_MS, "soft_reset")
        else:
            if sleep_ms <= 0:
                sleep_ms = self.scenario.sample_interval_s * 1000
            self._push(node, t_end + sleep_ms, "deep_sleep")

    def _worker_failed(self, w: _Worker, reason: str) -> None:
        """Kill and restart a worker; the node awake in it resets as after a watchdog."""
        assert self._selector is not None
        node = w.node
        try:
            self._selector.unregister(w.out_fd)
        except (KeyError, ValueError, AssertionError):
            pass
        self._cpu_done += w.cpu_s()
        w.kill()
        w.restarts += 1
        self.counters["worker_restarts"] += 1
        if w.restarts > _MAX_WORKER_RESTARTS:
            tail = w.errlog.read_text(errors="replace")[-1500:] if w.errlog.exists() else ""
            raise FleetError(f"worker {w.index} failed {w.restarts} times, last: {reason}\n{tail}")
        if node is not None:
            self.counters["watchdog"] += 1
            node.logs.append((w.wake_t, f"(simulator) {reason}: worker restarted, node reset"))
            wdt = int(node.config.get("wdt_ms", _DEFAULT_WDT_MS))
            self._push(node, max(w.wake_t + wdt, node.modem_t) + _BOOT_MS, "watchdog")
        self._spawn(w)

    # -- the network server at virtual time ----------------------------------------------------------------------

    def _lns_clock(self) -> float:
        return self._lns_ms / 1000.0

    def _enter_lns(self, now_ms: int, dev_eui: bytes) -> EmulatedLNS:
        """Set the LNS to `now_ms`: its clock, gateway outages at that time, and a random stream that depends on
        the device and time only (the same seed gives the same run whatever order the workers report in)."""
        lns = self.lns
        assert lns is not None
        self._lns_ms = now_ms
        for gw in self.gateways:
            gw.online = not any(eui in ("all", gw.eui) and a <= now_ms < b for eui, a, b in self._outages)
        lns._rng.seed(f"{self.seed}-{bytes(dev_eui).hex()}-{now_ms}")
        return lns

    def _watch_lns_connection(self) -> None:
        """Count the LNS client's (re)connections and disconnections (EmulatedLNS has no public signal)."""
        assert self.lns is not None
        client = self.lns._client
        on_connect, on_disconnect = client.on_connect, client.on_disconnect

        def connected(*args: Any) -> None:
            self._mqtt_events["connect"] += 1
            if on_connect is not None:
                on_connect(*args)

        def disconnected(*args: Any) -> None:
            self._mqtt_events["disconnect"] += 1
            if on_disconnect is not None:
                on_disconnect(*args)

        client.on_connect, client.on_disconnect = connected, disconnected

    def _wait_lns_reconnected(self, before: Counter[str], timeout: float) -> bool:
        """After a broker hook: when the LNS lost its connection, wait until it has connected again."""
        ev = self._mqtt_events
        deadline = time.monotonic() + 1.0
        while ev["disconnect"] == before["disconnect"] and ev["connect"] == before["connect"]:
            if time.monotonic() > deadline:
                return True  # the hook did not disturb the LNS connection
            time.sleep(0.01)
        deadline = time.monotonic() + timeout
        while not (ev["connect"] > before["connect"] and self.lns._client.is_connected()):
            if time.monotonic() > deadline:
                self.counters["broker_reconnect_timeouts"] += 1
                return False
            time.sleep(0.01)
        return True

    # -- node setup ----------------------------------------------------------------------------------------------

    def _node_config(self, plan: scenario_mod.NodePlan, dev_eui: str, name: str, pos: Position) -> dict[str, Any]:
        cfg: dict[str, Any] = {"radio": "rak3172_lorawan", "sample_interval_s": self.scenario.sample_interval_s}
        if plan.kind == "soil":
            probe = plan.world.get("probe", {})
            # Calibrated like the simulated probe, so the node reports the world's VWC.
            cfg.update(soil_dry_mv=int(probe.get("dry_mv", 2480)), soil_wet_mv=int(probe.get("wet_mv", 1210)),
                       soil_wet_vwc_pct=float(probe.get("wet_vwc", 45.0)))
        else:
            cfg.update(empty_distance_m=float(plan.world.get("empty_m", 1.2)),
                       full_distance_m=float(plan.world.get("full_m", 0.2)))
        cfg.update(plan.config)
        if cfg.get("radio") != "rak3172_lorawan":
            raise FleetError(f"node {name}: the fleet emulates LoRaWAN through a RAK3172 only, not {cfg['radio']!r}")
        cfg.update(kind=plan.kind, dev_eui=dev_eui, asset_id=name, latitude=round(pos.latitude, 6),
                   longitude=round(pos.longitude, 6))
        return cfg


def _offset(origin: Position, distance_m: float, bearing_deg: float) -> Position:
    """A point `distance_m` from `origin` (flat-earth approximation; fine for a city)."""
    import math

    dlat = distance_m * math.cos(math.radians(bearing_deg)) / 111_320.0
    dlon = distance_m * math.sin(math.radians(bearing_deg)) / (111_320.0 * math.cos(math.radians(origin.latitude)))
    return Position(round(origin.latitude + dlat, 6), round(origin.longitude + dlon, 6))
