"""Hardware-in-the-loop tests: the same firmware and the same tests against an emulated board (CI, the default)
or a real ESP32/RAK board on the bench.

    .venv/bin/python -m pytest hil_tests                                    # emulated board, modem and network
    .venv/bin/python -m pytest hil_tests --board /dev/ttyUSB0 --node-config bench/node.json \\
        --node-secrets bench/secrets.json --mqtt 192.168.1.10:1883 --lns-application <id>

Self-contained: nothing from tests/conftest.py is used (tests/brokers.py is imported for the Mosquitto used in
emulation). See hil_tests/README.md for the bench set-up.

Fixtures a test uses:
  board         the board under test (BoardUnderTest): .port for mpremote, .emulated, and in emulation .emulator
                (EmulatedBoard), .modem (the emulated RAK3172, with .faults), .lns (EmulatedLNS)
  deploy        deploy(kind, world=..., **config): build with firmware/build.py and copy with mpremote, as a
                technician would (cp -r lib main.py :, then config.json and secrets.json)
  run_wake      run_wake(...): one wake cycle; returns a Wake with the node's "[cn] ..." lines parsed
  uplinks       what the node sent, as the network published it on MQTT (ChirpStack v4 or TTS v3 JSON)
  downlink      downlink(fport, payload): queue a downlink through the network's MQTT API
  world         the simulated world's expected readings at a board time (emulation only)
  receiver      the serial port of a RAK3172 P2P receiver (emulated on the board's air, or --receiver)
Tests that need something only the emulation can inject skip on real hardware, saying so.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # brokers.py: a real Mosquitto for the emulated network
sys.path.insert(0, str(ROOT / "firmware"))  # citynode_fw.hal.sim: the simulated world, to know what to expect

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))
EMULATED = "emulated"
# The emulated node's identity (a real node's comes from --node-config / --node-secrets).
DEV_EUI = "AC1F09FFFE00C17E"
JOIN_EUI = "70B3D57ED005C17E"
APP_KEY = "2B7E151628AED2A6ABF7158809CF4F3C"
P2P_KEY = "000102030405060708090A0B0C0D0E0F"
# The worlds the emulated nodes live in (firmware/citynode_fw/hal/sim.py): no daily swing, so values are steady.
WORLDS = {
    "soil": {"kind": "soil", "vwc_start": 30.0, "dry_per_day": 3.0, "soil_temp_mean": 13.0, "soil_temp_swing": 0,
             "battery_v": 3.6, "battery_drop_per_day": 0, "probe": {"dry_mv": 2480, "wet_mv": 1210, "wet_vwc": 45}},
    "fill": {"kind": "fill", "fill_start": 40.0, "fill_per_day": 24.0, "empty_m": 1.2, "full_m": 0.2,
             "temp_mean": 12.0, "temp_swing": 0, "battery_v": 3.6, "battery_drop_per_day": 0},
}
# Config every test node starts from (firmware/citynode_fw/app/config.py): one sample per uplink, calibrated.
CONFIGS = {
    "soil": {"kind": "soil", "sample_interval_s": 900, "batch_size": 1, "soil_dry_mv": 2480, "soil_wet_mv": 1210,
             "soil_wet_vwc_pct": 45.0, "join_backoff_s": 60},
    "fill": {"kind": "fill", "sample_interval_s": 900, "batch_size": 1, "empty_distance_m": 1.2,
             "full_distance_m": 0.2, "fill_sensor": "a02yyuw", "join_backoff_s": 60},
}
# Modem timing: RUI3 keeps RX and join-accept delays in flash (AT+RX1DL, AT+JN1DL ...); short ones keep a wake
# under a few seconds of real time. DR5 (SF7) as ADR would settle on near a gateway.
FAST_MODEM = {"dr": 5, "rx1dl_ms": 200, "rx2dl_ms": 400, "jn1dl_ms": 300, "jn2dl_ms": 600}


# -- options ---------------------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("citynode HIL")
    g.addoption("--board", default=EMULATED,
                help="serial port of a real ESP32/RAK board on the bench, or 'emulated' (default)")
    g.addoption("--receiver", default=None,
                help="serial port of a RAK3172 (RUI3 AT) listening for P2P frames; emulated boards get an "
                     "emulated one")
    g.addoption("--node-config", default=None, help="real board: the bench node's config.json (board, kind, ...)")
    g.addoption("--node-secrets", default=None, help="real board: its secrets.json (join_eui, app_key, p2p_key)")
    g.addoption("--mqtt", default=None, help="real board: host:port of the LNS's MQTT broker")
    g.addoption("--mqtt-username", default=None)
    g.addoption("--mqtt-password", default=None)
    g.addoption("--lns", default="chirpstack", choices=("chirpstack", "tts"),
                help="MQTT API of the network server (also what the emulated LNS speaks)")
    g.addoption("--lns-application", default=None,
                help="real board: ChirpStack application id, or TTS application id as app@tenant")
    g.addoption("--wake-timeout", type=float, default=60.0, help="seconds one wake cycle may take")
    g.addoption("--wake-gap", type=float, default=10.0,
                help="real board: seconds between two wakes of a test, for the 1 %% duty cycle (10 s is enough "
                     "at DR5; at DR0 use 150)")


@dataclass(frozen=True)
class Options:
    board: str
    receiver: str | None
    node_config: dict[str, Any]
    node_secrets: dict[str, Any]
    mqtt: tuple[str, int] | None
    mqtt_auth: tuple[str, str | None] | None
    lns: str
    lns_application: str | None
    wake_timeout: float
    wake_gap: float

    @property
    def emulated(self) -> bool:
        return self.board == EMULATED


def _json_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise pytest.UsageError(f"{path}: a JSON object is expected")
    return data


@pytest.fixture(scope="session")
def hil(request: pytest.FixtureRequest) -> Options:
    c = request.config
    mqtt = c.getoption("--mqtt")
    host_port = None
    if mqtt:
        host, _, port = mqtt.rpartition(":")
        host_port = (host or "127.0.0.1", int(port or 1883))
    user = c.getoption("--mqtt-username")
    return Options(board=c.getoption("--board"), receiver=c.getoption("--receiver"),
                   node_config=_json_file(c.getoption("--node-config")),
                   node_secrets=_json_file(c.getoption("--node-secrets")), mqtt=host_port,
                   mqtt_auth=(user, c.getoption("--mqtt-password")) if user else None, lns=c.getoption("--lns"),
                   lns_application=c.getoption("--lns-application"), wake_timeout=c.getoption("--wake-timeout"),
                   wake_gap=c.getoption("--wake-gap"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_radio: the emulated board gets no modem, and its sleeps take no real "
                                       "time (sensor tests: fast wakes)")


def pytest_report_header(config: pytest.Config) -> str:
    board = config.getoption("--board")
    return f"HIL target: {'emulated board, modem and network' if board == EMULATED else 'real board on ' + board}"


# -- mpremote, as a technician runs it ------------------------------------------------------------------------------


def mpremote(port: str, *args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
    """`mpremote connect <port> <args>`; raises with its output when it fails and `check` is set."""
    proc = subprocess.run([MPREMOTE, "connect", port, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f"mpremote {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


# -- a wake, as the node logs it ----------------------------------------------------------------------------------


@dataclass
class Wake:
    """One wake cycle: the console output and the node's "[cn] ..." log lines (firmware/citynode_fw/app/cycle.py)."""

    output: str
    board_time: int | None = None  # the board's RTC at the wake (emulation)
    sleep_ms: int | None = None  # how long the node asked to sleep
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log = [line[5:] for line in self.output.splitlines() if line.startswith("[cn] ")]

    @property
    def sample(self) -> dict[str, Any]:
        """The sample the node measured ("sample {...} raw_mv=..")."""
        for line in self.log:
            if line.startswith("sample "):
                return json.loads(line[7:].split(" raw_mv=")[0])
        raise AssertionError(f"no sample in this wake:\n{self.output}")

    @property
    def raw_mv(self) -> float | None:
        for line in self.log:
            m = re.match(r"sample .* raw_mv=([-\d.]+)$", line)
            if m:
                return float(m.group(1))
        return None

    @property
    def sent(self) -> list[tuple[int, bytes, str]]:
        """(fport, payload, result) of every transmission ("tx 1:1007.. ok")."""
        out = []
        for line in self.log:
            m = re.match(r"tx (\d+):([0-9a-f]*) (\S+)$", line)
            if m:
                out.append((int(m.group(1)), bytes.fromhex(m.group(2)), m.group(3)))
        return out

    def lines(self, prefix: str) -> list[str]:
        return [line for line in self.log if line.startswith(prefix)]


