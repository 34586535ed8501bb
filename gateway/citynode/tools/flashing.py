"""One command at the board: MicroPython firmware, the compiled app, config and keys, then one wake cycle that
proves the node measures and sends.

Steps, each reported as done, unchanged, skipped or (with dry_run) would:
  port      the serial port exists and no other program holds it
  firmware  (with a firmware image) esptool verify-flash; if it differs: erase-flash, write-flash
  board     MicroPython answers, on an ESP32 (or the emulated board), and its config names the same board
  app       the app compiled by firmware/build.py, copied where the SHA-256 differs (only main.py when frozen)
  packages  micropython-lib packages with mip, only when the radio needs them (sx126x_p2p) and they are missing
  identity  (provisioning) the DevEUI read from the modem, keys made once
  config    config.json, validated with the node's own schema before anything is written
  secrets   secrets.json (0600 on this computer, never shown)
  check     one wake cycle: the reading, the uplinks decoded with the codec, errors a technician can fix
  restart   a hard reset, so the node runs on its own schedule
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import deploy
from .board_link import BOARD_BY_FILE, BoardLink, BoardType, check_port, wait_for_repl
from .errors import BoardNotAnswering, ConfigInvalid, FirmwareError, WrongBoard
from .firmware import cached_build, config_text, node_config, validate_config
from .identity import secrets_text
from .logparse import Event, parse_output

CHECK_MARK = "(check) sleep_ms "
# One wake cycle of the deployed firmware, as main.py runs it, but printing how long it would sleep instead
# of sleeping (hil_tests/conftest.py BENCH_WAKE does the same on the bench).
CHECK_CODE = """
import sys
from citynode_fw.app import cycle
if sys.platform == 'linux':
    from citynode_fw.hal.unix import UnixHW as _HW
else:
    from citynode_fw.hal.esp32 import ESP32HW as _HW
print('[cn] (check) sleep_ms %d' % cycle.run(_HW()))
"""
LORA_FILES = ("lib/lora/__init__.mpy", "lib/lora/sync_modem.mpy", "lib/lora/sx126x.mpy")
ESP_IMAGE_MAGIC = 0xE9  # first byte of an ESP32 image (esptool's ESPLoader.ESP_IMAGE_MAGIC)


@dataclass
class Step:
    name: str
    status: str  # done | unchanged | skipped | would | failed
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.name, "status": self.status, "detail": self.detail, **self.data}


@dataclass
class CheckResult:
    """The check cycle: what the node measured and sent, and what is wrong with it."""

    events: list[Event]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def sample(self) -> dict[str, Any] | None:
        return next((e.data["sample"] for e in self.events if e.kind == "sample"), None)

    @property
    def uplinks(self) -> list[Event]:
        return [e for e in self.events if e.kind == "tx"]

    def to_json(self) -> dict[str, Any]:
        raw = next((e.data.get("raw_mv") for e in self.events if e.kind == "sample"), None)
        return {"ok": self.ok, "sample": self.sample, "raw_mv": raw, "errors": self.errors, "warnings": self.warnings,
                "uplinks": [{k: e.data[k] for k in ("fport", "hex", "result", "decoded")} for e in self.uplinks],
                "log": [e.text for e in self.events if e.kind != "console"]}


def judge(output: str) -> CheckResult:
    """Turn the check cycle's console output into a verdict for the technician."""
    events = [e for e in parse_output(output) if not e.text.startswith(CHECK_MARK)]
    res = CheckResult(events)
    for e in events:
        if e.kind == "config_error":
            res.errors.append(f"the node rejected a setting: {e.data['error']}")
        elif e.kind == "sensor_error":
            res.errors.append(f"sensor '{e.data['role']}' failed ({e.data['error']}): check its cable and plug")
        elif e.kind == "radio" and "no bus" in e.text:
            res.errors.append("the node found no modem on this board: check the board choice and the modem wiring")
        elif e.kind == "radio" and "not joined" in e.text:
            res.errors.append("the node could not join the network: check the antenna, that a gateway is in reach "
                              "and that the device is registered in the network server with these keys")
        elif e.kind == "log" and e.text.startswith("wake failed"):
            res.errors.append(f"the wake cycle failed: {e.text}")
    if res.sample is None:
        res.errors.append("the node printed no reading")
    results = [e.data["result"] for e in res.uplinks]
    if results and "ok" not in results:
        failed = [r for r in results if r != "duty_cycle"]
        if failed:
            res.errors.append(f"the uplink was not sent ({failed[0]}): check the antenna and the gateway")
        else:
            res.warnings.append("nothing was sent now: the radio waits for its duty-cycle allowance after a "
                                "recent uplink; the reading goes out at the next wake")
    return res


