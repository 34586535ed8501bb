"""The durable outbox: order, atomic commits, survival of SIGKILL, bounded size with an explicit overflow
policy, retained-state coalescing, and clear errors when the disk is full or the database read-only."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from citynode.records import Publication
from citynode.sinks.outbox import Outbox, OutboxError, OutboxFull


def reading(n: int, topic: str = "citynode/soil/tree-1/reading") -> Publication:
    return Publication(topic, f'{{"message_id":"m{n}","vwc_pct":{n}}}'.encode(), retain=False, key=f"m{n}")


def state(value: int, topic: str = "citynode/soil/tree-1/state") -> Publication:
    return Publication(topic, f'{{"vwc_pct":{value}}}'.encode(), retain=True, key=topic)


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def test_rows_come_back_in_the_order_they_were_added_with_every_field(outbox):
    outbox.add([reading(1), reading(2)])
    outbox.add([Publication("citynode/alerts/soil/tree-1/dry", b"{}", retain=False, qos=2, key="a1")])
    rows = outbox.peek()
    assert [r.key for r in rows] == ["m1", "m2", "a1"]
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert rows[0].topic == "citynode/soil/tree-1/reading" and rows[0].payload == reading(1).payload
    assert rows[2].qos == 2 and rows[2].retain is False
    assert outbox.depth == 3


def test_peek_pages_after_a_row_id(outbox):
    outbox.add([reading(n) for n in range(10)])
    first = outbox.peek(limit=4)
    rest = outbox.peek(after=first[-1].id, limit=100)
    assert [r.key for r in first + rest] == [f"m{n}" for n in range(10)]


def test_delete_removes_only_acknowledged_rows_and_ignores_unknown_ids(outbox):
    outbox.add([reading(n) for n in range(5)])
    rows = outbox.peek()
    assert outbox.delete([rows[1].id, rows[3].id, 999_999]) == 2
    assert [r.key for r in outbox.peek()] == ["m0", "m2", "m4"]
    assert outbox.depth == 3 and outbox.stats.published == 2


def test_rows_survive_a_reopen(tmp_path):
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    box.add([reading(1), reading(2)])
    box.close()
    again = Outbox(path)
    assert [r.key for r in again.peek()] == ["m1", "m2"] and again.depth == 2
    again.close()


def test_a_committed_add_survives_sigkill_of_the_process(tmp_path):
    path = tmp_path / "outbox.sqlite"
    script = textwrap.dedent(f"""
        import os, signal
        from citynode.records import Publication
        from citynode.sinks.outbox import Outbox
        box = Outbox({str(path)!r})
        for n in range(50):
            box.add([Publication("citynode/soil/x/reading", b"%d" % n, key="k%d" % n)])
        print("committed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and "committed" in proc.stdout, proc.stderr
    box = Outbox(path)
    assert [r.key for r in box.peek(limit=1000)] == [f"k{n}" for n in range(50)]
    box.close()


def test_add_many_stores_several_items_in_one_transaction_in_order(outbox):
    outbox.add_many([[reading(1), reading(2)], [reading(3)], []])
    assert [r.key for r in outbox.peek()] == ["m1", "m2", "m3"]


def test_a_newer_retained_state_replaces_the_unsent_older_one_but_readings_are_never_merged(outbox):
    outbox.add([state(1), reading(1)])
    outbox.add([state(2), Publication(reading(1).topic, reading(1).payload, key="m1-b")])  # same values, new id
    rows = outbox.peek()
    assert [(r.retain, r.payload) for r in rows] == [(False, reading(1).payload), (True, b'{"vwc_pct":2}'),
                                                     (False, reading(1).payload)]
    assert outbox.stats.coalesced == 1 and outbox.depth == 3


def test_the_latest_retained_payload_of_every_topic_is_kept_after_it_was_sent(outbox):
    outbox.add([state(1, "citynode/soil/a/state"), state(1, "citynode/soil/b/availability")])
    outbox.add([state(7, "citynode/soil/a/state")])
    outbox.delete([r.id for r in outbox.peek()])
    assert outbox.depth == 0
    assert outbox.retained_after() == [("citynode/soil/a/state", b'{"vwc_pct":7}', 1),
                                       ("citynode/soil/b/availability", b'{"vwc_pct":1}', 1)]
    assert outbox.retained_after("citynode/soil/a/state") == [("citynode/soil/b/availability", b'{"vwc_pct":1}', 1)]
    outbox.add([Publication("citynode/soil/a/state", b"", retain=True, key="citynode/soil/a/state")])
    assert [t for t, _, _ in outbox.retained_after()] == ["citynode/soil/b/availability"]


def test_retained_topics_with_a_row_still_waiting_are_not_listed_for_republishing(outbox):
    outbox.add([state(1, "citynode/soil/a/state"), state(1, "citynode/soil/b/state")])
    outbox.delete([outbox.peek()[0].id])  # a was sent; b still waits and will carry the latest value itself
    assert [t for t, _, _ in outbox.retained_after()] == ["citynode/soil/a/state"]
    assert outbox.retained_count() == 1


def test_drop_oldest_deletes_the_oldest_rows_counts_them_and_logs_a_warning(tmp_path, caplog):
    box = Outbox(tmp_path / "o.sqlite", max_rows=3, overflow="drop_oldest")
    with caplog.at_level(logging.WARNING, logger="citynode.sinks.outbox"):
        for n in range(5):
            box.add([reading(n)])
    assert [r.key for r in box.peek()] == ["m2", "m3", "m4"]
    assert box.depth == 3 and box.stats.overflow_dropped == 2
    assert any("dropped" in r.getMessage() and "drop_oldest" in r.getMessage() for r in caplog.records)
    box.close()


def test_reject_new_refuses_the_whole_item_counts_it_and_logs_a_warning(tmp_path, caplog):
    box = Outbox(tmp_path / "o.sqlite", max_rows=3, overflow="reject_new")
    box.add([reading(1), reading(2)])
    with caplog.at_level(logging.WARNING, logger="citynode.sinks.outbox"), pytest.raises(OutboxFull) as err:
        box.add([reading(3), reading(4)])
    assert err.value.depth == 2 and err.value.max_rows == 3 and err.value.adding == 2
    assert [r.key for r in box.peek()] == ["m1", "m2"]  # nothing of the refused item was stored
    assert box.stats.overflow_rejected == 2
    assert any("refused" in r.getMessage() for r in caplog.records)
    box.close()


def test_a_full_disk_raises_outbox_error_stores_nothing_of_the_item_and_logs_it(tmp_path, caplog):
    box = Outbox(tmp_path / "o.sqlite", max_db_bytes=64 * 1024)
    big = b"x" * 4000
    with caplog.at_level(logging.ERROR, logger="citynode.sinks.outbox"), pytest.raises(OutboxError) as err:
        for n in range(1000):
            box.add([Publication("citynode/soil/a/reading", big, key=f"k{n}a"),
                     Publication("citynode/soil/a/reading", big, key=f"k{n}b")])
    assert err.value.operation == "add" and "full" in err.value.reason
    keys = [r.key for r in box.peek(limit=10_000)]
    assert len(keys) % 2 == 0 and box.depth == len(keys)  # whole items only
    assert box.stats.errors == {"add": 1} and "full" in box.stats.last_error
    assert any("add failed" in r.getMessage() for r in caplog.records)
    box.delete([box.peek()[0].id])  # room again: it recovers
    box.add([reading(1)])
    box.close()


def test_a_read_only_database_raises_outbox_error_naming_the_operation(outbox):
    outbox.add([reading(1)])
    outbox._db.execute("PRAGMA query_only = ON")  # what SQLite reports for a read-only file
    with pytest.raises(OutboxError) as err:
        outbox.add([reading(2)])
    assert err.value.operation == "add" and "readonly" in err.value.reason.replace("-", "").replace(" ", "")
    with pytest.raises(OutboxError):
        outbox.delete([outbox.peek()[0].id])
    assert outbox.depth == 1


def test_an_unopenable_path_raises_outbox_error(tmp_path):
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(OutboxError) as err:
        Outbox(tmp_path / "dir.sqlite")
    assert err.value.operation == "open"


def test_listeners_are_told_after_each_commit(outbox):
    calls = []
    outbox.add_listener(lambda: calls.append(outbox.depth))
    outbox.add([reading(1)])
    outbox.add([reading(2), reading(3)])
    assert calls == [1, 3]


def test_concurrent_adds_and_deletes_keep_the_depth_exact(outbox):
    def adder(prefix: str) -> None:
        for n in range(200):
            outbox.add([Publication("citynode/soil/a/reading", b"x", key=f"{prefix}{n}")])

    deleted = 0
    threads = [threading.Thread(target=adder, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) or outbox.depth:
        rows = outbox.peek(limit=50)
        deleted += outbox.delete([r.id for r in rows])
    for t in threads:
        t.join()
    assert deleted == 600 and outbox.depth == 0
    assert outbox._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        Outbox(":memory:", overflow="drop_newest")
    with pytest.raises(ValueError):
        Outbox(":memory:", max_rows=0)


def test_the_database_uses_wal_with_full_sync_by_default(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    box.close()


def test_within_one_call_only_the_latest_retained_state_per_topic_is_stored_in_its_place(outbox):
    outbox.add_many([[reading(1), state(1)], [reading(2), state(2)], [reading(3), state(3, "citynode/soil/x/state")]])
    rows = outbox.peek()
    assert [(r.key, r.payload) for r in rows] == [
        ("m1", reading(1).payload), ("m2", reading(2).payload), ("citynode/soil/tree-1/state", b'{"vwc_pct":2}'),
        ("m3", reading(3).payload), ("citynode/soil/x/state", b'{"vwc_pct":3}')]
    assert outbox.stats.coalesced == 1 and outbox.depth == 5


def test_coalescing_still_works_after_a_reopen(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    box.add([state(1)])
    box.close()
    box = Outbox(tmp_path / "o.sqlite")
    box.add([state(2)])
    assert [r.payload for r in box.peek()] == [b'{"vwc_pct":2}'] and box.depth == 1
    box.close()


def test_a_sent_retained_row_is_not_touched_by_a_newer_one(outbox):
    outbox.add([state(1)])
    outbox.delete([outbox.peek()[0].id])  # published and acknowledged
    outbox.add([state(2)])
    assert [r.payload for r in outbox.peek()] == [b'{"vwc_pct":2}'] and outbox.stats.coalesced == 0


def test_a_redelivered_reading_is_stored_once_even_after_it_was_published(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite")
    box.add([reading(1), state(1)])
    box.delete([r.id for r in box.peek()])  # published and acknowledged
    box.close()
    box = Outbox(tmp_path / "outbox.sqlite")  # a restart in between
    box.add([reading(1), reading(2), state(2)])  # the input came again, plus something new
    assert [r.key for r in box.peek()] == ["m2", "citynode/soil/tree-1/state"]
    assert box.stats.deduplicated == 1
    box.close()


def test_a_key_is_accepted_again_once_it_is_older_than_the_seen_window(tmp_path):
    now = [1000.0]
    box = Outbox(tmp_path / "outbox.sqlite", seen_window_s=3600, clock=lambda: now[0])
    box.add([reading(1)])
    box.delete([r.id for r in box.peek()])
    now[0] += 7200
    box.add([reading(9)])  # prunes keys older than the window
    box.add([reading(1)])
    assert [r.key for r in box.peek()] == ["m9", "m1"]
    box.close()
