"""The bridge's configuration: one TOML file, read and checked once at start (examples/bridge.toml).

Every problem is reported with the key it concerns, e.g. `output.port: must be 1..65535, got 0`; all of
them at once (ConfigError.problems), so `citynode bridge --check` lists everything to fix.

Secrets (passwords, API keys, a Redis URL with a password) are written as

    password = {env = "CITYNODE_OUTPUT_PASSWORD"}     # from the environment
    password = {file = "/run/secrets/output"}         # from a file (trailing newline removed)
    password = "s3cret"                               # accepted, with a warning: not in the config file

and become `Secret` values, resolved at load, whose repr and str are '***'. `BridgeConfig.secret_values()`
lists them for the log filter. Nothing here reads files other than the config and secret files, opens
sockets or keeps global state.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from citynode.core.topics import TopicError, check_base

SECTIONS = ("bridge", "input", "output", "outbox", "registry", "dedup", "pipeline", "metrics", "log")
INPUT_KINDS = ("chirpstack", "tts", "serial")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
_GROUP_OR_EMPTY = re.compile(r"^[A-Za-z0-9_.-]{0,64}\Z")


class Secret:
    """A secret value: repr() and str() are '***'; reveal() returns the value for the one place that needs it."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str = "") -> None:
        self._value = value
        self.origin = origin  # where it came from, e.g. "env CITYNODE_OUTPUT_PASSWORD" (safe to print)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class ConfigError(Exception):
    """The config is not usable. `problems` lists (key, what is wrong); `key`/`problem` are the first."""

    def __init__(self, problems: list[tuple[str, str]], path: str | None = None):
        self.problems = problems
        self.path = path
        self.key, self.problem = problems[0] if problems else ("", "invalid configuration")
        lines = "\n".join(f"{key}: {problem}" for key, problem in problems)
        super().__init__(f"{path}:\n{lines}" if path and len(problems) > 1 else
                         f"{path}: {lines}" if path else lines)


# -- sections ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BridgeSection:
    instance: str = ""  # scale-out: a per-process name, appended to client ids (CITYNODE_INSTANCE overrides)
    shared_group: str = ""  # scale-out: MQTT 5 shared subscription group for the input
    queue_size: int = 10_000
    batch_max: int = 256  # at most this many input items per outbox transaction (group commit)
    tick_interval_s: float = 10.0
    drain_timeout_s: float = 10.0


@dataclass(frozen=True)
class OutputSection:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    anonymous: bool = False
    client_id: str = "citynode-bridge"
    base_topic: str = "citynode"
    qos: int = 1
    inflight_window: int = 256
    keepalive_s: int = 30
    protocol: str = "3.1.1"
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_payload_bytes: int = 256 * 1024
    republish_retained: bool = True
    give_up_after_s: float = 0.0


@dataclass(frozen=True)
class OutboxSection:
    path: str = "/var/lib/citynode/outbox.sqlite"
    max_rows: int = 1_000_000
    overflow: str = "drop_oldest"
    synchronous: str = "full"
    max_db_mb: float | None = None


@dataclass(frozen=True)
class DedupSection:
    window_s: float = 600.0
    redis_url: Secret | None = field(default=None, repr=False)
    redis_prefix: str = "citynode:dedup:"


@dataclass(frozen=True)
class MetricsSection:
    enabled: bool = True
    listen: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class LogSection:
    level: str = "INFO"
    format: str = "text"


@dataclass(frozen=True)
class InputSection:
    """One [input.<kind>] table, checked; `options` holds the values for the source's Settings class."""

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = {k: ("***" if isinstance(v, Secret) else v) for k, v in self.options.items()}
        return f"InputSection(kind={self.kind!r}, options={shown!r})"

    def settings(self, instance: str = "", shared_group: str = "") -> Any:
        """The source's Settings object. `instance` is appended to its client id (several bridge processes
        must not share one); `shared_group` turns on shared subscriptions where the source supports them."""
        options = reveal(self.options)
        if shared_group and self.kind == "chirpstack":
            options["shared_group"] = shared_group
        settings = _settings_class(self.kind)(**options)
        if instance and getattr(settings, "client_id", None):
            settings = dataclasses.replace(settings, client_id=f"{settings.client_id}-{instance}")
        return settings