@dataclass
class FlashJob:
    """What to put on one board. config/secrets None: keep what the board has."""

    port: str
    board: BoardType
    firmware: Path | None = None
    config: dict[str, Any] | None = None
    config_source: str = "--config"
    secrets: dict[str, str] | None = None
    frozen: bool = False
    dry_run: bool = False
    check: bool = True
    restart: bool = True


@dataclass
class FlashReport:
    port: str
    board: str
    steps: list[Step] = field(default_factory=list)
    check: CheckResult | None = None
    config: dict[str, Any] | None = None
    emulated: bool = False

    @property
    def changed(self) -> bool:
        return any(s.status == "done" and s.name not in ("check", "restart", "port", "board") for s in self.steps)

    @property
    def ok(self) -> bool:
        return self.check is None or self.check.ok

    def to_json(self) -> dict[str, Any]:
        return {"port": self.port, "board": self.board, "emulated": self.emulated, "changed": self.changed,
                "ok": self.ok, "steps": [s.to_json() for s in self.steps],
                "check": self.check.to_json() if self.check else None}


Prepare = Callable[[BoardLink, deploy.BoardState, dict[str, Any]], tuple[dict[str, Any], dict[str, str] | None]]


def check_firmware_file(path: Path) -> None:
    try:
        head = path.read_bytes()[:1]
    except OSError as e:
        raise FirmwareError(str(path), f"cannot read it ({e.strerror or e})") from None
    if not head:
        raise FirmwareError(str(path), "it is empty")
    if head[0] != ESP_IMAGE_MAGIC:
        raise FirmwareError(str(path), "it is not an ESP32 firmware image (its first byte is not 0xE9)")


