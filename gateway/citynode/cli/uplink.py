"""Show what the bridge would publish for one uplink message from the network server.

Copy an uplink event out of ChirpStack (the device's "Events" tab, the `up` event) or The Things Stack (Live
data, the uplink message), save it as a file, and run:

  citynode uplink --from chirpstack up.json                    what the bridge publishes for it
  citynode uplink --from tts --registry devices.toml up.json   with the device registry (names, geometry)
  mosquitto_sub -C 1 -t 'application/+/device/+/event/up' | citynode uplink --from chirpstack -

The answer is JSON: {"publications": [{"topic", "retain", "qos", "payload"}]}, the messages exactly as the
bridge would send them to the platform (readings, state, availability, alerts). An uplink the bridge cannot
use comes out as one message on <base>/deadletter whose "reason" and "detail" say why (for example
decode_error: the payload does not match the fPort; unknown_device with a registry in deadletter mode).

Exit status: 0 when the message was read (even if it became a dead letter), 2 when the input is not JSON or
cannot be read, or the registry is invalid (one line on stderr says why).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default="-", help="the LNS message as JSON; '-' or nothing for stdin")
    p.add_argument("--from", dest="source", choices=("chirpstack", "tts"), required=True,
                   help="which network server the message comes from")
    p.add_argument("--registry", help="device registry (.toml or .csv)")
    p.add_argument("--base", default="citynode", help="base topic (default: citynode)")
    p.add_argument("--topic", help="the MQTT topic the message arrived on (default: built from the message)")


def _topic(source: str, doc: dict) -> str:
    """The topic the LNS would have used, from the message itself."""
    if source == "chirpstack":
        info = doc.get("deviceInfo") if isinstance(doc.get("deviceInfo"), dict) else {}
        app = info.get("applicationId") if isinstance(info.get("applicationId"), str) else "app"
        eui = info.get("devEui") if isinstance(info.get("devEui"), str) else "0000000000000000"
        return f"application/{app or 'app'}/device/{eui or '0000000000000000'}/event/up"
    ids = doc.get("end_device_ids") if isinstance(doc.get("end_device_ids"), dict) else {}
    app_ids = ids.get("application_ids") if isinstance(ids.get("application_ids"), dict) else {}
    app = app_ids.get("application_id") if isinstance(app_ids.get("application_id"), str) else "app"
    device = ids.get("device_id") if isinstance(ids.get("device_id"), str) else "device"
    return f"v3/{app or 'app'}/devices/{device or 'device'}/up"


def _fail(message: str) -> int:
    print(f"citynode uplink: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from citynode.core.pipeline import Pipeline, PipelineSettings
    from citynode.core.topics import TopicError
    from citynode.registry import Registry, RegistryError

    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()  # noqa: SIM115
    except OSError as e:
        return _fail(f"cannot read {args.file}: {e.strerror or e}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        return _fail(f"{'stdin' if args.file == '-' else args.file} is not JSON: {str(e).splitlines()[0][:120]}")
    if not isinstance(doc, dict):
        return _fail("the message must be a JSON object")
    try:
        registry = Registry.load(args.registry) if args.registry else Registry()
        pipeline = Pipeline(registry, PipelineSettings(base_topic=args.base))
    except (RegistryError, TopicError, ValueError) as e:
        return _fail(str(e))
    if args.source == "chirpstack":
        from citynode.sources.chirpstack import parse_event
    else:
        from citynode.sources.tts import parse_event
    topic = args.topic or _topic(args.source, doc)
    item = parse_event(topic, raw, datetime.now(timezone.utc))
    publications = pipeline.handle(item) if item is not None else []
    out = {"publications": [{"topic": p.topic, "retain": p.retain, "qos": p.qos, "payload": json.loads(p.payload)}
                            for p in publications]}
    if item is None:
        out["note"] = f"{topic} carries no uplink: the bridge publishes nothing for it"
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0
