"""Errors of the field tools, written for the technician at the board.

Every error carries its data (the port, the file, the row, ...) as attributes and in `data`, says what went
wrong in `message` and what to do in `hint`. None of them ever holds a key or another secret.
"""

from __future__ import annotations

from typing import Any


class ToolError(Exception):
    """Something the technician can fix. `code` names the kind for scripts (--json)."""

    code = "error"

    def __init__(self, message: str, hint: str = "", **data: Any):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.data = data

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        out.update({k: v for k, v in self.data.items() if v is not None})
        return out

    def __str__(self) -> str:
        return self.message + (f"\n  What to do: {self.hint}" if self.hint else "")


class PortMissing(ToolError):
    code = "port_missing"

    def __init__(self, port: str, available: list[str]):
        listed = ", ".join(available) if available else "none"
        super().__init__(f"There is no serial port {port}.",
                         f"Check the USB cable and pick one of the ports this computer sees: {listed}.",
                         port=port, available=available)
        self.port, self.available = port, available


class PortBusy(ToolError):
    code = "port_busy"

    def __init__(self, port: str, holders: list[tuple[int, str]]):
        who = ", ".join(f"{name} (pid {pid})" for pid, name in holders) or "another program"
        super().__init__(f"The serial port {port} is in use by {who}.",
                         "Close that program (a serial monitor, another citynode command, an IDE) and try again.",
                         port=port, holders=[{"pid": pid, "name": name} for pid, name in holders])
        self.port, self.holders = port, holders


class PortDenied(ToolError):
    code = "port_denied"

    def __init__(self, port: str):
        super().__init__(f"This user may not open the serial port {port}.",
                         "Add yourself to the port's group (on Debian/Ubuntu: sudo usermod -aG dialout $USER), "
                         "then log out and in again.", port=port)
        self.port = port


class WrongBoard(ToolError):
    code = "wrong_board"

    def __init__(self, port: str, expected: str, found: str, source: str, hint: str = ""):
        super().__init__(f"The board on {port} is not a {expected}: {source} says {found}.",
                         hint or "Check that you chose the right --board and plugged in the right board.",
                         port=port, expected=expected, found=found, source=source)
        self.port, self.expected, self.found, self.source = port, expected, found, source


class BoardNotAnswering(ToolError):
    code = "board_not_answering"

    def __init__(self, port: str, detail: str, hint: str = ""):
        super().__init__(f"The board on {port} does not answer ({detail}).",
                         hint or "Press the board's RESET button and try again. A board in deep sleep or in its "
                                 "bootloader does not answer; without MicroPython on it, flash with --firmware.",
                         port=port, detail=detail)
        self.port, self.detail = port, detail


class CommandFailed(ToolError):
    code = "command_failed"

    def __init__(self, program: str, action: str, returncode: int, output: str):
        tail = "\n".join(output.strip().splitlines()[-6:])
        super().__init__(f"{program} could not {action} (exit status {returncode}):\n{tail}",
                         "Try again; if it fails again, unplug and replug the board.",
                         program=program, action=action, returncode=returncode, output=tail)
        self.program, self.action, self.returncode, self.output = program, action, returncode, tail


class FirmwareError(ToolError):
    code = "firmware_invalid"

    def __init__(self, path: str, reason: str):
        super().__init__(f"The firmware file {path} cannot be used: {reason}.",
                         "Download the MicroPython .bin for ESP32_GENERIC from micropython.org/download.",
                         path=path, reason=reason)
        self.path, self.reason = path, reason


class BuildError(ToolError):
    code = "build_failed"


class ConfigInvalid(ToolError):
    code = "config_invalid"

    def __init__(self, source: str, errors: list[str]):
        super().__init__(f"The node configuration from {source} is not valid: " + "; ".join(errors) + ".",
                         "Fix these settings; nothing was written to the board.", source=source, errors=errors)
        self.source, self.errors = source, errors


class SecretsInvalid(ToolError):
    code = "secrets_invalid"

    def __init__(self, source: str, key: str | None, reason: str):
        what = f"{key}: {reason}" if key else reason
        super().__init__(f"The keys in {source} are not valid ({what}).",
                         "Use the secrets.json that `citynode provision` wrote for this node.",
                         source=source, key=key, reason=reason)
        self.source, self.key, self.reason = source, key, reason


class SheetError(ToolError):
    code = "sheet_invalid"

    def __init__(self, where: str, column: str | None, reason: str):
        super().__init__(f"{where}: {column}: {reason}" if column else f"{where}: {reason}",
                         "Correct the sheet and run the same command again; finished rows are kept.",
                         where=where, column=column, reason=reason)
        self.where, self.column, self.reason = where, column, reason


class OutputConflict(ToolError):
    code = "output_conflict"


class CalibrationError(ToolError):
    code = "calibration_failed"

    def __init__(self, point: str, reason: str, readings: list[float], hint: str = ""):
        shown = ", ".join(f"{r:g}" for r in readings[-10:])
        super().__init__(f"Calibration point '{point}' failed: {reason}" + (f" (last readings: {shown})" if shown
                                                                             else ""),
                         hint or "Keep the sensor still in the same conditions and try again.",
                         point=point, reason=reason, readings=readings)
        self.point, self.reason, self.readings = point, reason, readings