@dataclass(frozen=True)
class BridgeConfig:
    path: str
    bridge: BridgeSection
    inputs: tuple[InputSection, ...]
    output: OutputSection
    outbox: OutboxSection
    registry_path: str
    dedup: DedupSection
    pipeline: Any  # citynode.core.pipeline.PipelineSettings
    metrics: MetricsSection
    log: LogSection
    warnings: tuple[str, ...] = ()

    def input(self, kind: str) -> InputSection | None:
        return next((i for i in self.inputs if i.kind == kind), None)

    def secret_values(self) -> list[str]:
        """Every secret's value, for the log filter that masks them."""
        found: list[str] = []

        def visit(value: Any) -> None:
            if isinstance(value, Secret):
                found.append(value.reveal())
            elif isinstance(value, Mapping):
                for v in value.values():
                    visit(v)
            elif isinstance(value, list | tuple):
                for v in value:
                    visit(v)

        visit(self.output.password)
        visit(self.dedup.redis_url)
        for section in self.inputs:
            visit(section.options)
        return [s for s in found if s]


# -- the reader ------------------------------------------------------------------------------------------


class Reader:
    """Reads typed values out of one TOML table, collecting problems instead of stopping at the first."""

    def __init__(self, table: Mapping[str, Any], prefix: str, problems: list[tuple[str, str]],
                 warnings: list[str], env: Mapping[str, str]):
        self.table, self.prefix, self.problems, self.warnings, self.env = table, prefix, problems, warnings, env
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str) -> None:
        self.problems.append((self.key(name), problem))

    def _get(self, name: str, default: Any, required: bool) -> Any:
        self.used.add(name)
        if name not in self.table:
            if required:
                self.fail(name, "is required")
            return default
        return self.table[name]

    def text(self, name: str, default: str | None = None, *, required: bool = False,
             pattern: re.Pattern[str] | None = None, choices: tuple[str, ...] | None = None) -> Any:
        value = self._get(name, default, required)
        if value is None or value is default:
            return value
        if not isinstance(value, str):
            self.fail(name, f"must be text, got {_type(value)}")
            return default
        if choices is not None and value not in choices:
            self.fail(name, f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
            return default
        if pattern is not None and not pattern.match(value):
            self.fail(name, f"{value!r} is not allowed here (expected {pattern.pattern})")
            return default
        return value

    def integer(self, name: str, default: int | None, lo: int, hi: int, *, required: bool = False) -> Any:
        value = self._get(name, default, required)
        if value is None or value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"must be a whole number {lo}..{hi}, got {_type(value)}")
            return default
        if not lo <= value <= hi:
            self.fail(name, f"must be {lo}..{hi}, got {value}")
            return default
        return value

    def number(self, name: str, default: float | None, lo: float, hi: float) -> Any:
        value = self._get(name, default, False)
        if value is None or value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                (isinstance(value, float) and not math.isfinite(value)):
            self.fail(name, f"must be a number {lo:g}..{hi:g}, got {_type(value)}")
            return default
        if not lo <= value <= hi:
            # A TOML integer may be too large for a float (and so for :g).
            shown = f"{value:g}" if isinstance(value, float) or abs(value) < 10**15 else f"{str(value)[:12]}..."
            self.fail(name, f"must be {lo:g}..{hi:g}, got {shown}")
            return default
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name, default, False)
        if not isinstance(value, bool):
            self.fail(name, f"must be true or false, got {_type(value)}")
            return default
        return value

    def file(self, name: str, *, required: bool = False) -> str | None:
        value = self.text(name, None, required=required)
        if value is not None and not _is_file(value):
            self.fail(name, f"file not found: {value}")
        return value

    def secret(self, name: str, *, required: bool = False) -> Secret | None:
        """A secret: {env = "VAR"}, {file = "/path"} or (warned about) a plain string."""
        value = self._get(name, None, required)
        if value is None:
            return None
        return resolve_secret(value, self.key(name), self.problems, self.warnings, self.env)

    def table_of(self, name: str) -> Mapping[str, Any]:
        value = self._get(name, {}, False)
        if not isinstance(value, Mapping):
            self.fail(name, f"must be a table, got {_type(value)}")
            return {}
        return value

    def check_unknown(self) -> None:
        for name in self.table:
            if name not in self.used:
                self.fail(name, f"unknown key (known: {', '.join(sorted(self.used))})")


