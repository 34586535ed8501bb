"""The bridge application: sources -> one pipeline worker -> durable outbox -> MQTT sink -> the platform.

    bridge = Bridge(load_config("bridge.toml"))
    bridge.start(); ...; bridge.stop()

Threads and hand-offs:
- Each source calls emit(item, ack) from its own thread; emit puts (item, ack) on a bounded queue and blocks
  when it is full, so back-pressure reaches the network server's broker instead of memory growing.
- ONE worker thread owns the pipeline (it is not thread-safe): it takes up to `batch_max` queued items, runs
  pipeline.handle() on each, stores all their publications in one outbox transaction, and only then calls
  each item's ack(). An item whose publications could not be stored (disk full, outbox full with
  "reject_new") is retried with backoff and never acknowledged before it is stored.
- The same worker runs pipeline.tick() every `tick_interval_s` and the platform's commands (which the sink
  receives on `<base>/+/+/set` and only enqueues): pipeline.command() -> its responses are stored -> the
  Downlink goes to the source named in Downlink.via (or the only source).
- The sink thread drains the outbox to the platform broker (citynode.sinks.mqtt).

stop(): sources first (no new input), then the queue is drained through the pipeline into the outbox,
then the sink publishes what it can within `drain_timeout_s` and says "offline". Whatever was acknowledged
to an input is in the outbox; whatever is not in the outbox was not acknowledged.

Scale-out: several processes with the same config, `bridge.shared_group` set and each its own
`instance` (CITYNODE_INSTANCE): ChirpStack input through an MQTT 5 shared subscription, commands through a
shared subscription on the output, duplicate detection shared in Redis (`dedup.redis_url`).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from citynode.config import BridgeConfig, ConfigError
from citynode.core.dedup import DUPLICATE, Deduplicator, RedisDeduplicator
from citynode.core.pipeline import Pipeline
from citynode.metrics import BridgeMetrics, MetricsServer, topic_kind
from citynode.records import Downlink, Publication, Rejected, Uplink
from citynode.registry import Registry
from citynode.sinks.mqtt import MqttSink, MqttSinkSettings
from citynode.sinks.outbox import Outbox, OutboxError, OutboxFull

log = logging.getLogger(__name__)

_STOP = object()
_STORE_RETRY_MAX_S = 5.0


@dataclass(frozen=True)
class _Input:
    item: Uplink | Rejected
    ack: Callable[[], None]


@dataclass(frozen=True)
class _Command:
    kind: str
    device: str
    payload: bytes


@dataclass(frozen=True)
class _DownlinkFailed:
    downlink: Downlink
    error: str


def _version() -> str:
    from citynode import __version__

    return __version__


class Bridge:
    """Builds every part from the config and runs them (see the module docstring)."""

    def __init__(self, config: BridgeConfig, *, instance: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.instance = instance or config.bridge.instance or ""
        if config.bridge.shared_group and not self.instance:
            raise ConfigError([("bridge.instance", "is required with bridge.shared_group: give each bridge process "
                                                   "its own stable name (CITYNODE_INSTANCE=a, --instance a)")],
                              config.path)
        self.clock = clock
        self.state = "created"
        self.last_error: str | None = None
        self.fatal: str | None = None
        self.metrics = BridgeMetrics()
        self.registry = Registry.load(config.registry_path)
        self.pipeline = Pipeline(self.registry, config.pipeline, self._dedup(), clock)
        o = config.outbox
        self.outbox = Outbox(o.path, max_rows=o.max_rows, overflow=o.overflow, synchronous=o.synchronous,
                             max_db_bytes=int(o.max_db_mb * 1024 * 1024) if o.max_db_mb else None, clock=clock)
        self.metrics.bind_outbox(self.outbox)
        self.sink = MqttSink(self._sink_settings(), self.outbox, on_command=self._on_command, metrics=self.metrics,
                             version=_version(), clock=clock)
        self.sources: dict[str, Any] = {section.kind: self._source(section.kind, section.settings(
            self.instance, config.bridge.shared_group)) for section in config.inputs}
        self.metrics.bind_sources(self.sources)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=config.bridge.queue_size)
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="citynode-pipeline", daemon=True)
        self._worker_done = threading.Event()
        self._store_failing = False
        self._duplicates_seen = 0
        self._source_state: dict[str, str] = {}
        self._server: MetricsServer | None = None
        if config.metrics.enabled:
            self._server = MetricsServer(self.metrics, self.health, config.metrics.listen, config.metrics.port)

    # -- construction ----------------------------------------------------------------------------------

    def _dedup(self) -> Deduplicator | RedisDeduplicator:
        d = self.config.dedup
        if d.redis_url is None:
            return Deduplicator(d.window_s)
        import redis

        client = redis.Redis.from_url(d.redis_url.reveal(), socket_timeout=2, socket_connect_timeout=2)
        return RedisDeduplicator(client, d.window_s, prefix=d.redis_prefix)

    def _sink_settings(self) -> MqttSinkSettings:
        o = self.config.output
        # Every [output] key the sink also knows goes over as configured, so a key added to both cannot be missed
        # here; only what depends on the bridge instance is set by hand.
        given = {f.name: getattr(o, f.name) for f in fields(MqttSinkSettings) if hasattr(o, f.name)}
        given.update(client_id=f"{o.client_id}-{self.instance}" if self.instance else o.client_id,
                     instance=self.instance or None, command_share_group=self.config.bridge.shared_group or None)
        return MqttSinkSettings(**given)

    def _source(self, kind: str, settings: Any) -> Any:
        if kind == "chirpstack":
            from citynode.sources.chirpstack import ChirpStackSource

            return ChirpStackSource(settings, self._emit)
        if kind == "tts":
            from citynode.sources.tts import TTSSource

            return TTSSource(settings, self._emit)
        from citynode.sources.serial_p2p import SerialP2PSource

        return SerialP2PSource(settings, self._emit, self.registry)

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Output first, then the worker, then the inputs: nothing is received before it can be stored."""
        self.state = "starting"
        if self._server is not None:
            self._server.start()
        self.sink.start()
        self._worker.start()
        for name, source in self.sources.items():
            source.start()
            log.info("input %s started", name)
        self.state = "running"
        log.info("bridge running: inputs %s -> %s:%d under %s/ (outbox %s, %d waiting)",
                 ", ".join(self.sources), self.config.output.host, self.config.output.port,
                 self.config.output.base_topic, self.config.outbox.path, self.outbox.depth)

    def stop(self) -> None:
        """Sources, then the queue (drained into the outbox), then the sink; see the module docstring."""
        if self.state in ("stopping", "stopped"):
            return
        self.state = "stopping"
        log.info("bridge stopping: %d item(s) queued, %d publication(s) in the outbox", self._queue.qsize(),
                 self.outbox.depth)
        for name, source in self.sources.items():
            try:
                source.stop()
            except Exception:  # one failing source must not keep the others (and the drain) from stopping
                log.exception("input %s did not stop cleanly", name)
        drain = self.config.bridge.drain_timeout_s
        deadline = time.monotonic() + max(drain, 1.0) + 5.0
        while self._worker.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.put(_STOP, timeout=0.5)  # behind every queued item: they are drained first
                break
            except queue.Full:
                continue  # the worker is stuck storing (outbox failing); wait for it or the deadline
        if self._worker.is_alive() and not self._worker_done.wait(max(0.0, deadline - time.monotonic())):
            log.error("pipeline worker did not drain within %.0f s; unstored items stay unacknowledged", drain)
        self._stopping.set()  # also ends a worker stuck retrying a failing outbox
        self._worker_done.wait(5.0)
        self.sink.stop(drain)
        left = self.outbox.depth
        self.outbox.close()
        if self._server is not None:
            self._server.stop()
        self.state = "stopped"
        log.info("bridge stopped; %d publication(s) kept in the outbox for the next start", left)

    def wait(self, stop: threading.Event) -> int:
        """Blocks until `stop` is set or a fatal error; returns the exit code (0, or 1 after a fatal error)."""
        while not stop.wait(0.5):
            if self.sink.finished.is_set() and self.sink.fatal:
                self.fatal = self.sink.fatal
            if self.fatal:
                log.error("bridge: fatal: %s", self.fatal)
                return 1
        return 0

    # -- hand-offs from other threads (thin) ---------------------------------------------------------

    def _emit(self, item: Uplink | Rejected, ack: Callable[[], None]) -> None:
        """Called by a source in its thread: blocks while the queue is full (back-pressure)."""
        work = _Input(item, ack)
        while not self._stopping.is_set():
            try:
                self._queue.put(work, timeout=0.5)
                return
            except queue.Full:
                continue
        # Stopping: not queued, so never acknowledged; the network server's broker keeps it.

    def _on_command(self, kind: str, device: str, payload: bytes) -> None:
        """Called by the sink thread for `<base>/<kind>/<device>/set`: never blocks it for long."""
        try:
            self._queue.put(_Command(kind, device, payload), timeout=1.0)
        except queue.Full:
            log.error("command for %s/%s dropped: the input queue is full", kind, device)
            self.metrics.downlinks.labels(outcome="dropped_queue_full").inc()

    # -- the worker ----------------------------------------------------------------------------------

    def _work(self) -> None:
        interval = self.config.bridge.tick_interval_s
        next_tick = time.monotonic() + interval
        try:
            while True:
                try:
                    first = self._queue.get(timeout=max(0.0, next_tick - time.monotonic()))
                except queue.Empty:
                    first = None
                batch, stop = self._take_batch(first)
                if batch:
                    self._process(batch)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + interval
                    self._store([self.pipeline.tick(self.clock())], "tick")
                    self._count_source_reconnects()
                self.metrics.queue_depth.set(self._queue.qsize())
                if stop:
                    return
        except Exception as exc:  # a bug here must stop the bridge (systemd restarts it), not hang it
            log.exception("pipeline worker failed")
            self.fatal = f"pipeline worker failed: {exc}"
        finally:
            self._worker_done.set()

    def _count_source_reconnects(self) -> None:
        """citynode_reconnects_total{client=<source>}: a source seen disconnected, then connected again
        (sampled every tick, so a flap shorter than tick_interval_s is not counted)."""
        for name, source in self.sources.items():
            connected = bool(source.stats.connected)
            before = self._source_state.get(name)
            if connected and before == "lost":
                self.metrics.reconnects.labels(client=name).inc()
            if connected:
                self._source_state[name] = "up"
            elif before == "up":
                self._source_state[name] = "lost"

    def _take_batch(self, first: Any) -> tuple[list[Any], bool]:
        if first is None:
            return [], False
        if first is _STOP:
            return [], True
        batch = [first]
        while len(batch) < self.config.bridge.batch_max:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                break
            if work is _STOP:
                return batch, True
            batch.append(work)
        return batch, False

    def _process(self, batch: list[Any]) -> None:
        groups: list[list[Publication]] = []
        acks: list[Callable[[], None]] = []
        downlinks: list[Downlink] = []
        counts: Counter[tuple[str, str]] = Counter()
        for work in batch:
            if isinstance(work, _Input):
                pubs = self.pipeline.handle(work.item)
                self._count_input(work.item, pubs, counts)
                groups.append(pubs)
                acks.append(work.ack)
            elif isinstance(work, _Command):
                downlink, pubs = self.pipeline.command(work.kind, work.device, work.payload, self.clock())
                groups.append(pubs)
                if downlink is not None:
                    downlinks.append(downlink)
                else:
                    self.metrics.downlinks.labels(outcome="refused").inc()
            elif isinstance(work, _DownlinkFailed):
                groups.append(self.pipeline.command_failed(work.downlink, work.error, self.clock()))
        self._apply_counts(counts)
        if not self._store(groups, "input"):
            return  # stopping with the outbox unusable: not stored, so not acknowledged
        for ack in acks:
            try:
                ack()
            except Exception:  # noqa: BLE001 - a source's ack failing costs a redelivery, not the worker
                log.exception("acknowledging an input item failed")
        for downlink in downlinks:
            self._send_downlink(downlink)

    def _count_input(self, item: Uplink | Rejected, pubs: list[Publication],
                     counts: Counter[tuple[str, str]]) -> None:
        """Tallies one item for the metrics (applied once per batch: labels() is not free)."""
        if isinstance(item, Rejected):
            self.metrics.rejected.labels(source=item.source, reason=item.reason).inc()
        else:
            counts["uplinks", item.source] += 1
        base = self.config.output.base_topic
        for pub in pubs:
            kind = topic_kind(base, pub.topic)
            counts["publications", kind] += 1
            if kind == "deadletter" and isinstance(item, Uplink):
                try:
                    reason = str(json.loads(pub.payload).get("reason", "unknown"))
                except (ValueError, AttributeError):
                    reason = "unknown"
                self.metrics.decode_failures.labels(reason=reason).inc()

    def _apply_counts(self, counts: Counter[tuple[str, str]]) -> None:
        for (what, label), n in counts.items():
            if what == "uplinks":
                self.metrics.uplinks.labels(source=label).inc(n)
            else:
                self.metrics.publications.labels(kind=label).inc(n)
                if label == "reading":
                    self.metrics.readings_out.inc(n)
        duplicates = self.pipeline.stats.get(f"dedup.{DUPLICATE}", 0)
        if duplicates > self._duplicates_seen:
            self.metrics.dedup_hits.inc(duplicates - self._duplicates_seen)
            self._duplicates_seen = duplicates

    def _store(self, groups: list[list[Publication]], what: str) -> bool:
        """Stores the groups (one transaction; item by item when together they do not fit); retries with
        backoff while the outbox fails. False only when stopping with the outbox still unusable."""
        groups = [g for g in groups if g]
        if not groups:
            return True
        delay = 0.1
        while True:
            try:
                self.outbox.add_many(groups)
                if self._store_failing:
                    log.warning("outbox writable again; storing resumed")
                self._store_failing = False
                return True
            except OutboxFull as exc:
                if len(groups) > 1 and exc.adding > self.outbox.max_rows:
                    return all(self._store([g], what) for g in groups)
                self._note_store_failure(exc, what)
            except OutboxError as exc:
                self._note_store_failure(exc, what)
            if self._stopping.wait(delay):
                return False
            delay = min(_STORE_RETRY_MAX_S, delay * 2)

    def _note_store_failure(self, exc: OutboxError, what: str) -> None:
        if not self._store_failing:
            log.error("cannot store %s publications (%s); input is not acknowledged and will be retried", what, exc)
        self._store_failing = True
        self.last_error = str(exc)

    def _send_downlink(self, downlink: Downlink) -> None:
        via = downlink.via if downlink.via in self.sources else None
        if via is None and len(self.sources) == 1:
            via = next(iter(self.sources))
        if via is None:
            self._downlink_failed(downlink, f"no input to send it through (via {downlink.via!r})")
            return
        try:
            result = self.sources[via].send_downlink(downlink)
        except Exception as exc:  # noqa: BLE001 - DownlinkError or a source bug: the platform is told either way
            self._downlink_failed(downlink, str(exc))
            return
        if hasattr(result, "add_done_callback"):  # the serial source answers with a Future
            result.add_done_callback(lambda future: self._downlink_done(downlink, future))
        self.metrics.downlinks.labels(outcome="sent").inc()
        log.info("downlink for %s (fPort %d, %d bytes) handed to %s", downlink.dev_eui, downlink.fport,
                 len(downlink.payload), via)

    def _downlink_done(self, downlink: Downlink, future: Any) -> None:
        """A serial downlink finished (in the source's thread): a failure goes back to the worker."""
        error = "cancelled" if future.cancelled() else future.exception()
        if error is None:
            return
        try:
            self._queue.put_nowait(_DownlinkFailed(downlink, str(error)))
        except queue.Full:
            log.error("downlink to %s failed (%s) and the queue is full", downlink.dev_eui, error)

    def _downlink_failed(self, downlink: Downlink, error: str) -> None:
        log.warning("downlink for %s failed: %s", downlink.dev_eui, error)
        self.metrics.downlinks.labels(outcome="failed").inc()
        self._store([self.pipeline.command_failed(downlink, error, self.clock())], "command response")

    # -- health --------------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details) for /health: running, output connected, every input connected, storing works."""
        sources = {name: {"connected": bool(s.stats.connected), "received": s.stats.received}
                   for name, s in self.sources.items()}
        output = {"connected": self.sink.connected, "inflight": self.sink.inflight,
                  "last_error": self.sink.last_error}
        outbox = {"depth": self.outbox.depth, "max_rows": self.outbox.max_rows,
                  "overflow_dropped": self.outbox.stats.overflow_dropped, "storing": not self._store_failing}
        healthy = (self.state == "running" and self.sink.connected and all(s["connected"] for s in sources.values())
                   and not self._store_failing and not self.fatal)
        return healthy, {"state": self.state, "instance": self.instance or None, "sources": sources,
                         "output": output, "outbox": outbox, "queue": self._queue.qsize(),
                         "last_error": self.fatal or self.last_error or self.sink.last_error
                         or self.outbox.stats.last_error}
