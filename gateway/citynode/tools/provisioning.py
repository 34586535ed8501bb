"""Provision one node: its identity (DevEUI from the modem or the board, else generated; keys generated once),
its config for the site, its files on the board (through flashing.Flasher), and its place in the registry and
the network-server import files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .board_link import BOARDS, BoardLink, BoardType
from .deploy import BoardState
from .errors import SheetError
from .firmware import config_text, validate_config
from .flashing import Flasher, FlashJob, FlashReport
from .identity import DEFAULT_JOIN_EUI, Identity, eui_from_mac, generate_dev_eui, secrets_text, write_private
from .keystore import KeyStore, RunState
from .outputs import NetworkSettings, record, write_outputs
from .sitesheet import Site

MODEM_MARK = "CN-MODEM-EUI "
APP_PROBE = "lib/citynode_fw/radio/at.mpy"  # the modem query needs the app's AT driver on the board
# Ask the node's modem for its DevEUI (RUI3: AT+DEVEUI=? -> AT+DEVEUI=<hex>), through the deployed firmware's
# own hardware layer and AT driver, so the board's pin map decides the UART.
_MODEM_EUI = """
import sys
from citynode_fw.radio.at import ATModem
if sys.platform == 'linux':
    from citynode_fw.hal.unix import UnixHW
    _hw = UnixHW()
else:
    from citynode_fw.hal.esp32 import ESP32HW
    _hw = ESP32HW(%r)
_e = ''
_u = _hw.uart('modem', 115200)
if _u is not None:
    _m = ATModem(_u, _hw.clock)
    if _m.ping():
        _e = _m.query('AT+DEVEUI') or ''
print(%r + _e)
"""


@dataclass
class Options:
    out_dir: Path
    registry: Path
    board: str = "esp32"  # default for rows without a board column
    port: str | None = None  # default for rows without a port column
    join_eui: str = DEFAULT_JOIN_EUI
    net: NetworkSettings = field(default_factory=NetworkSettings)
    firmware: Path | None = None
    frozen: bool = False
    flash: bool = True
    check: bool = True
    dry_run: bool = False


@dataclass
class RowResult:
    site: Site
    status: str  # done | already_done | failed | would
    identity: Identity | None = None
    report: FlashReport | None = None
    files: dict[str, str] = field(default_factory=dict)
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"row": self.site.row, "name": self.site.name, "status": self.status,
                "identity": self.identity.masked() if self.identity else None,
                "flash": self.report.to_json() if self.report else None, "files": self.files,
                **({"error": self.error} if self.error else {})}


def modem_dev_eui(link: BoardLink, board: BoardType) -> str | None:
    """The modem's DevEUI, or None when the board has no modem that answers."""
    from .identity import normalise_hex

    out = link.exec(_MODEM_EUI % (board.board_file, MODEM_MARK), timeout=60, action="ask the modem for its DevEUI")
    for line in out.splitlines():
        if line.startswith(MODEM_MARK):
            return normalise_hex(line[len(MODEM_MARK):], 8)
    return None


class Provisioner:
    def __init__(self, opts: Options, flasher: Flasher):
        self.opts = opts
        self.flasher = flasher
        self.keys = KeyStore(opts.out_dir)
        try:
            self.state = RunState(opts.out_dir)
        except BaseException:
            flasher.close()
            raise

    def board_of(self, site: Site) -> BoardType:
        return BOARDS[site.board or self.opts.board]

    def port_of(self, site: Site) -> str:
        port = site.port or self.opts.port
        if not port:
            raise SheetError(site.where, "port", "no port: give --port or a port column")
        return port

    def identity(self, site: Site, found_eui: str | None = None, source: str = "generated") -> Identity:
        """The node's identity: the stored one when there is one (never new keys for it), else a new one."""
        known = self.keys.get(site.name)
        if known is not None:
            return known
        if site.dev_eui:
            eui, source = site.dev_eui, "sheet"
        elif found_eui:
            eui = found_eui
        else:
            eui, source = generate_dev_eui(), "dry_run" if source == "dry_run" else "generated"
        ident = Identity.new(eui, source, self.opts.join_eui)
        if not self.opts.dry_run:
            self.keys.put(site.name, ident)  # kept before the board is written: a crash cannot orphan keys
        return ident

    def _discover(self, link: BoardLink, board: BoardType, state: BoardState, radio: str) -> tuple[str | None, str]:
        """The DevEUI the hardware has: the modem's, else one from the ESP32's MAC."""
        app_on_board = state.files.get(APP_PROBE) is not None
        if radio != "sx126x_p2p" and (app_on_board or not self.opts.dry_run):  # a dry run reads, never deploys
            eui = modem_dev_eui(link, board)
            if eui and eui != "0" * 16:
                return eui, "modem"
        if state.platform == "esp32" and len(state.uid) == 12:
            return eui_from_mac(state.uid), "board"
        return None, "dry_run" if self.opts.dry_run and radio != "sx126x_p2p" else "generated"

    def provision(self, site: Site) -> RowResult:
        """One node, start to finish. Raises ToolError when it cannot be done."""
        board = self.board_of(site)
        site.config(board.board_file)  # the site's settings are valid for this board before anything else
        if not self.opts.flash:
            ident = self.identity(site)
            config = validate_config(site.config(board.board_file, ident.dev_eui), site.where)
            return self._finish(site, ident, config, None)
        result: dict[str, Any] = {}

        def prepare(link: BoardLink, state: BoardState, _cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
            radio = site.config(board.board_file)["radio"]
            if self.keys.get(site.name) is None and not site.dev_eui:
                eui, source = self._discover(link, board, state, radio)
            else:
                eui, source = None, "generated"
            ident = self.identity(site, eui, source)
            config = validate_config(site.config(board.board_file, ident.dev_eui), site.where)
            result.update(identity=ident, config=config)
            return config, ident.board_secrets(config["radio"])

        job = FlashJob(self.port_of(site), board, firmware=self.opts.firmware, config=site.config(board.board_file),
                       config_source=site.where, frozen=self.opts.frozen, dry_run=self.opts.dry_run,
                       check=self.opts.check)
        report = self.flasher.run(job, prepare)
        res = self._finish(site, result["identity"], result["config"], report)
        return res

    def _finish(self, site: Site, ident: Identity, config: dict[str, Any], report: FlashReport | None) -> RowResult:
        if self.opts.dry_run:
            return RowResult(site, "would", ident, report)
        if report is not None and not report.ok:
            return RowResult(site, "failed", ident, report,
                             error={"error": "check_failed", "message": "; ".join(report.check.errors)})
        folder = self.opts.out_dir / "nodes" / site.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(config_text(config), encoding="utf-8")
        write_private(folder / "secrets.json", secrets_text(ident.board_secrets(config["radio"])))
        self.state.mark_done(site.name, record(site.name, ident, config, site.labels, self.opts.net.network,
                                               site.row))
        files = write_outputs(self.opts.out_dir, self.opts.registry, self.state.done, self.keys.all(), self.opts.net)
        files.update(config=str(folder / "config.json"), secrets=str(folder / "secrets.json"))
        return RowResult(site, "done", ident, report, files)