def resolve_secret(value: Any, key: str, problems: list[tuple[str, str]], warnings: list[str],
                   env: Mapping[str, str]) -> Secret | None:
    """Turns a config value into a Secret (see the module docstring); records problems under `key`."""
    if isinstance(value, str):
        warnings.append(f"{key}: a plain-text secret in the config file; prefer {{env = \"VAR\"}} or "
                        "{file = \"/run/secrets/...\"}")
        return Secret(value, "config file")
    if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in ("env", "file"):
        problems.append((key, "must be {env = \"VAR\"}, {file = \"/path\"} or a string"))
        return None
    how, where = next(iter(value.items()))
    if not isinstance(where, str) or not where:
        problems.append((key, f"{how} must be a non-empty string"))
        return None
    if how == "env":
        if not _ENV_NAME.match(where):
            problems.append((key, f"{where!r} is not an environment variable name"))
            return None
        if where not in env:
            problems.append((key, f"environment variable {where} is not set"))
            return None
        if not env[where]:
            problems.append((key, f"environment variable {where} is empty"))
            return None
        return Secret(env[where], f"env {where}")
    try:
        text = Path(where).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        problems.append((key, f"cannot read secret file {where}: {exc.strerror or exc}"))
        return None
    except ValueError as exc:  # a NUL in the path, or a file that is not UTF-8
        problems.append((key, f"cannot read secret file {where!r}: {exc}"))
        return None
    if not text:
        problems.append((key, f"secret file {where} is empty"))
        return None
    return Secret(text, f"file {where}")


