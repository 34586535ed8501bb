"""Duplicate uplinks: the same frame heard by two gateways, delivered by two integrations, or by two bridge
processes on a shared subscription.

The key is (DevEUI, frame counter) within a window (10 minutes by default):
- same key, same payload (fPort + bytes; radio metadata ignored) -> "duplicate": dropped;
- same key, DIFFERENT payload -> "counter_reset": never dropped (the node rejoined or rebooted and counts
  from 0 again), only counted; copies of that new payload are duplicates in turn;
- the same message again from the same source with the same source id (an MQTT redelivery after the bridge
  lost its connection or crashed before it acknowledged) -> "redelivery": processed again. The pipeline's
  message ids are derived from the uplink, so the repeat carries the same ids and the outbox / platform drop
  it, while nothing is lost if the first attempt never reached the outbox.
Uplinks without a frame counter are keyed by a payload hash within a shorter window.

Two stores with one interface, `check(uplink, now) -> verdict`: Deduplicator (in memory, bounded LRU with a
TTL) and RedisDeduplicator (SET key value NX EX window, so several bridge processes share it). If Redis is
unreachable the verdict is "new" (fail open: a possible duplicate, never a loss) and `errors` counts it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..records import Uplink

log = logging.getLogger(__name__)

NEW = "new"
DUPLICATE = "duplicate"
COUNTER_RESET = "counter_reset"
REDELIVERY = "redelivery"
VERDICTS = (NEW, DUPLICATE, COUNTER_RESET, REDELIVERY)


def payload_hash(uplink: Uplink) -> str:
    return hashlib.sha256(bytes([uplink.fport & 0xFF]) + uplink.payload).hexdigest()[:32]


def delivery_id(uplink: Uplink) -> str:
    """Who delivered it: the source and its own id for the uplink ("" when the source has none)."""
    return f"{uplink.source}:{uplink.source_id}" if uplink.source_id else ""


@dataclass
class _Entry:
    first_hash: str
    delivery: str
    expires: float
    other_hashes: dict[str, tuple[float, str]]  # payloads seen after a counter reset -> (expiry, delivery)


class Deduplicator:
    """In-memory store: at most `max_entries` keys, each kept for `window_s` seconds."""

    def __init__(self, window_s: float = 600.0, *, nofcnt_window_s: float = 60.0, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        if window_s <= 0 or nofcnt_window_s <= 0 or max_entries <= 0:
            raise ValueError("window_s, nofcnt_window_s and max_entries must be positive")
        self.window_s = window_s
        self.nofcnt_window_s = nofcnt_window_s
        self.max_entries = max_entries
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.errors = 0
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self, now: float) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires > now and len(self._entries) <= self.max_entries:
                break
            del self._entries[key]

    def check(self, uplink: Uplink, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        digest = payload_hash(uplink)
        delivery = delivery_id(uplink)
        if uplink.fcnt is None:
            key: tuple = (uplink.dev_eui, "hash", digest)
            window = self.nofcnt_window_s
        else:
            key = (uplink.dev_eui, uplink.fcnt)
            window = self.window_s
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= now:
            del self._entries[key]
            entry = None
        if entry is None:
            self._entries[key] = _Entry(digest, delivery, now + window, {})
            verdict = NEW
        elif entry.first_hash == digest:
            verdict = REDELIVERY if delivery and delivery == entry.delivery else DUPLICATE
        else:
            seen = entry.other_hashes.get(digest)
            if seen is not None and seen[0] > now:
                verdict = REDELIVERY if delivery and delivery == seen[1] else DUPLICATE
            else:
                entry.other_hashes[digest] = (now + window, delivery)
                if len(entry.other_hashes) > 16:
                    entry.other_hashes.pop(next(iter(entry.other_hashes)))
                verdict = COUNTER_RESET
        self._entries.move_to_end(key)
        self._expire(now)
        self.counts[verdict] += 1
        return verdict


class RedisDeduplicator:
    """Shared store in Redis: `SET <prefix><deveui>:<fcnt> <hash>|<delivery> NX EX <window>`; a counter reset
    stores its payload under `<prefix><deveui>:<fcnt>:<hash>` the same way."""

    def __init__(self, client, window_s: float = 600.0, *, nofcnt_window_s: float = 60.0,
                 prefix: str = "citynode:dedup:", retry_after_s: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic):
        if window_s <= 0 or nofcnt_window_s <= 0:
            raise ValueError("window_s and nofcnt_window_s must be positive")
        self.client = client
        self.window_s = window_s
        self.nofcnt_window_s = nofcnt_window_s
        self.prefix = prefix
        self.counts: Counter[str] = Counter()
        self.errors = 0
        self.retry_after_s = retry_after_s  # after a failure, pass uplinks through this long without asking
        self._monotonic = monotonic
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, **kwargs) -> RedisDeduplicator:
        """A client with short timeouts and one quick retry: a dead Redis must not stall the pipeline."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                      retry=Retry(NoBackoff(), 1))
        return cls(client, **kwargs)

    def _check(self, uplink: Uplink) -> str:
        digest = payload_hash(uplink)
        delivery = delivery_id(uplink)
        if uplink.fcnt is None:
            ok = self.client.set(f"{self.prefix}{uplink.dev_eui}:h:{digest}", delivery, nx=True,
                                 ex=max(1, int(self.nofcnt_window_s)))
            if ok:
                return NEW
            stored = self.client.get(f"{self.prefix}{uplink.dev_eui}:h:{digest}")
            stored = stored.decode() if isinstance(stored, bytes) else (stored or "")
            return REDELIVERY if delivery and stored == delivery else DUPLICATE
        ex = max(1, int(self.window_s))
        key = f"{self.prefix}{uplink.dev_eui}:{uplink.fcnt}"
        if self.client.set(key, f"{digest}|{delivery}", nx=True, ex=ex):
            return NEW
        stored = self.client.get(key)
        if stored is None:  # expired between SET and GET: take it now
            return NEW if self.client.set(key, f"{digest}|{delivery}", nx=True, ex=ex) else DUPLICATE
        stored_hash, _, stored_delivery = (stored.decode() if isinstance(stored, bytes) else stored).partition("|")
        if stored_hash == digest:
            return REDELIVERY if delivery and stored_delivery == delivery else DUPLICATE
        if self.client.set(f"{key}:{digest}", delivery, nx=True, ex=ex):
            return COUNTER_RESET
        stored = self.client.get(f"{key}:{digest}")
        stored = stored.decode() if isinstance(stored, bytes) else (stored or "")
        return REDELIVERY if delivery and stored == delivery else DUPLICATE

    def check(self, uplink: Uplink, now: float | None = None) -> str:
        if self._monotonic() < self._down_until:
            self.errors += 1
            self.counts[NEW] += 1
            return NEW
        try:
            verdict = self._check(uplink)
        except Exception as e:  # noqa: BLE001 - any Redis/connection failure: fail open, never lose the uplink
            self._down_until = self._monotonic() + self.retry_after_s
            self.errors += 1
            if self.errors == 1 or self.errors % 100 == 0:
                log.warning("dedup store unreachable (%s errors so far): %s; passing uplinks through",
                            self.errors, e)
            verdict = NEW
        self.counts[verdict] += 1
        return verdict