# -- the network: uplinks and downlinks over the LNS's MQTT API ----------------------------------------------------


@dataclass(frozen=True)
class Uplink:
    dev_eui: str
    fport: int
    fcnt: int
    payload: bytes
    decoded: dict[str, Any]
    device_id: str = ""

    @property
    def message(self) -> str:
        return self.decoded.get("data", {}).get("message", "")

    @property
    def data(self) -> dict[str, Any]:
        return self.decoded.get("data", {})


class UplinkFeed:
    """Uplinks of one device as its network server publishes them (ChirpStack v4 `event/up`, TTS v3 `up`)."""

    def __init__(self, host: str, port: int, *, flavour: str, application: str, dev_eui: str,
                 auth: tuple[str, str | None] | None = None):
        import paho.mqtt.client as mqtt

        from citynode_codec import decode_uplink

        self._decode = decode_uplink
        self.flavour, self.application, self.dev_eui = flavour, application, dev_eui.lower()
        self.device_id = f"eui-{self.dev_eui}"  # TTS's default; learnt from the first uplink
        self.seen: list[Uplink] = []
        self._new: queue.Queue[Uplink] = queue.Queue()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"citynode-hil-{uuid.uuid4().hex[:8]}")
        if auth:
            self._client.username_pw_set(*auth)
        self._client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(self.up_topic, qos=1)
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise RuntimeError(f"no subscription to {self.up_topic} on {host}:{port}")

    @property
    def up_topic(self) -> str:
        if self.flavour == "chirpstack":
            return f"application/{self.application}/device/{self.dev_eui}/event/up"
        return f"v3/{self.application}/devices/+/up"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        body = json.loads(msg.payload)
        if self.flavour == "chirpstack":
            eui, fport, fcnt, data = body["deviceInfo"]["devEui"], body.get("fPort"), body.get("fCnt", 0), \
                body.get("data", "")
            device_id = ""
        else:
            ids, up = body["end_device_ids"], body["uplink_message"]
            eui, fport, fcnt, data = ids.get("dev_eui", ""), up.get("f_port"), up.get("f_cnt", 0), \
                up.get("frm_payload", "")
            device_id = ids.get("device_id", "")
        if eui.lower() != self.dev_eui or fport is None:
            return
        if device_id:
            self.device_id = device_id
        payload = base64.b64decode(data)
        self._new.put(Uplink(eui.lower(), fport, fcnt, payload, self._decode(fport, payload), device_id))

    def wait(self, count: int = 1, timeout: float = 15.0, message: str | None = None) -> list[Uplink]:
        """The next `count` uplinks (of `message`, when given) that arrived since the last call."""
        got: list[Uplink] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            try:
                up = self._new.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{len(got)} of {count} {message or ''} uplinks within {timeout:g} s; "
                                     f"all so far: {[(u.fport, u.message) for u in self.seen]}") from None
            self.seen.append(up)
            if message is None or up.message == message:
                got.append(up)
        return got

    def drain(self, settle: float = 0.3) -> list[Uplink]:
        """Everything that arrived (waiting `settle` seconds for stragglers)."""
        time.sleep(settle)
        out = []
        while True:
            try:
                up = self._new.get_nowait()
            except queue.Empty:
                return out
            self.seen.append(up)
            out.append(up)

    def downlink(self, fport: int, payload: bytes, confirmed: bool = False) -> None:
        """Queue a downlink the way an application does through the LNS's MQTT integration."""
        data = base64.b64encode(payload).decode()
        if self.flavour == "chirpstack":
            topic = f"application/{self.application}/device/{self.dev_eui}/command/down"
            body: dict[str, Any] = {"devEui": self.dev_eui, "confirmed": confirmed, "fPort": fport, "data": data}
        else:
            topic = f"v3/{self.application}/devices/{self.device_id}/down/push"
            body = {"downlinks": [{"f_port": fport, "frm_payload": data, "confirmed": confirmed,
                                   "priority": "NORMAL"}]}
        self._client.publish(topic, json.dumps(body), qos=1 if self.flavour == "chirpstack" else 0).wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# -- the board under test ---------------------------------------------------------------------------------------


