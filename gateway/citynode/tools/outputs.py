"""What provisioning hands to the rest of the system, regenerated from the run state after every finished row:

registry.toml (or .csv)   the bridge's device registry, in exactly the format gateway/citynode/registry.py loads
tts-devices.json          The Things Stack end-device import, JSON format (`the-things-stack`): a stream of
                          EndDevice objects (TTS docs, "JSON File Reference", adding-devices-in-bulk/device-json)
tts-devices.csv           the same for TTS's CSV format (`the-things-stack-csv`: ';' separated, header row;
                          TTS docs, "CSV File Reference", adding-devices-in-bulk/device-csv)
chirpstack-devices.jsonl  ChirpStack v4: one REST request per line for its REST API (chirpstack-rest-api, the
                          gRPC API's HTTP mapping in api/proto/api/device.proto): POST /api/devices with a
                          CreateDeviceRequest, then POST /api/devices/{devEui}/keys with a CreateDeviceKeysRequest
                          (LoRaWAN 1.0.x: the AppKey goes in nwkKey, as device.proto says)

Importing:
  The Things Stack Console: application -> Import end devices -> format "The Things Stack JSON" (or CSV), file.
  ttn-lw-cli end-devices create --application-id APP < tts-devices.json
  ChirpStack (fill in the ids if the file still has ${...} placeholders; TOKEN is an API key):
    export CHIRPSTACK_APPLICATION_ID=... CHIRPSTACK_DEVICE_PROFILE_ID=...
    envsubst < chirpstack-devices.jsonl | while read -r req; do
      curl -fsS -X "$(jq -r .method <<<"$req")" "http://chirpstack-rest-api:8090$(jq -r .path <<<"$req")" \\
        -H "Grpc-Metadata-Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
        -d "$(jq -c .body <<<"$req")"; done
Only LoRaWAN nodes (radio rak3172_lorawan) go into the network-server files; P2P nodes are heard by the
bridge's serial receiver and get their p2p_key in the registry. The import files and a registry with P2P keys
hold keys: they are written 0600; import them, then keep them somewhere safe or delete them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OutputConflict
from .identity import Identity, write_private

MARK = "# Written by `citynode provision`"
LORAWAN_VERSION = "MAC_V1_0_3"  # RUI3 on the RAK3172 implements LoRaWAN 1.0.3
PHY_VERSION = "PHY_V1_0_3_REV_A"
DEFAULT_FREQUENCY_PLAN = "EU_863_870_TTN"
CS_APPLICATION = "${CHIRPSTACK_APPLICATION_ID}"
CS_PROFILE = "${CHIRPSTACK_DEVICE_PROFILE_ID}"


@dataclass(frozen=True)
class NetworkSettings:
    network: str = "chirpstack"  # where LoRaWAN nodes are heard: chirpstack | tts (the registry's source)
    frequency_plan: str = DEFAULT_FREQUENCY_PLAN
    chirpstack_application: str = CS_APPLICATION
    chirpstack_profile: str = CS_PROFILE


def record(name: str, identity: Identity, config: dict[str, Any], labels: dict[str, str], network: str,
           row: int) -> dict[str, Any]:
    """What the run state keeps of a finished node (no keys): everything the outputs below need."""
    lorawan = config["radio"] == "rak3172_lorawan"
    rec: dict[str, Any] = {
        "row": row, "name": name, "dev_eui": identity.dev_eui, "join_eui": identity.join_eui,
        "kind": config["kind"], "board": config["board"], "radio": config["radio"],
        "asset_id": config["asset_id"], "labels": labels,
        "expected_interval_s": min(7 * 86400, config["sample_interval_s"] * config["batch_size"]),
        "source": network if lorawan else "serial",
    }
    if config["latitude"] or config["longitude"]:
        rec["location"] = [config["latitude"], config["longitude"]]
    if config["kind"] == "fill":
        rec["empty_distance_m"] = config["empty_distance_m"]
        rec["full_distance_m"] = config["full_distance_m"]
    return rec


def _registry_entry(rec: dict[str, Any], identity: Identity | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"dev_eui": rec["dev_eui"].upper(), "name": rec["name"], "kind": rec["kind"]}
    if rec.get("asset_id"):
        entry["asset_id"] = rec["asset_id"]
    if rec.get("location"):
        entry["lat"], entry["lon"] = rec["location"]
    for key in ("empty_distance_m", "full_distance_m", "expected_interval_s", "source"):
        if rec.get(key) is not None:
            entry[key] = rec[key]
    if rec["radio"] != "rak3172_lorawan" and identity is not None and identity.p2p_key:
        entry["p2p_key"] = identity.p2p_key  # the bridge's serial receiver needs it to open P2P frames
    if rec.get("labels"):
        entry["labels"] = dict(rec["labels"])
    return entry


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value), ensure_ascii=False)  # JSON string escapes are valid TOML basic strings


def registry_toml(entries: list[dict[str, Any]]) -> str:
    lines = [MARK + " from its run state; run it again instead of editing."]
    for e in entries:
        lines += ["", "[[device]]"] + [f"{k} = {_toml_value(v)}" for k, v in e.items()]
    return "\n".join(lines) + "\n"


def registry_csv(entries: list[dict[str, Any]]) -> str:
    columns = ["dev_eui", "name", "kind", "asset_id", "lat", "lon", "empty_distance_m", "full_distance_m",
               "expected_interval_s", "source", "p2p_key", "labels"]
    buf = io.StringIO()
    buf.write(MARK + " from its run state; run it again instead of editing.\n")
    w = csv.writer(buf, delimiter=";", lineterminator="\n")
    w.writerow(columns)
    for e in entries:
        row = dict(e, labels=";".join(f"{k}={v}" for k, v in e.get("labels", {}).items()))
        w.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return buf.getvalue()


def tts_device(rec: dict[str, Any], identity: Identity, net: NetworkSettings) -> dict[str, Any]:
    device: dict[str, Any] = {
        "ids": {"device_id": rec["name"], "dev_eui": identity.dev_eui.upper(), "join_eui": identity.join_eui.upper()},
        "name": rec["name"],
        "description": f"citynode {rec['kind']} node" + (f", asset {rec['asset_id']}" if rec.get("asset_id") else ""),
        "lorawan_version": LORAWAN_VERSION, "lorawan_phy_version": PHY_VERSION,
        "frequency_plan_id": net.frequency_plan, "supports_join": True,
        "root_keys": {"app_key": {"key": identity.app_key.upper()}},
        "attributes": {k: str(v) for k, v in {"kind": rec["kind"], "asset_id": rec.get("asset_id"),
                                              **rec.get("labels", {})}.items() if v},
    }
    if rec.get("location"):
        lat, lon = rec["location"]
        device["locations"] = {"user": {"latitude": lat, "longitude": lon, "source": "SOURCE_REGISTRY"}}
    return device


def tts_csv(recs: list[dict[str, Any]], idents: dict[str, Identity], net: NetworkSettings) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\n")
    w.writerow(["id", "dev_eui", "join_eui", "name", "frequency_plan_id", "lorawan_version", "lorawan_phy_version",
                "app_key"])
    for r in recs:
        i = idents[r["name"]]
        w.writerow([r["name"], i.dev_eui.upper(), i.join_eui.upper(), r["name"], net.frequency_plan, LORAWAN_VERSION,
                    PHY_VERSION, i.app_key.upper()])
    return buf.getvalue()


def chirpstack_requests(rec: dict[str, Any], identity: Identity, net: NetworkSettings) -> list[dict[str, Any]]:
    eui = identity.dev_eui
    tags = {k: str(v) for k, v in {"kind": rec["kind"], "asset_id": rec.get("asset_id"),
                                   **rec.get("labels", {})}.items() if v}
    device = {"devEui": eui, "name": rec["name"],
              "description": f"citynode {rec['kind']} node" + (f", asset {rec['asset_id']}" if rec.get("asset_id")
                                                                else ""),
              "applicationId": net.chirpstack_application, "deviceProfileId": net.chirpstack_profile,
              "joinEui": identity.join_eui, "tags": tags, "skipFcntCheck": False, "isDisabled": False}
    keys = {"devEui": eui, "nwkKey": identity.app_key}
    return [{"method": "POST", "path": "/api/devices", "body": {"device": device}},
            {"method": "POST", "path": f"/api/devices/{eui}/keys", "body": {"deviceKeys": keys}}]


def _write(path: Path, text: str, private: bool) -> None:
    if path.exists():
        head = path.read_text(encoding="utf-8", errors="replace")[:200]
        if not head.startswith(MARK) and not path.name.startswith(("tts-", "chirpstack-")):
            raise OutputConflict(f"{path} exists and was not written by citynode provision.",
                                 "Choose another --registry path; citynode never overwrites a registry it did "
                                 "not write.", path=str(path))
    write_private(path, text)
    if not private:
        os.chmod(path, 0o644)


def write_outputs(out_dir: Path, registry_path: Path, done: dict[str, dict[str, Any]],
                  idents: dict[str, Identity], net: NetworkSettings) -> dict[str, str]:
    """(Re)write the registry and the network-server files from every finished row. Returns {what: path}."""
    recs = sorted(done.values(), key=lambda r: (r.get("row", 0), r["name"]))
    entries = [_registry_entry(r, idents.get(r["name"])) for r in recs]
    secret_registry = any("p2p_key" in e for e in entries)
    text = registry_csv(entries) if registry_path.suffix.lower() == ".csv" else registry_toml(entries)
    _write(registry_path, text, private=secret_registry)
    paths = {"registry": str(registry_path)}
    lorawan = [r for r in recs if r["radio"] == "rak3172_lorawan" and r["name"] in idents]
    if lorawan:
        stream = "".join(json.dumps(tts_device(r, idents[r["name"]], net), indent=2) + "\n" for r in lorawan)
        requests = [req for r in lorawan for req in chirpstack_requests(r, idents[r["name"]], net)]
        files = {"tts_json": ("tts-devices.json", stream),
                 "tts_csv": ("tts-devices.csv", tts_csv(lorawan, idents, net)),
                 "chirpstack": ("chirpstack-devices.jsonl", "".join(json.dumps(q) + "\n" for q in requests))}
        for what, (name, content) in files.items():
            _write(Path(out_dir) / name, content, private=True)
            paths[what] = str(Path(out_dir) / name)
    return paths
