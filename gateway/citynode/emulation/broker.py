"""A private MQTT broker for simulations and demos: Mosquitto when installed, else amqtt (pure Python).

    broker = start_broker(workdir)          # a free loopback port, its own process
    broker.host, broker.port, broker.kind   # "mosquitto" or "amqtt"
    broker.restart(); broker.stop()

Either way the broker is a child process, so restart() is a real restart: connections drop, and what a
QoS 0 publisher sends meanwhile is gone, as with a production broker going down.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .rak3172 import EmulatorError


class BrokerError(EmulatorError):
    """The broker could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str | None:
    """$CITYNODE_MOSQUITTO, `mosquitto` on PATH or /usr/sbin/mosquitto; None when there is none."""
    for candidate in (os.environ.get("CITYNODE_MOSQUITTO"), shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class Broker:
    """One broker process on 127.0.0.1:<port>."""

    def __init__(self, workdir: str | Path | None = None, *, kind: str | None = None, port: int | None = None):
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="citynode-broker-")
        self.dir = Path(workdir if workdir is not None else self._tmp.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        binary = mosquitto_binary()
        self.kind = kind or ("mosquitto" if binary else "amqtt")
        if self.kind == "mosquitto":
            if binary is None:
                raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
            conf = self.dir / "mosquitto.conf"
            # Started as root, mosquitto would switch to the `mosquitto` user and lose this folder.
            conf.write_text("\n".join([f"user {getpass.getuser()}", f"listener {self.port} {self.host}",
                                       "allow_anonymous true", "max_queued_messages 1000000",
                                       f"log_dest file {self.dir / 'mosquitto.log'}", "log_type error",
                                       "log_type warning", "log_type notice"]) + "\n")
            self.argv = [binary, "-c", str(conf)]
        elif self.kind == "amqtt":
            self.argv = [sys.executable, "-m", "citynode.emulation.broker", "--amqtt", str(self.port)]
        else:
            raise BrokerError(f"unknown broker kind {self.kind!r} (mosquitto, amqtt)")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> Broker:
        log = open(self.dir / f"{self.kind}.stderr", "ab")  # noqa: SIM115 - handed to the child process
        try:
            # Its own session: a Ctrl-C in the terminal reaches only the owner, which stops the broker last,
            # after the bridge has drained into it.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                         start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"{self.kind} exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"{self.kind} did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def log(self) -> str:
        parts = []
        for name in ("mosquitto.log", f"{self.kind}.stderr"):
            p = self.dir / name
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def __enter__(self) -> Broker:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_broker(workdir: str | Path | None = None, *, kind: str | None = None) -> Broker:
    """Start a private broker on a free loopback port (Mosquitto if installed, else amqtt)."""
    return Broker(workdir, kind=kind).start()


def _serve_amqtt(port: int) -> None:
    import asyncio

    from amqtt.broker import Broker as AmqttBroker

    async def serve() -> None:
        broker = AmqttBroker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
                              "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                                          {"allow_anonymous": True}}})
        await broker.start()
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":  # the amqtt child process: python -m citynode.emulation.broker --amqtt PORT
    if len(sys.argv) == 3 and sys.argv[1] == "--amqtt":
        _serve_amqtt(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m citynode.emulation.broker --amqtt PORT")
