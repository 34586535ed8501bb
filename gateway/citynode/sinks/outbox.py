"""The durable outbox between the pipeline and the MQTT sink: an SQLite database in WAL mode.

    pipeline -> add(publications)  [one transaction, returns after COMMIT; only then is the input acked]
    sink     -> peek(after=id)      [rows in insertion order]
             -> delete(ids)         [only after the broker's PUBACK for each row]

A row stays until the broker has acknowledged it, so a bridge killed with SIGKILL, a broker outage or a
network cut loses nothing: the next connection sends every row still present, oldest first.

Bounded: at most `max_rows` rows. What happens when full is explicit and never silent (a WARNING log line
and a counter either way):
- "drop_oldest": the oldest rows are deleted to make room (the newest data wins);
- "reject_new": add() raises OutboxFull and the input is not acknowledged, so the network server's broker
  keeps it and back-pressure reaches the source.

Retained state (Publication.retain) is coalesced per topic: a newer retained row for a topic replaces an
older one not yet sent (latest wins), and the latest retained payload of every topic is also kept in a
second table so the sink can re-publish it after a broker lost its retained messages. Readings and alerts
(not retained) are never coalesced or reordered.

Thread-safe: one connection guarded by a lock; the pipeline worker adds while the sink reads and deletes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from citynode.records import Publication

log = logging.getLogger(__name__)

OVERFLOW_POLICIES = ("drop_oldest", "reject_new")
SYNCHRONOUS_MODES = ("full", "normal")
_LOG_EVERY_S = 10.0  # overflow is logged at once, then summarised at most this often

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic       TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    retain      INTEGER NOT NULL,
    qos         INTEGER NOT NULL,
    key         TEXT    NOT NULL,
    enqueued_at REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_retained_topic ON outbox(topic) WHERE retain = 1;
CREATE TABLE IF NOT EXISTS seen (
    key TEXT PRIMARY KEY,
    at  REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retained (
    topic      TEXT PRIMARY KEY,
    payload    BLOB NOT NULL,
    qos        INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
"""


class OutboxError(Exception):
    """The outbox could not store or read rows: disk full, read-only file system, I/O error, ..."""

    def __init__(self, path: str, operation: str, reason: str):
        super().__init__(f"outbox {path}: {operation} failed: {reason}")
        self.path, self.operation, self.reason = path, operation, reason


class OutboxFull(OutboxError):
    """The outbox holds max_rows rows and the overflow policy is "reject_new"."""

    def __init__(self, path: str, depth: int, max_rows: int, adding: int):
        super().__init__(path, "add", f"full ({depth} of {max_rows} rows, {adding} more refused)")
        self.depth, self.max_rows, self.adding = depth, max_rows, adding


@dataclass(frozen=True)
class OutboxRow:
    """One stored publication, with the id the sink deletes it by."""

    id: int
    topic: str
    payload: bytes
    retain: bool
    qos: int
    key: str
    enqueued_at: float  # time.time() at add(); the publish latency runs from here to the PUBACK


@dataclass
class OutboxStats:
    """Counters for the metrics endpoint (totals since the outbox was opened)."""

    added: int = 0
    published: int = 0  # rows deleted after their PUBACK
    coalesced: int = 0  # retained rows replaced by a newer one before they were sent
    deduplicated: int = 0  # publications whose key was already stored (a redelivered input)
    overflow_dropped: int = 0
    overflow_rejected: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # operation -> count
    last_error: str | None = None


def _latest_retained_only(pubs: list[Publication]) -> list[Publication]:
    """`pubs` without the retained publications that a later one for the same topic replaces."""
    last = {p.topic: i for i, p in enumerate(pubs) if p.retain}
    if len(last) == sum(1 for p in pubs if p.retain):
        return pubs
    return [p for i, p in enumerate(pubs) if not p.retain or last[p.topic] == i]


