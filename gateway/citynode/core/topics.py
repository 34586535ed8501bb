"""The platform-side MQTT topics, all under one configurable base (default "citynode").

    <base>/<kind>/<device>/reading                one message per sample, not retained
    <base>/<kind>/<device>/state                  retained: latest values and device health
    <base>/<kind>/<device>/availability           retained: {"state": "online" | "offline", ...}
    <base>/<kind>/<device>/status                 retained: the node's latest status message
    <base>/alerts/<kind>/<device>/<alert>         alert raised / cleared, not retained
    <base>/deadletter                             what could not be published as a reading, not retained
    <base>/<kind>/<device>/set                    commands from the platform (the bridge subscribes)
    <base>/<kind>/<device>/set/response           the bridge's answers to them
    <base>/bridge/state                           the bridge app's own (not built here)

<kind> is "soil", "fill" or "unknown" (a device the registry does not know and whose payload did not say).
Device ids and alert names are sanitised to [a-z0-9_-]: a topic built here never holds "+", "#", "/" inside
a level, a NUL, or an empty level, whatever name a network server sends.
"""

from __future__ import annotations

import re

KINDS = ("soil", "fill", "unknown")
MAX_ID_LENGTH = 64
_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]+")
_BASE_LEVEL = re.compile(r"^[A-Za-z0-9_.-]+\Z")


class TopicError(ValueError):
    """A base topic or a topic level that would make an unsafe topic."""


def sanitise_id(text: object, fallback: str = "unknown") -> str:
    """`text` as a topic level: lower case, runs of anything outside [a-z0-9_-] become "_", at most 64
    characters; `fallback` (itself sanitised) when nothing is left."""
    if not isinstance(text, str):
        text = ""
    cleaned = _NOT_ALLOWED.sub("_", text.strip().lower()).strip("_")[:MAX_ID_LENGTH].strip("_")
    if cleaned:
        return cleaned
    if fallback == "unknown":
        return "unknown"
    return sanitise_id(fallback, "unknown")


def check_base(base: str) -> str:
    """Validate a base topic such as "citynode" or "city/sensors": levels of [A-Za-z0-9_.-], no wildcards,
    no empty levels, not starting with "$" (reserved for the broker)."""
    if not isinstance(base, str) or not base:
        raise TopicError("base topic must be a non-empty string")
    for level in base.split("/"):
        if not _BASE_LEVEL.match(level):
            raise TopicError(f"base topic {base!r}: level {level!r} must be non-empty and use only "
                             "letters, digits, '_', '-' and '.'")
    return base


def is_safe_topic(topic: str) -> bool:
    """True for a topic name we may publish: no wildcards, no empty level, no NUL, not "$..."."""
    return (isinstance(topic, str) and bool(topic) and "+" not in topic and "#" not in topic
            and "\x00" not in topic and not topic.startswith("$")
            and all(level for level in topic.split("/")) and len(topic.encode("utf-8")) <= 65535)


def _kind(kind: str) -> str:
    return kind if kind in KINDS else "unknown"


class Topics:
    """Builds every topic under `base`. Each method sanitises its arguments, so the result is always safe."""

    def __init__(self, base: str = "citynode"):
        self.base = check_base(base)

    def _device(self, kind: str, device: str, leaf: str) -> str:
        return f"{self.base}/{_kind(kind)}/{sanitise_id(device)}/{leaf}"

    def reading(self, kind: str, device: str) -> str:
        return self._device(kind, device, "reading")

    def state(self, kind: str, device: str) -> str:
        return self._device(kind, device, "state")

    def availability(self, kind: str, device: str) -> str:
        return self._device(kind, device, "availability")

    def status(self, kind: str, device: str) -> str:
        return self._device(kind, device, "status")

    def set(self, kind: str, device: str) -> str:
        return self._device(kind, device, "set")

    def set_response(self, kind: str, device: str) -> str:
        return self._device(kind, device, "set/response")

    def alert(self, kind: str, device: str, alert: str) -> str:
        return f"{self.base}/alerts/{_kind(kind)}/{sanitise_id(device)}/{sanitise_id(alert, 'alert')}"

    def deadletter(self) -> str:
        return f"{self.base}/deadletter"

    def bridge_state(self) -> str:
        return f"{self.base}/bridge/state"

    def set_subscription(self) -> str:
        """The filter the app subscribes to for commands: <base>/+/+/set."""
        return f"{self.base}/+/+/set"

    def parse_set(self, topic: str) -> tuple[str, str] | None:
        """(kind, device) from a `<base>/<kind>/<device>/set` topic, as received (not sanitised), else None."""
        prefix = self.base + "/"
        if not isinstance(topic, str) or not topic.startswith(prefix):
            return None
        rest = topic[len(prefix):].split("/")
        if len(rest) != 3 or rest[2] != "set" or not rest[0] or not rest[1]:
            return None
        return rest[0], rest[1]