def _exists(path: str) -> bool:
    """Path.exists(), False for paths the OS refuses (too long, NUL) instead of raising."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def _type(value: Any) -> str:
    return {bool: "a boolean", int: "a whole number", float: "a number", str: "text", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


# -- the sections -----------------------------------------------------------------------------------------


def _bridge(r: Reader) -> BridgeSection:
    d = BridgeSection()
    section = BridgeSection(
        instance=r.text("instance", d.instance, pattern=_GROUP_OR_EMPTY),
        shared_group=r.text("shared_group", d.shared_group, pattern=_GROUP_OR_EMPTY),
        queue_size=r.integer("queue_size", d.queue_size, 1, 1_000_000),
        batch_max=r.integer("batch_max", d.batch_max, 1, 10_000),
        tick_interval_s=r.number("tick_interval_s", d.tick_interval_s, 0.1, 3600),
        drain_timeout_s=r.number("drain_timeout_s", d.drain_timeout_s, 0, 3600),
    )
    r.check_unknown()
    return section


def _credentials_check(r: Reader, username: str | None, password: Secret | None, cert_file: str | None,
                       anonymous: bool) -> None:
    if password is not None and not username:
        r.fail("password", "is set but username is not")
    if not anonymous and not username and not cert_file:
        r.fail("username", "is required (or a client certificate, cert_file): anonymous access is off; "
                           "set anonymous = true only for a local test broker")
    if anonymous:
        r.warnings.append(f"{r.prefix}: anonymous = true: connecting without credentials")


def _output(r: Reader) -> OutputSection:
    d = OutputSection()
    tls = r.boolean("tls", d.tls)
    cert_file = r.file("cert_file")
    key_file = r.file("key_file")
    if (cert_file is None) != (key_file is None):
        r.fail("key_file" if key_file is None else "cert_file", "cert_file and key_file go together")
    if cert_file and not tls:
        r.fail("cert_file", "a client certificate needs tls = true")
    username = r.text("username")
    password = r.secret("password")
    anonymous = r.boolean("anonymous", d.anonymous)
    _credentials_check(r, username, password, cert_file, anonymous)
    if password is not None and not tls:
        r.warnings.append(f"{r.key('password')}: sent in clear text (tls = false)")
    base = r.text("base_topic", d.base_topic)
    try:
        check_base(base)
    except TopicError as exc:
        r.fail("base_topic", str(exc))
    protocol = r.text("protocol", d.protocol, choices=("3.1.1", "5"))
    reconnect_min = r.number("reconnect_min_s", d.reconnect_min_s, 0.05, 60)
    reconnect_max = r.number("reconnect_max_s", d.reconnect_max_s, 0.1, 3600)
    if reconnect_min > reconnect_max:
        r.fail("reconnect_max_s", f"must be at least reconnect_min_s ({reconnect_min:g})")
    qos = r.integer("qos", d.qos, 0, 2)
    if qos == 0:
        r.fail("qos", "must be 1 or 2: QoS 0 messages are lost while the connection is down")
    section = OutputSection(
        host=r.text("host", None, required=True) or d.host,
        port=r.integer("port", 8883 if tls else 1883, 1, 65535),
        tls=tls, ca_file=r.file("ca_file"), cert_file=cert_file, key_file=key_file,
        username=username, password=password, anonymous=anonymous,
        client_id=r.text("client_id", d.client_id, pattern=_CLIENT_ID),
        base_topic=base, qos=qos,
        inflight_window=r.integer("inflight_window", d.inflight_window, 1, 65535),
        keepalive_s=r.integer("keepalive_s", d.keepalive_s, 5, 3600),
        protocol=protocol, reconnect_min_s=reconnect_min, reconnect_max_s=reconnect_max,
        max_payload_bytes=r.integer("max_payload_bytes", d.max_payload_bytes, 1024, 256 * 1024 * 1024),
        republish_retained=r.boolean("republish_retained", d.republish_retained),
        give_up_after_s=r.number("give_up_after_s", d.give_up_after_s, 0, 7 * 86400),
    )
    r.check_unknown()
    return section


def _outbox(r: Reader) -> OutboxSection:
    d = OutboxSection()
    section = OutboxSection(
        path=r.text("path", d.path),
        max_rows=r.integer("max_rows", d.max_rows, 1, 1_000_000_000),
        overflow=r.text("overflow", d.overflow, choices=("drop_oldest", "reject_new")),
        synchronous=r.text("synchronous", d.synchronous, choices=("full", "normal")),
        max_db_mb=r.number("max_db_mb", d.max_db_mb, 1, 10_000_000),
    )
    r.check_unknown()
    return section


def _dedup(r: Reader) -> DedupSection:
    d = DedupSection()
    url = r.secret("redis_url")
    if url is not None and not url.reveal().startswith(("redis://", "rediss://", "unix://")):
        r.fail("redis_url", "must start with redis://, rediss:// or unix://")
    if url is not None and "@" not in url.reveal():
        # A URL without a password is not a secret; no warning for writing it in the file.
        r.warnings[:] = [w for w in r.warnings if not w.startswith(r.key("redis_url"))]
    section = DedupSection(window_s=r.number("window_s", d.window_s, 1, 7 * 86400), redis_url=url,
                           redis_prefix=r.text("redis_prefix", d.redis_prefix))
    r.check_unknown()
    return section


def _metrics(r: Reader) -> MetricsSection:
    d = MetricsSection()
    section = MetricsSection(enabled=r.boolean("enabled", d.enabled), listen=r.text("listen", d.listen),
                             port=r.integer("port", d.port, 0, 65535))
    r.check_unknown()
    return section


def _log(r: Reader) -> LogSection:
    d = LogSection()
    level = r.text("level", d.level)
    if level is not None and level.upper() not in LOG_LEVELS:
        r.fail("level", f"must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
        level = d.level
    section = LogSection(level=level.upper(), format=r.text("format", d.format, choices=("json", "text")))
    r.check_unknown()
    return section


def _registry(r: Reader) -> str:
    path = r.file("path", required=True)
    r.check_unknown()
    return path or ""


# -- inputs and pipeline: checked against the classes that use them ------------------------------------------
#
# An [input.<kind>] table takes the fields of that source's Settings dataclass and the [pipeline] table those
# of PipelineSettings, so an option added there is configurable here without a change (types are read from
# the dataclass; the ranges below are the ones worth checking early). Their own __post_init__ checks run at
# load too, and their messages are reported under the section's key.

_INPUT_CLASSES = {
    "chirpstack": ("citynode.sources.chirpstack", "ChirpStackSettings"),
    "tts": ("citynode.sources.tts", "TTSSettings"),
    "serial": ("citynode.sources.serial_p2p", "SerialP2PSettings"),
}
_SECRET_FIELDS = ("password", "api_key")
_FILE_FIELDS = ("ca_file",)
_BRIDGE_MANAGED = ("shared_group",)  # set from [bridge]
_NOT_CONFIGURABLE = {"pipeline": ("base_topic", "dedup_window_s", "sensorthings")}  # from [output]/[dedup]/below
_RANGES: dict[str, tuple[float, float]] = {
    "port": (1, 65535), "qos": (0, 2), "keepalive": (5, 3600), "baud": (300, 4_000_000),
    "reconnect_min_s": (0.1, 3600), "reconnect_max_s": (0.1, 86400), "session_expiry_s": (0, 2**32 - 1),
    "fill_collection_pct": (0, 125), "soil_irrigation_pct": (0, 100), "battery_low_v": (2.0, 4.5),
    "offline_after_intervals": (1, 1000), "default_expected_interval_s": (60, 7 * 86400),
}


def _settings_class(kind: str) -> type:
    import importlib

    module, name = _INPUT_CLASSES[kind]
    return getattr(importlib.import_module(module), name)


def _read_field(r: Reader, name: str, hint: Any, default: Any) -> Any:
    """One dataclass field's value, read according to its type hint."""

    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and args:
        hint, origin = args[0], typing.get_origin(args[0])
    lo, hi = _RANGES.get(name, (0, 2**31 - 1))
    if hint is bool:
        return r.boolean(name, default)
    if hint is int:
        return r.integer(name, default, int(lo), int(hi))
    if hint is float:
        return r.number(name, default, lo, hi)
    if hint is str:
        return r.file(name) if name in _FILE_FIELDS else r.text(name, default)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        table = r.table_of(name)
        bad = [k for k, v in table.items() if not isinstance(v, str | int) or isinstance(v, bool)]
        if bad:
            r.fail(f"{name}.{bad[0]}", "must be text or a whole number")
        return dict(table) if table or name in r.table else default
    r.fail(name, f"cannot be set from the config file ({hint})")
    return default