class Outbox:
    """A bounded, durable FIFO of Publications (see the module docstring).

    `max_db_bytes` caps the database file (SQLite's max_page_count): beyond it writes fail like a full disk,
    with OutboxError, so the outbox can never fill the disk the operating system needs."""

    def __init__(self, path: str | Path, *, max_rows: int = 1_000_000, overflow: str = "drop_oldest",
                 synchronous: str = "full", max_db_bytes: int | None = None, seen_window_s: float = 86400.0,
                 clock: Callable[[], float] = time.time) -> None:
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {overflow!r}")
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {synchronous!r}")
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        self.path = str(path)
        self.max_rows = max_rows
        self.overflow = overflow
        self.stats = OutboxStats()
        self.seen_window_s = seen_window_s
        self._last_prune = 0.0
        self._clock = clock
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []
        self._last_overflow_log = 0.0
        self._unlogged_drops = 0
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.executescript(_SCHEMA)
            if max_db_bytes is not None:
                page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
                self._db.execute(f"PRAGMA max_page_count={max(1, max_db_bytes // page_size)}")
            self._depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            self._load_retained_index()
        except (sqlite3.Error, OSError) as exc:
            raise self._error("open", exc) from exc

    # -- writing ---------------------------------------------------------------------------------------

    def _unseen(self, pubs: list[Publication], now: float) -> list[Publication]:
        """`pubs` without readings and alerts whose key was stored before (within seen_window_s): an input
        redelivered after a crash or a reconnect yields the same keys, and must reach the platform once.
        Retained state is exempt (latest wins anyway). Runs inside the caller's transaction."""
        keys = [p.key for p in pubs if not p.retain and p.key]
        if not keys:
            return pubs
        known: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            known.update(r[0] for r in self._db.execute(
                f"SELECT key FROM seen WHERE key IN ({','.join('?' * len(chunk))})", chunk))
        out, fresh = [], set()
        for p in pubs:
            if not p.retain and p.key:
                if p.key in known or p.key in fresh:
                    self.stats.deduplicated += 1
                    continue
                fresh.add(p.key)
            out.append(p)
        self._db.executemany("INSERT OR REPLACE INTO seen(key, at) VALUES (?, ?)", [(k, now) for k in fresh])
        if now - self._last_prune > 60:
            self._db.execute("DELETE FROM seen WHERE at < ?", (now - self.seen_window_s,))
            self._last_prune = now
        return out

    def add(self, publications: Sequence[Publication]) -> None:
        """Stores the publications of one input item in one transaction; returns after COMMIT.

        Raises OutboxFull ("reject_new" and no room) or OutboxError (disk full, read-only, I/O error); in
        both cases nothing of this batch is stored and the caller must not acknowledge its input."""
        self.add_many([publications])

    def add_many(self, batches: Iterable[Sequence[Publication]]) -> None:
        """Stores several items' publications in ONE transaction (group commit when the input has a
        backlog): all of them or none. Each item stays whole and in order, except that a retained
        publication followed by a newer one for the same topic in the same call is left out (latest wins)."""
        given = [p for batch in batches for p in batch]
        if not given:
            return
        pubs = _latest_retained_only(given)
        with self._lock:
            now = self._clock()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    pubs = self._unseen(pubs, now)
                    if not pubs:
                        self._db.execute("COMMIT")
                        return
                    coalesced = self._coalesce(pubs)
                    dropped = self._make_room(len(pubs), coalesced)
                    self._db.executemany(
                        "INSERT INTO outbox(topic, payload, retain, qos, key, enqueued_at) VALUES (?,?,?,?,?,?)",
                        [(p.topic, bytes(p.payload), int(p.retain), p.qos, p.key, now) for p in pubs])
                    last_id = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
                    self._db.executemany(
                        "INSERT INTO retained(topic, payload, qos, updated_at) VALUES (?,?,?,?) ON CONFLICT(topic)"
                        " DO UPDATE SET payload=excluded.payload, qos=excluded.qos, updated_at=excluded.updated_at",
                        [(p.topic, bytes(p.payload), p.qos, now) for p in pubs if p.retain and p.payload])
                    self._db.executemany("DELETE FROM retained WHERE topic = ?",
                                         [(p.topic,) for p in pubs if p.retain and not p.payload])
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    self._load_retained_index()  # the deletes above were rolled back too
                    raise
            except OutboxFull:
                self.stats.overflow_rejected += len(given)
                self._log_overflow(f"outbox full ({self._depth} of {self.max_rows} rows): refused {len(given)} new"
                                   " publication(s); the input stays unacknowledged at its source")
                raise
            except sqlite3.Error as exc:
                raise self._error("add", exc) from exc
            first_id = last_id - len(pubs) + 1  # AUTOINCREMENT ids of one transaction are consecutive
            for offset, p in enumerate(pubs):
                if p.retain:
                    self._remember_retained(p.topic, first_id + offset)
            coalesced += len(given) - len(pubs)
            self._depth += len(given) - coalesced - dropped
            self.stats.added += len(given)
            self.stats.coalesced += coalesced
            if dropped:
                self.stats.overflow_dropped += dropped
                self._unlogged_drops += dropped
                self._log_overflow(f"outbox full ({self.max_rows} rows): dropped the {self._unlogged_drops} oldest"
                                   " publication(s) to make room (overflow = drop_oldest)")
        for listener in list(self._listeners):
            listener()

    def _coalesce(self, pubs: list[Publication]) -> int:
        """Deletes stored, unsent retained rows that a retained publication in `pubs` supersedes."""
        ids = [self._pending_retained[p.topic] for p in pubs if p.retain and p.topic in self._pending_retained]
        if not ids:
            return 0
        return self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids]).rowcount

    def _remember_retained(self, topic: str, row_id: int) -> None:
        old = self._pending_retained.get(topic)
        if old is not None:
            self._retained_ids.pop(old, None)
        self._pending_retained[topic] = row_id
        self._retained_ids[row_id] = topic

    def _forget_retained(self, row_ids: Iterable[int]) -> None:
        for row_id in row_ids:
            topic = self._retained_ids.pop(row_id, None)
            if topic is not None and self._pending_retained.get(topic) == row_id:
                del self._pending_retained[topic]

    def _load_retained_index(self) -> None:
        """The retained rows still waiting, by topic (what a newer retained publication replaces)."""
        self._pending_retained: dict[str, int] = {}
        self._retained_ids: dict[int, str] = {}
        for row_id, topic in self._db.execute("SELECT id, topic FROM outbox WHERE retain = 1 ORDER BY id"):
            self._remember_retained(topic, row_id)

    def _make_room(self, adding: int, coalesced: int) -> int:
        depth = self._depth - coalesced
        excess = depth + adding - self.max_rows
        if excess <= 0:
            return 0
        if self.overflow == "reject_new" or adding > self.max_rows:
            raise OutboxFull(self.path, depth, self.max_rows, adding)
        doomed = [r[0] for r in self._db.execute("SELECT id FROM outbox ORDER BY id LIMIT ?", (excess,))]
        removed = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in doomed]).rowcount
        self._forget_retained(doomed)
        return removed

    def _log_overflow(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_overflow_log >= _LOG_EVERY_S or self._last_overflow_log == 0.0:
            log.warning(message, extra={"outbox_depth": self._depth, "outbox_max_rows": self.max_rows})
            self._last_overflow_log = now
            self._unlogged_drops = 0

    # -- reading and acknowledging ------------------------------------------------------------------

    def peek(self, after: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Up to `limit` rows with id > after, oldest first."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT id, topic, payload, retain, qos, key, enqueued_at FROM outbox"
                                        " WHERE id > ? ORDER BY id LIMIT ?", (after, limit)).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc
        return [OutboxRow(r[0], r[1], bytes(r[2]), bool(r[3]), r[4], r[5], r[6]) for r in rows]

    def delete(self, ids: Iterable[int]) -> int:
        """Deletes acknowledged rows (one transaction); ids already gone (coalesced, dropped) are ignored.
        Returns how many rows were deleted."""
        id_list = list(ids)
        if not id_list:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    n = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in id_list]).rowcount
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.Error as exc:
                raise self._error("delete", exc) from exc
            self._forget_retained(id_list)
            self._depth -= n
            self.stats.published += n
            return n

    def retained_after(self, topic: str = "", limit: int = 100) -> list[tuple[str, bytes, int]]:
        """The latest retained (topic, payload, qos) per topic, for topics sorting after `topic`, in order;
        the sink pages through them to re-publish retained state after a broker restart. Topics with a
        retained row still waiting in the outbox are left out: that row carries the same latest payload."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT topic, payload, qos FROM retained r WHERE topic > ? AND NOT EXISTS"
                    " (SELECT 1 FROM outbox o WHERE o.retain = 1 AND o.topic = r.topic) ORDER BY topic LIMIT ?",
                    (topic, limit)).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc
        return [(r[0], bytes(r[1]), r[2]) for r in rows]

    def retained_count(self) -> int:
        """How many topics retained_after() would page through."""
        with self._lock:
            try:
                return self._db.execute("SELECT COUNT(*) FROM retained r WHERE NOT EXISTS (SELECT 1 FROM outbox o"
                                        " WHERE o.retain = 1 AND o.topic = r.topic)").fetchone()[0]
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc

    # -- housekeeping ------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Rows waiting for a PUBACK (exact; kept in memory, no query)."""
        return self._depth

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (in the adding thread, after COMMIT) whenever rows were added: the sink's wake-up."""
        self._listeners.append(callback)

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("outbox %s: checkpoint at close failed: %s", self.path, exc)
            self._db.close()

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:  # no transaction left to roll back (SQLite already did, e.g. on SQLITE_FULL)
            pass

    def _error(self, operation: str, exc: BaseException) -> OutboxError:
        reason = str(exc)
        name = getattr(exc, "sqlite_errorname", None)
        if name:
            reason = f"{reason} ({name})"
        self.stats.errors[operation] = self.stats.errors.get(operation, 0) + 1
        self.stats.last_error = f"{operation}: {reason}"
        log.error("outbox %s: %s failed: %s", self.path, operation, reason,
                  extra={"outbox_operation": operation})
        return OutboxError(self.path, operation, reason)
