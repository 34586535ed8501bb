"""Fleet scenarios: what the simulated city does to a fleet (emulation/fleet.py), as data.

A scenario is a JSON object; the named presets live in `scenarios/*.json` next to this module
(`citynode simulate --scenario drying`), and any file in the same format works (`--scenario my.json`).
Every key is optional:

    {"name": "drying", "description": "one line for people",
     "hours": 48,                          default run length (the CLI's --hours wins)
     "soil_share": 0.5,                    fraction of soil nodes; the rest measure container fill
     "stagger": true,                      spread the nodes' first wakes over one sample interval
     "config": {...},                      firmware config for every node (firmware/citynode_fw/app/config.py)
     "soil": {...}, "fill": {...},         the simulated world of each kind (firmware/citynode_fw/hal/sim.py)
     "spread": {"dry_per_day": 0.3},       per-node variation: each node's value times 1 ± up to 30 % (seeded)
     "groups": [{"nodes": SELECTOR, "world": {...}, "config": {...}}],   overrides for some nodes, in order
     "network": {"gateways": 1, "duplicate_probability": 0.0, "data_rate": 5, "radius_m": 800},
     "events": [EVENT, ...]}

SELECTOR: "all", "soil", "fill", a list of node indexes, {"kind": "soil", "first": 2} (the first two soil
nodes) or {"every": 3, "offset": 1} (indexes 1, 4, 7, ...).

EVENT (hours count from the start of the run; nodes given as a SELECTOR, default "all"):
    {"at_h": 6, "do": "gateway_offline", "for_h": 2, "gateway": "all" | index | EUI}
    {"at_h": 10, "do": "power_cycle", "nodes": [0, 3], "off_s": 5}    power cut: sleep memory lost, modem restarts
    {"at_h": 12, "do": "broker_restart"}                              the simulator's broker hook (see Fleet)
    {"at_h": 3, "do": "downlink", "nodes": "fill", "message": "set_interval", "fields": {"seq": 1,
     "sample_interval_s": 600}}           queued at the network server (citynode_codec.encode), or raw:
    {"at_h": 3, "do": "downlink", "nodes": [2], "fport": 26, "hex": "73", "confirmed": false}

Irrigation, container collections and sensor faults are world keys ("irrigations", "collections_h",
"empty_above", "faults"), so they go under "soil"/"fill" or a group's "world".
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).resolve().parent / "scenarios"
KINDS = ("soil", "fill")
EVENT_ACTIONS = ("gateway_offline", "power_cycle", "broker_restart", "downlink")
_TOP_KEYS = frozenset(("name", "description", "hours", "soil_share", "stagger", "config", "soil", "fill", "spread",
                       "groups", "network", "events"))
_NETWORK_KEYS = frozenset(("gateways", "duplicate_probability", "data_rate", "radius_m"))


class ScenarioError(ValueError):
    """A scenario that cannot be used as written; `where` says which part."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"scenario {where}: {reason}")
        self.where, self.reason = where, reason


@dataclass(frozen=True)
class NodePlan:
    """One node as the scenario wants it: kind, simulated world and firmware config (before identity keys)."""

    index: int
    kind: str
    world: dict[str, Any]
    config: dict[str, Any]


@dataclass(frozen=True)
class Event:
    """A scheduled change of the world: `do` one of EVENT_ACTIONS at `at_h` hours into the run."""

    at_h: float
    do: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    name: str = "custom"
    description: str = ""
    hours: float | None = None
    soil_share: float = 0.5
    stagger: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    worlds: dict[str, dict[str, Any]] = field(default_factory=lambda: {"soil": {}, "fill": {}})
    spread: dict[str, float] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)
    network: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    @property
    def sample_interval_s(self) -> int:
        return int(self.config.get("sample_interval_s", 900))

    def kinds(self, count: int) -> list[str]:
        """Node kinds, interleaved so that any prefix of the fleet keeps the soil share."""
        out, soil = [], 0
        for i in range(count):
            want_soil = round((i + 1) * self.soil_share) > soil
            out.append("soil" if want_soil else "fill")
            soil += want_soil
        return out

    def plan(self, count: int, seed: int = 0) -> list[NodePlan]:
        """The nodes of a fleet of `count`: worlds with the per-node spread applied, group overrides last."""
        kinds = self.kinds(count)
        rng = random.Random(f"citynode-fleet-{seed}")
        plans = []
        for i, kind in enumerate(kinds):
            world = copy.deepcopy(self.worlds.get(kind, {}))
            world["kind"] = kind
            for key, rel in self.spread.items():
                u = rng.uniform(-1.0, 1.0)  # drawn for every key, so adding a key keeps the others' draws
                if isinstance(world.get(key), (int, float)) and not isinstance(world.get(key), bool):
                    world[key] = round(world[key] * (1.0 + rel * u), 4)
            config = {**copy.deepcopy(self.config), "kind": kind}
            for g, group in enumerate(self.groups):
                if i in select(group.get("nodes", "all"), kinds, f"groups[{g}].nodes"):
                    world.update(copy.deepcopy(group.get("world", {})))
                    config.update(copy.deepcopy(group.get("config", {})))
            plans.append(NodePlan(i, kind, world, config))
        return plans


