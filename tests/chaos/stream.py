"""Traffic for fault injection: a steady stream of ChirpStack uplinks from many devices at a fixed rate, and a
platform-side tally of what arrived (lost, duplicated, per-device order)."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from citynode.core.messages import message_id
from citynode_codec import encode


def uplink(device: int, fcnt: int) -> tuple[str, bytes, str]:
    """(topic, ChirpStack JSON, the message id the platform must see) for one soil reading."""
    dev_eui = f"70b3d57ed00{device:05x}"
    vwc = round((device * 7 + fcnt) % 1000 / 10, 1)
    fport, payload = encode("soil_reading", {"vwc_pct": vwc, "soil_temperature_c": 11.5, "battery_v": 3.6})
    body = {"deduplicationId": str(uuid.uuid4()), "time": "2026-05-04T09:00:00Z",
            "deviceInfo": {"applicationId": "chaos", "applicationName": "chaos", "deviceName": f"chaos-{device:05d}",
                           "devEui": dev_eui},
            "fCnt": fcnt, "fPort": fport, "data": base64.b64encode(payload).decode(),
            "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -90, "snr": 6.0}],
            "txInfo": {"frequency": 868100000, "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 9}}}}
    topic = f"application/chaos/device/{dev_eui}/event/up"
    return topic, json.dumps(body).encode(), message_id(dev_eui, fcnt, fport, payload, 0)


class Stream:
    """Publishes `rate` uplinks per second round-robin over `devices` to the LNS broker at QoS 1, as ChirpStack
    does, until stopped; keeps the message ids the platform must receive."""

    def __init__(self, port: int, rate: float, devices: int = 50):
        self.rate, self.devices = rate, devices
        self.expected: list[str] = []
        self.order: dict[str, list[str]] = defaultdict(list)  # device -> message ids in fCnt order
        self._stop = threading.Event()
        self._count = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"lns-{uuid.uuid4().hex[:6]}")
        self.client.max_inflight_messages_set(2000)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self._count < due and not self._stop.is_set():
                device = self._count % self.devices
                fcnt = self._count // self.devices + 1
                topic, body, mid = uplink(device, fcnt)
                self.client.publish(topic, body, qos=1)  # queued by paho while the broker is away
                self.expected.append(mid)
                self.order[f"chaos-{device:05d}"].append(mid)
                self._count += 1
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def drained(self) -> bool:
        """Every publish acknowledged by the LNS broker (nothing left in paho's queue)."""
        return not self.client._out_messages  # noqa: SLF001 - paho has no public accessor

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Tally:
    """Platform side: the message ids received on <base>/+/+/reading, in arrival order."""

    port: int
    client_id: str = field(default_factory=lambda: f"platform-{uuid.uuid4().hex[:6]}")
    arrivals: list[tuple[str, str]] = field(default_factory=list)  # (device_id, message_id)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("citynode/+/+/reading", qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg) -> None:
        body = json.loads(msg.payload)
        with self._lock:
            self.arrivals.append((body["device_id"], body["message_id"]))

    def start(self) -> Tally:
        self.client.connect("127.0.0.1", self.port, 30)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise AssertionError("platform subscriber got no SUBACK")
        return self

    def received(self) -> set[str]:
        with self._lock:
            return {mid for _, mid in self.arrivals}

    def counts(self, expected: list[str]) -> dict[str, int]:
        with self._lock:
            ids = [mid for _, mid in self.arrivals]
        distinct = set(ids)
        return {"sent": len(expected), "received": len(distinct & set(expected)),
                "lost": len(set(expected) - distinct), "duplicated": len(ids) - len(distinct),
                "unexpected": len(distinct - set(expected))}

    def out_of_order(self, order: dict[str, list[str]]) -> int:
        """Devices whose readings first arrived in a different order than they were sent."""
        first: dict[str, list[str]] = defaultdict(list)
        seen: set[str] = set()
        with self._lock:
            for device, mid in self.arrivals:
                if mid not in seen:
                    seen.add(mid)
                    first[device].append(mid)
        return sum(1 for device, mids in order.items() if first.get(device, []) != [m for m in mids if m in seen])

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