@dataclass
class BoardUnderTest:
    """The board the tests talk to: a serial port, plus the emulators behind it in emulation."""

    port: str
    emulated: bool
    dev_eui: str
    emulator: Any = None  # EmulatedBoard
    modem: Any = None  # RAK3172 (emulated)
    modem_pty: Any = None  # PtyDevice of the modem
    lns: Any = None  # EmulatedLNS
    air: Any = None  # Air, for P2P
    wakes: int = 0  # wake cycles since the last deploy
    last_wake_end: float = 0.0  # time.monotonic() when the last wake ended
    secrets: dict[str, Any] = field(default_factory=dict)  # what the last deploy put in secrets.json

    def mpremote(self, *args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
        """`mpremote connect <port> <args>` (see mpremote() above)."""
        return mpremote(self.port, *args, timeout=timeout, check=check)

    def last_boot(self) -> Wake:
        """Emulation: what boot.py and main.py printed at the board's latest (re)start, as a Wake."""
        return Wake(self.emulator.boot_output())

    def require_emulation(self, why: str) -> None:
        """Skip on real hardware: the test needs the emulation to `why`."""
        if not self.emulated:
            pytest.skip(f"needs the emulation to {why}")

    def modem_commands(self, prefix: str) -> list[str]:
        """AT commands the node sent to the emulated modem that start with `prefix`."""
        text = b"".join(chunk for _, who, chunk in self.modem_pty.transcript if who == "host").decode("latin-1")
        return [line for line in re.split(r"[\r\n]+", text) if line.startswith(prefix)]


@pytest.fixture(scope="session")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The firmware built once per session with firmware/build.py (into a temporary folder)."""
    out = tmp_path_factory.mktemp("firmware") / "build"
    proc = subprocess.run([sys.executable, str(ROOT / "firmware" / "build.py"), "--out", str(out)],
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.fail(f"firmware/build.py failed:\n{proc.stdout}{proc.stderr}", pytrace=False)
    return out, json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="session")
def broker(hil: Options, tmp_path_factory: pytest.TempPathFactory):
    """A Mosquitto for the emulated network (real boards use the LNS's broker)."""
    if not hil.emulated:
        yield None
        return
    from brokers import Mosquitto

    with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as b:
        _SESSION_PIDS.add(b.proc.pid)
        yield b


@pytest.fixture
def board(request: pytest.FixtureRequest, hil: Options, broker, tmp_path: Path):
    """The board under test. Emulated: an EmulatedBoard whose modem is an emulated RAK3172 on a pseudo-terminal,
    joined to an emulated network server that publishes to a local Mosquitto (autorun on, like a board)."""
    if not hil.emulated:
        dev_eui = str(hil.node_config.get("dev_eui") or hil.node_secrets.get("dev_eui") or "")
        yield BoardUnderTest(port=hil.board, emulated=False, dev_eui=dev_eui)
        return
    from citynode.emulation.air import Air, P2PConfig
    from citynode.emulation.board import EmulatedBoard
    from citynode.emulation.lns import EmulatedLNS
    from citynode.emulation.pty_device import PtyDevice
    from citynode.emulation.rak3172 import RAK3172, Settings

    radio = request.node.get_closest_marker("no_radio") is None
    air = Air()
    with EmulatedLNS("127.0.0.1", broker.port, flavour=hil.lns) as lns:
        lns.add_device(DEV_EUI, join_eui=JOIN_EUI, app_key=APP_KEY)
        modem = RAK3172(dev_eui=DEV_EUI, network=lns, air=air, booted=True,
                        settings=Settings(p2p=P2PConfig(freq_hz=868_100_000, sf=9), **FAST_MODEM))
        air.register(modem, name="node modem")
        pty = PtyDevice(modem) if radio else None
        try:
            # Without a modem nothing outside the board keeps real time: let its sleeps take none (time_warp).
            with EmulatedBoard(tmp_path / "flash", modem_path=pty.pts if pty else None, autorun=True,
                               time_warp=not radio) as emu:
                yield BoardUnderTest(port=emu.pts, emulated=True, dev_eui=DEV_EUI, emulator=emu, modem=modem,
                                     modem_pty=pty, lns=lns, air=air)
        finally:
            air.unregister(modem)
            if pty is not None:
                pty.close()


@pytest.fixture
def deploy(board: BoardUnderTest, hil: Options, firmware: tuple[Path, dict[str, Any]], tmp_path: Path):
    """deploy(kind="soil", world=None, **config) -> manifest: the firmware, config.json and secrets.json onto the
    board with mpremote, exactly as a technician deploys (see README). In emulation the simulated world is set
    to WORLDS[kind] updated with `world`."""
    build, manifest = firmware

    def run(kind: str = "soil", world: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
        if board.emulated:
            cfg = dict(CONFIGS[kind], dev_eui=DEV_EUI)
            secrets = {"join_eui": JOIN_EUI, "app_key": APP_KEY, "p2p_key": P2P_KEY}
            board.emulator.set_scenario(dict(WORLDS[kind], **(world or {})))
        else:
            bench_kind = hil.node_config.get("kind", "soil")
            if bench_kind != kind:
                pytest.skip(f"the bench node is a {bench_kind} node")
            if not hil.node_config:
                pytest.skip("give --node-config (the bench node's config.json) to deploy a real board")
            cfg = dict(CONFIGS[kind], **hil.node_config)
            secrets = dict(hil.node_secrets)
        cfg.update(config)
        staging = tmp_path / "deploy"
        staging.mkdir(exist_ok=True)
        (staging / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
        (staging / "secrets.json").write_text(json.dumps(secrets, indent=1) + "\n")
        # What a technician types (README, "Deploying"): the build, then the node's own files.
        fresh = [] if board.emulated else ["+", "exec", CLEAR_SLEEP_MEMORY]
        mpremote(board.port, "cp", "-r", str(build / "lib"), str(build / "main.py"), ":",
                 "+", "cp", str(staging / "config.json"), str(staging / "secrets.json"), ":", *fresh)
        board.wakes = 0
        board.secrets = secrets
        files = dict(manifest["files"])
        for name in ("config.json", "secrets.json"):
            files[name] = {"sha256": _sha256(staging / name)}
        return {"build": build, "files": files, "config": cfg}

    return run


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# A real board keeps its sleep memory from the test before; every test starts from a freshly installed node.
# (In emulation run_wake's first wake is a power-on, which starts with empty sleep memory anyway.)
CLEAR_SLEEP_MEMORY = "import machine; machine.RTC().memory(b'')"

# On a real board main.py would deep-sleep (and the console go quiet); a bench wake runs one cycle and stays
# awake. Same cycle, same hardware layer.
BENCH_WAKE = """\
import sys
from citynode_fw.app import cycle
if sys.platform == 'linux':
    from citynode_fw.hal.unix import UnixHW as _HW
else:
    from citynode_fw.hal.esp32 import ESP32HW as _HW
_hw = _HW()
print('[cn] (bench) sleep_ms %d' % cycle.run(_hw))
"""


@pytest.fixture
def run_wake(board: BoardUnderTest, hil: Options):
    """run_wake(cause=None, sleep_s=None) -> Wake. Emulated: a deep-sleep wake of the board (boot.py, main.py;
    the first wake after a deploy is a power-on). Real: one cycle of the deployed firmware through mpremote."""

    def run(cause: str | None = None, sleep_s: float | None = None) -> Wake:
        if board.emulated:
            emu = board.emulator
            cause = cause or ("power_on" if board.wakes == 0 else "deep_sleep")
            output = emu.wake(cause=cause, sleep_s=sleep_s, timeout=hil.wake_timeout)
            wake = Wake(output, board_time=emu.board_time(), sleep_ms=emu.last_sleep_ms)
        else:
            # The EU868 1 % rule (firmware and modem): after an uplink of T ms the node may not send for 99 T.
            # Emulated wakes are a deep sleep apart on the board's RTC; bench wakes wait in real time.
            if board.wakes:
                time.sleep(max(0.0, board.last_wake_end + hil.wake_gap - time.monotonic()))
            proc = mpremote(board.port, "exec", BENCH_WAKE, timeout=hil.wake_timeout)
            wake = Wake(proc.stdout.replace("\r\n", "\n"))
            for line in wake.lines("(bench) sleep_ms "):
                wake.sleep_ms = int(line.split()[-1])
        board.wakes += 1
        board.last_wake_end = time.monotonic()
        return wake

    return run


@pytest.fixture
def uplinks(board: BoardUnderTest, hil: Options, broker):
    """The node's uplinks as its network server publishes them on MQTT."""
    if board.emulated:
        lns = board.lns
        app = lns.application_id if hil.lns == "chirpstack" else f"{lns.application_id}@{lns.tenant_id}"
        host, port, auth = "127.0.0.1", broker.port, None
    else:
        if not (hil.mqtt and hil.lns_application and board.dev_eui):
            pytest.skip("give --mqtt, --lns-application and a dev_eui (--node-config) to see a real node's uplinks")
        (host, port), app, auth = hil.mqtt, hil.lns_application, hil.mqtt_auth
    feed = UplinkFeed(host, port, flavour=hil.lns, application=app, dev_eui=board.dev_eui, auth=auth)
    yield feed
    feed.close()


@pytest.fixture
def downlink(uplinks: UplinkFeed):
    """downlink(fport, payload, confirmed=False): through the same MQTT API the uplinks come from."""
    return uplinks.downlink


class World:
    """What the simulated sensors read at a board time: firmware/citynode_fw/hal/sim.py run under CPython, on
    the scenario the emulated board has now."""

    def __init__(self, board: BoardUnderTest):
        self.board = board

    def at(self, board_time: int) -> Any:
        from citynode_fw.hal import sim

        class _Clock:
            def time(self) -> int:
                return board_time

        return sim.World(self.board.emulator.scenario, _Clock())


@pytest.fixture
def world(board: BoardUnderTest) -> World:
    board.require_emulation("compare readings with the simulated world")
    return World(board)


@pytest.fixture
def receiver(board: BoardUnderTest, hil: Options):
    """A P2P receiver (a RAK3172 in continuous receive): emulated on the board's air, or --receiver."""
    if board.emulated:
        from citynode.emulation.air import P2PConfig
        from citynode.emulation.p2p_receiver import P2PReceiver

        with P2PReceiver(board.air, config=P2PConfig(freq_hz=868_100_000, sf=9)) as rx:
            yield str(rx.path)
        return
    if not hil.receiver:
        pytest.skip("give --receiver (a RAK3172 serial port) for P2P tests on real hardware")
    yield hil.receiver


def _children() -> list[tuple[int, str, str]]:
    """(pid, state, command) of this process's children; state Z is a zombie."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                out.append((int(entry), fields[0], cmd.strip()))
    return out


_SESSION_PIDS: set[int] = set()  # processes meant to outlive a test (the session's Mosquitto)


@pytest.fixture(autouse=True)
def nothing_left_running():
    """After each test: no interpreter, mpremote or modem process of the test left, no zombie."""
    yield
    if not sys.platform.startswith("linux"):
        return
    left = [c for c in _children() if c[0] not in _SESSION_PIDS]
    assert left == [], f"left running after the test: {left}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.path.exists(MPREMOTE) and not shutil.which("mpremote"):
        skip = pytest.mark.skip(reason="mpremote is not installed (pip install mpremote)")
        for item in items:
            item.add_marker(skip)