def select(selector: Any, kinds: list[str], where: str = "nodes") -> set[int]:
    """Node indexes a SELECTOR (module docstring) picks out of a fleet with these kinds."""
    n = len(kinds)
    if selector == "all":
        return set(range(n))
    if selector in KINDS:
        return {i for i, k in enumerate(kinds) if k == selector}
    if isinstance(selector, int) and not isinstance(selector, bool):
        return {selector} if 0 <= selector < n else set()
    if isinstance(selector, list):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in selector):
            raise ScenarioError(where, "a list of node indexes must hold integers only")
        return {i for i in selector if 0 <= i < n}
    if isinstance(selector, dict):
        if "every" in selector:
            every, offset = selector["every"], selector.get("offset", 0)
            if not isinstance(every, int) or every < 1 or not isinstance(offset, int):
                raise ScenarioError(where, "every/offset must be integers, every >= 1")
            return set(range(offset, n, every))
        kind = selector.get("kind", "all")
        first = selector.get("first", n)
        if kind not in (*KINDS, "all") or not isinstance(first, int):
            raise ScenarioError(where, f"bad selector {selector!r}")
        picked = [i for i, k in enumerate(kinds) if kind == "all" or k == kind]
        return set(picked[:first])
    raise ScenarioError(where, f"bad selector {selector!r} (all, soil, fill, [indexes], {{kind, first}}, "
                               "{every, offset})")


def from_dict(raw: dict[str, Any], default_name: str = "custom") -> Scenario:
    """Validate a scenario object and build a Scenario."""
    if not isinstance(raw, dict):
        raise ScenarioError(default_name, "must be a JSON object")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ScenarioError(default_name, f"unknown keys {sorted(unknown)}")
    name = raw.get("name", default_name)
    share = raw.get("soil_share", 0.5)
    if not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
        raise ScenarioError(name, "soil_share must be a number in 0..1")
    hours = raw.get("hours")
    if hours is not None and (not isinstance(hours, (int, float)) or hours <= 0):
        raise ScenarioError(name, "hours must be a positive number")
    for key in ("config", "soil", "fill", "spread", "network"):
        if not isinstance(raw.get(key, {}), dict):
            raise ScenarioError(name, f"{key} must be an object")
    network = raw.get("network", {})
    if set(network) - _NETWORK_KEYS:
        raise ScenarioError(name, f"unknown network keys {sorted(set(network) - _NETWORK_KEYS)}")
    for key, lo, hi in (("gateways", 1, 64), ("data_rate", 0, 5)):
        v = network.get(key, lo)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ScenarioError(name, f"network.{key} must be an integer {lo}..{hi}")
    p = network.get("duplicate_probability", 0.0)
    if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ScenarioError(name, "network.duplicate_probability must be in 0..1")
    groups = raw.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ScenarioError(name, "groups must be a list of objects")
    events = []
    for i, ev in enumerate(raw.get("events", [])):
        if not isinstance(ev, dict) or ev.get("do") not in EVENT_ACTIONS:
            raise ScenarioError(f"{name} events[{i}]", f"'do' must be one of {EVENT_ACTIONS}")
        at = ev.get("at_h")
        if not isinstance(at, (int, float)) or at < 0:
            raise ScenarioError(f"{name} events[{i}]", "at_h must be a number >= 0")
        events.append(Event(float(at), ev["do"], {k: v for k, v in ev.items() if k not in ("at_h", "do")}))
    return Scenario(name=name, description=raw.get("description", ""), hours=hours, soil_share=float(share),
                    stagger=bool(raw.get("stagger", True)), config=dict(raw.get("config", {})),
                    worlds={"soil": dict(raw.get("soil", {})), "fill": dict(raw.get("fill", {}))},
                    spread=dict(raw.get("spread", {})), groups=list(groups), network=dict(network),
                    events=sorted(events, key=lambda e: e.at_h))


def downlink_payload(params: dict[str, Any]) -> tuple[int, bytes]:
    """(fPort, bytes) of a downlink event: a citynode message encoded with the codec, or raw fport + hex."""
    if "message" in params:
        from citynode_codec import encode

        try:
            return encode(params["message"], dict(params.get("fields", {})))
        except Exception as e:  # noqa: BLE001 - the codec's own errors, reported with the event
            raise ScenarioError("downlink", f"cannot encode {params['message']!r}: {e}") from e
    try:
        fport, data = int(params["fport"]), bytes.fromhex(params.get("hex", ""))
    except (KeyError, TypeError, ValueError) as e:
        raise ScenarioError("downlink", "needs message (+ fields) or fport + hex") from e
    if not 1 <= fport <= 223:
        raise ScenarioError("downlink", f"fport must be 1..223, got {fport}")
    return fport, data


def presets() -> list[str]:
    """Names of the bundled scenarios."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def describe(names: Iterable[str] | None = None) -> dict[str, str]:
    """{name: description} of the bundled scenarios."""
    return {n: load(n).description for n in (names or presets())}


def load(spec: str | Path | dict[str, Any] | Scenario | None) -> Scenario:
    """A Scenario from a preset name, a JSON file, a dict or a Scenario (None: the "city" preset)."""
    if isinstance(spec, Scenario):
        return spec
    if spec is None:
        spec = "city"
    if isinstance(spec, dict):
        return from_dict(spec)
    path = Path(spec)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{spec}.json"
        if not path.exists():
            raise ScenarioError(str(spec), f"no such preset (presets: {', '.join(presets())})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ScenarioError(str(spec), f"cannot read {path}: {e}") from e
    except ValueError as e:
        raise ScenarioError(str(spec), f"{path} is not valid JSON: {e}") from e
    return from_dict(raw, default_name=path.stem)