def _read_dataclass(cls: type, r: Reader, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values a TOML table gives for `cls`'s fields (only those present), checked by type."""

    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        if f.name in _SECRET_FIELDS:
            secret = r.secret(f.name)
            if secret is not None:
                values[f.name] = secret
            continue
        if f.name not in r.table:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        value = _read_field(r, f.name, hints[f.name], default)
        if value is not None:
            values[f.name] = value
    return values


def reveal(options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` with each Secret replaced by its value: for the Settings classes, whose secret fields are
    already hidden from repr()."""
    return {k: v.reveal() if isinstance(v, Secret) else v for k, v in options.items()}


def _read_input(kind: str, r: Reader) -> dict[str, Any]:
    cls = _settings_class(kind)
    options = _read_dataclass(cls, r, skip=_BRIDGE_MANAGED)
    if kind == "chirpstack":
        anonymous = r.boolean("anonymous", False)
        _credentials_check(r, options.get("username"), options.get("password"), None, anonymous)
    if kind == "tts":
        if "api_key" not in options:
            r.fail("api_key", "is required (a TTS API key with the right to read application traffic)")
        if not options.get("application_id"):
            r.fail("application_id", "is required")
    if kind in ("chirpstack", "tts") and not options.get("tls", kind == "tts") and \
            (options.get("password") or options.get("api_key")):
        r.warnings.append(f"{r.prefix}: credentials sent in clear text (tls = false)")
    if kind == "serial" and "port" in options and not _exists(options["port"]):
        r.warnings.append(f"{r.key('port')}: {options['port']} does not exist (yet)")
    r.check_unknown()
    try:
        cls(**reveal(options))
    except (TypeError, ValueError) as exc:
        r.problems.append((r.prefix, str(exc)))
    return options


def _read_pipeline(r: Reader, base_topic: str, dedup_window_s: float) -> Any:
    from citynode.core.pipeline import PipelineSettings
    from citynode.sinks.sensorthings import SensorThingsSettings

    options = _read_dataclass(PipelineSettings, r, skip=_NOT_CONFIGURABLE["pipeline"])
    if "unknown_devices" in options and options["unknown_devices"] not in ("publish", "deadletter"):
        r.fail("unknown_devices", f"must be 'publish' or 'deadletter', got {options['unknown_devices']!r}")
    sta = r.table.get("sensorthings", False)
    r.used.add("sensorthings")
    if isinstance(sta, bool):
        options["sensorthings"] = SensorThingsSettings() if sta else None
    elif isinstance(sta, Mapping):
        sr = Reader(sta, r.key("sensorthings"), r.problems, r.warnings, r.env)
        enabled = sr.boolean("enabled", True)
        sta_options = _read_dataclass(SensorThingsSettings, sr, skip=("datastreams",))
        streams = sr.table_of("datastreams")
        for device, table in streams.items():
            if not isinstance(table, Mapping):
                sr.fail(f"datastreams.{device}", "must be a table of measurement = datastream id")
        sr.check_unknown()
        try:
            options["sensorthings"] = (SensorThingsSettings(**sta_options, datastreams={k: dict(v) for k, v in
                                       streams.items() if isinstance(v, Mapping)}) if enabled else None)
        except (TypeError, ValueError) as exc:
            sr.problems.append((sr.prefix, str(exc)))
            options["sensorthings"] = None
    else:
        r.fail("sensorthings", f"must be true, false or a table, got {_type(sta)}")
    r.check_unknown()
    try:
        return PipelineSettings(base_topic=base_topic, dedup_window_s=dedup_window_s, **options)
    except (TypeError, ValueError) as exc:
        r.problems.append((r.prefix, str(exc)))
        return None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> BridgeConfig:
    """Reads and checks the config file. Raises ConfigError listing every problem."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ConfigError([("config", f"cannot read {path}: {exc.strerror or exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("config", f"not valid TOML: {exc}")], path) from None
    except RecursionError:
        raise ConfigError([("config", "not usable TOML: nested too deeply")], path) from None
    except ValueError as exc:  # e.g. an integer beyond CPython's int/str conversion limit
        raise ConfigError([("config", f"not usable TOML: {exc}")], path) from None
    return parse_config(doc, path, os.environ if env is None else env)


def parse_config(doc: Mapping[str, Any], path: str = "<config>", env: Mapping[str, str] | None = None) -> BridgeConfig:
    """Checks an already parsed TOML document (see load_config)."""
    env = os.environ if env is None else env
    problems: list[tuple[str, str]] = []
    warnings: list[str] = []

    def reader(name: str, prefix: str | None = None) -> Reader:
        table = doc.get(name, {})
        if not isinstance(table, Mapping):
            problems.append((name, f"must be a table ([{name}]), got {_type(table)}"))
            table = {}
        return Reader(table, prefix or name, problems, warnings, env)

    for name in doc:
        if name not in SECTIONS:
            problems.append((name, f"unknown section (known: {', '.join(SECTIONS)})"))
    bridge = _bridge(reader("bridge"))
    inputs_table = reader("input").table
    inputs = []
    for kind, table in inputs_table.items():
        if kind not in INPUT_KINDS:
            problems.append((f"input.{kind}", f"unknown input (known: {', '.join(INPUT_KINDS)})"))
            continue
        if not isinstance(table, Mapping):
            problems.append((f"input.{kind}", f"must be a table, got {_type(table)}"))
            continue
        r = Reader(table, f"input.{kind}", problems, warnings, env)
        inputs.append(InputSection(kind, _read_input(kind, r)))
    if not inputs_table:
        problems.append(("input", "at least one of [input.chirpstack], [input.tts], [input.serial] is needed"))
    output = _output(reader("output"))
    outbox = _outbox(reader("outbox"))
    registry_path = _registry(reader("registry"))
    dedup = _dedup(reader("dedup"))
    if bridge.shared_group and any(i.kind == "serial" for i in inputs):
        problems.append(("input.serial", "one serial receiver cannot be shared by several bridge processes "
                                         "(bridge.shared_group is set): give it its own bridge config"))
    if bridge.shared_group and any(i.kind == "tts" for i in inputs):
        warnings.append("input.tts: The Things Stack has no shared subscriptions: every bridge process receives "
                        "every TTS uplink and the shared (Redis) duplicate detection drops the copies")
    if bridge.shared_group and dedup.redis_url is None:
        problems.append(("dedup.redis_url", "is required with bridge.shared_group: the bridge processes must "
                                            "share their duplicate detection"))
    pipeline = _read_pipeline(reader("pipeline"), output.base_topic, dedup.window_s)
    metrics = _metrics(reader("metrics"))
    log_section = _log(reader("log"))
    if problems:
        raise ConfigError(problems, path)
    return BridgeConfig(path=path, bridge=bridge, inputs=tuple(inputs), output=output, outbox=outbox,
                        registry_path=registry_path, dedup=dedup, pipeline=pipeline, metrics=metrics,
                        log=log_section, warnings=tuple(warnings))