class Flasher:
    """Runs FlashJobs. `build` caches the compiled app for a session (bulk provisioning builds once)."""

    def __init__(self, *, link_factory: Callable[[str], BoardLink] = BoardLink,
                 on_step: Callable[[Step], None] | None = None, wait_repl: Callable[[str, float], str] = wait_for_repl,
                 after_firmware: Callable[[BoardType], None] | None = None):
        self.link_factory = link_factory
        self.on_step = on_step or (lambda s: None)
        self.wait_repl = wait_repl
        self.after_firmware = after_firmware  # e.g. "remove the BOOT0 link and press RESET" on a RAK11200
        self._build: tuple[Path, dict[str, Any]] | None = None
        self.last_check: CheckResult | None = None  # set before the check step is reported
        self._tmp = Path(tempfile.mkdtemp(prefix="citynode-flash-"))
        self._tmp.chmod(0o700)

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Flasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> tuple[Path, dict[str, Any]]:
        if self._build is None:
            self._build = cached_build()
        return self._build

    def run(self, job: FlashJob, prepare: Prepare | None = None) -> FlashReport:
        """Flash one board. `prepare(link, state, config) -> (config, secrets)` may change the config and keys
        once the app is on the board (provisioning reads the modem's DevEUI there)."""
        rep = FlashReport(job.port, job.board.name)

        def step(name: str, status: str, detail: str = "", **data: Any) -> None:
            s = Step(name, status, detail, data)
            rep.steps.append(s)
            self.on_step(s)

        wanted_config = self._wanted_config(job)  # config and firmware file checked before anything touches
        if job.firmware is not None:  # the board
            check_firmware_file(Path(job.firmware))
        link = self.link_factory(job.port)
        check_port(job.port)
        step("port", "done", f"{job.port} is free")
        erased = self._firmware(job, link, step)
        build_dir, manifest = self.build()
        app = deploy.build_wanted(build_dir, manifest, frozen=job.frozen)
        try:
            # A freshly written MicroPython first makes its filesystem: give it longer to answer.
            # A board answers Ctrl-C within a second; the margin is for busy laptops and CI machines.
            self.wait_repl(job.port, 30.0 if erased and not job.dry_run else 15.0)
            state = deploy.read_state(link, [w.remote for w in app] + ["config.json", "secrets.json", *LORA_FILES])
        except BoardNotAnswering:
            if not (job.dry_run and job.firmware):
                raise
            state = deploy.BoardState("esp32", "", "", "", None, {}, {})  # what an erased board would hold
        rep.emulated = state.emulated
        config = self._board_check(job, state, wanted_config, step)
        self._deploy(job, link, deploy.plan(app, state), state, "app", step,
                     "the compiled app" + (" (main.py only, app frozen in the firmware)" if job.frozen else ""))
        self._packages(job, link, state, config, manifest, step)
        secrets = job.secrets
        if prepare is not None:
            config, new_secrets = prepare(link, state, config)
            secrets = new_secrets if new_secrets is not None else secrets
        rep.config = config
        self._node_files(job, link, state, config, secrets, step)
        if job.dry_run:
            step("check", "would", "run one wake cycle and show the reading")
            return rep
        if job.check:
            out = link.exec(CHECK_CODE, timeout=180, action="run a wake cycle")
            rep.check = self.last_check = judge(out)
            sent = [e for e in rep.check.uplinks if e.data["result"] == "ok"]
            step("check", "done" if rep.check.ok else "failed",
                 f"one wake cycle: {'a reading' if rep.check.sample else 'no reading'}, {len(sent)} of "
                 f"{len(rep.check.uplinks)} uplink(s) sent")
        else:
            step("check", "skipped", "no test wake cycle (--no-check)")
        if job.restart:
            link.reset()
            step("restart", "done", "the node now runs on its own schedule")
        return rep

    # -- steps ---------------------------------------------------------------------------------------------------

    def _firmware(self, job: FlashJob, link: BoardLink, step: Callable[..., None]) -> bool:
        """True when the board's flash is (or would be) erased."""
        if job.firmware is None:
            step("firmware", "skipped", "no --firmware given: MicroPython must already be on the board")
            return False
        fw = Path(job.firmware).resolve()
        commands = [link.erase_flash_args(job.board), link.write_flash_args(job.board, fw)]
        if job.dry_run:
            step("firmware", "would", f"compare {fw.name} with the board; if different erase and write it",
                 commands=[link.verify_flash_args(job.board, fw), *commands])
            return True
        if link.verify_flash(job.board, fw):
            step("firmware", "unchanged", f"{fw.name} is already on the board")
            erased = False
        else:
            link.erase_flash(job.board)
            link.write_flash(job.board, fw)
            step("firmware", "done", f"erased the flash and wrote {fw.name}", commands=commands)
            erased = True
        if self.after_firmware is not None:
            self.after_firmware(job.board)
        return erased

    @staticmethod
    def _wanted_config(job: FlashJob) -> dict[str, Any] | None:
        if job.config is None:
            return None
        raw = dict(job.config)
        if raw.get("board", job.board.board_file) != job.board.board_file:
            other = BOARD_BY_FILE.get(str(raw["board"]))
            raise WrongBoard(job.port, job.board.name, other.name if other else str(raw["board"]), job.config_source,
                             "Choose the --board the config was written for, or correct its 'board'.")
        raw["board"] = job.board.board_file
        return validate_config(raw, job.config_source)

    def _board_check(self, job: FlashJob, state: deploy.BoardState, wanted: dict[str, Any] | None,
                     step: Callable[..., None]) -> dict[str, Any]:
        if state.platform not in ("esp32", "linux"):
            raise WrongBoard(job.port, job.board.chip_name, state.machine or state.platform, "MicroPython")
        current, errors = (None, []) if state.config_text is None else node_config().parse(state.config_text)
        if current is not None and not errors and current["board"] != job.board.board_file and wanted is None:
            other = BOARD_BY_FILE.get(current["board"])
            raise WrongBoard(job.port, job.board.name, other.name if other else current["board"],
                             "the board's config.json",
                             "Choose the matching --board, or give a --config written for this board.")
        if wanted is not None:
            config = wanted
        elif current is not None and not errors:
            config = current
        elif current is not None:
            raise ConfigInvalid("the board's config.json", errors)
        else:
            config = validate_config({"board": job.board.board_file}, "the defaults")
        kind = "emulated board" if state.emulated else state.machine
        step("board", "done", f"MicroPython on {kind}", platform=state.platform)
        return config

    def _deploy(self, job: FlashJob, link: BoardLink, p: deploy.Plan, state: deploy.BoardState, name: str,
                step: Callable[..., None], what: str) -> None:
        files = [{"path": w.remote, "reason": p.reason(state, w.remote)} for w in p.copies]
        if not p.changed:
            step(name, "unchanged", f"{what}: all {len(p.unchanged)} files up to date")
        elif job.dry_run:
            step(name, "would", f"{what}: copy {len(p.copies)} of {len(p.copies) + len(p.unchanged)} files",
                 files=files)
        else:
            deploy.apply(link, p)
            step(name, "done", f"{what}: copied {len(p.copies)} of {len(p.copies) + len(p.unchanged)} files",
                 files=files)

    def _packages(self, job: FlashJob, link: BoardLink, state: deploy.BoardState, config: dict[str, Any],
                  manifest: dict[str, Any], step: Callable[..., None]) -> None:
        if job.frozen or config["radio"] != "sx126x_p2p":
            step("packages", "skipped", "none needed for radio " + config["radio"] + (" (frozen)" if job.frozen
                                                                                      else ""))
            return
        packages = [n if v in ("latest", "", None) else f"{n}@{v}" for n, v in manifest["mip"]]
        if all(state.files.get(f) for f in LORA_FILES):
            step("packages", "unchanged", ", ".join(packages) + " already installed")
        elif job.dry_run:
            step("packages", "would", "install " + ", ".join(packages), command=link.mpremote_args("mip", "install",
                                                                                                   *packages))
        else:
            link.mip_install(packages)
            step("packages", "done", "installed " + ", ".join(packages))

    def _node_files(self, job: FlashJob, link: BoardLink, state: deploy.BoardState, config: dict[str, Any],
                    secrets: dict[str, str] | None, step: Callable[..., None]) -> None:
        stage = Path(tempfile.mkdtemp(prefix="node-", dir=self._tmp))
        try:
            wanted = [self._stage(stage, "config.json", config_text(config))]
            if secrets is not None:
                wanted.append(self._stage(stage, "secrets.json", secrets_text(secrets)))
            p = deploy.plan(wanted, state)
            if p.changed and not job.dry_run:
                deploy.apply(link, p)  # config and keys in one session, renamed into place together
            for w in wanted:
                name = w.remote.split(".")[0]
                detail = f"checksum {node_config().checksum(config):04x}" if name == "config" else "keys (not shown)"
                if w not in p.copies:
                    step(name, "unchanged", detail)
                else:
                    step(name, "would" if job.dry_run else "done", f"{'write' if job.dry_run else 'wrote'} "
                                                                   f"{w.remote}: {detail}")
            if secrets is None:
                have = state.files.get("secrets.json") is not None
                needs = "join_eui and app_key" if config["radio"] == "rak3172_lorawan" else "p2p_key"
                step("secrets", "unchanged" if have else "skipped",
                     "kept the keys on the board" if have else f"no keys on the board: the node needs {needs} "
                     "(citynode provision writes them)")
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    @staticmethod
    def _stage(folder: Path, name: str, text: str) -> deploy.Wanted:
        from .identity import write_private

        path = write_private(folder / name, text)
        return deploy.Wanted(name, path, deploy.sha256_file(path), atomic=True)
