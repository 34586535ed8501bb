"""Run the bridge: uplinks from ChirpStack, The Things Stack or a serial LoRa P2P receiver, decoded and
published to the city's MQTT broker, losing nothing and duplicating nothing.

  citynode bridge --config /etc/citynode/bridge.toml          run until SIGTERM / Ctrl-C
  citynode bridge --config bridge.toml --check                check the config and the device registry
  CITYNODE_INSTANCE=a citynode bridge --config bridge.toml    one of several processes (bridge.shared_group)

The config is TOML (see examples/bridge.toml); passwords and API keys come from the environment
({env = "VAR"}) or files ({file = "/run/secrets/x"}) and are never logged.

Signals: SIGTERM and SIGINT stop cleanly (inputs first, then the queue is drained into the outbox, then the
outbox is published for up to bridge.drain_timeout_s; what is left stays in the outbox for the next start).
SIGHUP re-reads the device registry.

Exit status: 0 after a clean stop or a passing --check; 1 for an invalid config or registry (each problem
on its own line on stderr, naming the key), or after a fatal error (so systemd restarts the bridge).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, help="the bridge's TOML config file")
    p.add_argument("--check", action="store_true", help="check the config and the registry, then exit 0 or 1")
    p.add_argument("--instance", help="this process's name when several share the input (bridge.shared_group); "
                                      "default: $CITYNODE_INSTANCE or bridge.instance")


def run(args: argparse.Namespace) -> int:
    from citynode.config import ConfigError, load_config
    from citynode.registry import Registry, RegistryError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for key, problem in exc.problems:
            print(f"{args.config}: {key}: {problem}", file=sys.stderr)
        return 1
    instance = args.instance or os.environ.get("CITYNODE_INSTANCE") or None
    if args.check:
        for warning in config.warnings:
            print(f"{args.config}: warning: {warning}", file=sys.stderr)
        try:
            registry = Registry.load(config.registry_path)
        except RegistryError as exc:
            print(f"registry: {exc}", file=sys.stderr)
            return 1
        if config.bridge.shared_group and not (instance or config.bridge.instance):
            print(f"{args.config}: bridge.instance: is required with bridge.shared_group (or CITYNODE_INSTANCE)",
                  file=sys.stderr)
            return 1
        print(f"{args.config}: OK: inputs {', '.join(i.kind for i in config.inputs)}; output "
              f"{config.output.host}:{config.output.port} under {config.output.base_topic}/; "
              f"registry {config.registry_path}: {len(registry)} device(s)")
        return 0
    return _serve(config, instance)


def _serve(config, instance: str | None) -> int:
    import logging

    from citynode.bridge import Bridge
    from citynode.config import ConfigError
    from citynode.logs import configure_logging
    from citynode.registry import RegistryError
    from citynode.sinks.outbox import OutboxError

    configure_logging(config.log.level, config.log.format, config.secret_values())
    # Sources, pipeline worker and publisher are threads handing work to each other: a shorter GIL switch
    # interval than CPython's 5 ms keeps a waiting hand-off from queueing behind a busy thread (tail latency).
    sys.setswitchinterval(0.001)
    log = logging.getLogger("citynode.cli.bridge")
    for warning in config.warnings:
        log.warning("config: %s", warning)
    try:
        bridge = Bridge(config, instance=instance)
    except (ConfigError, RegistryError, OutboxError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    def on_hup(signum: int, frame: object) -> None:
        try:
            changed = bridge.registry.reload()
            log.warning("registry re-read: %d device(s)%s", len(bridge.registry), "" if changed else ", unchanged")
        except RegistryError as exc:
            log.error("registry not re-read, keeping the old one: %s", exc)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        bridge.start()
        code = bridge.wait(stop)
    finally:
        bridge.stop()
    return code
