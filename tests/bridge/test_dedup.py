"""Dedup on (DevEUI, frame counter): copies dropped, counter resets and redeliveries never lost."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from redis_server import RedisServer, redis_binary

from citynode.core.dedup import COUNTER_RESET, DUPLICATE, NEW, REDELIVERY, Deduplicator, RedisDeduplicator
from citynode.records import RxInfo, Uplink

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)


def uplink(fcnt=5, payload=b"\x10\x07\x54\x1b\x40", *, source="chirpstack", source_id=None, rssi=-80.0,
           dev="ac1f09fffe000001", fport=1) -> Uplink:
    return Uplink(source, dev, fport, payload, T0, fcnt=fcnt, rx=(RxInfo("gw1", rssi, 5.0),), source_id=source_id)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def memory():
    clock = Clock()
    return Deduplicator(600, nofcnt_window_s=60, clock=clock), clock


def test_same_counter_and_payload_from_another_gateway_is_a_duplicate_whatever_its_rf():
    d, _ = memory()
    assert d.check(uplink(rssi=-80)) == NEW
    assert d.check(uplink(rssi=-120)) == DUPLICATE
    assert d.check(uplink(source="tts")) == DUPLICATE  # a second integration


def test_same_counter_with_a_different_payload_is_a_counter_reset_and_never_dropped():
    d, _ = memory()
    assert d.check(uplink(payload=b"\x01")) == NEW
    assert d.check(uplink(payload=b"\x02")) == COUNTER_RESET
    assert d.check(uplink(payload=b"\x02")) == DUPLICATE  # a copy of the new frame
    assert d.counts[COUNTER_RESET] == 1


def test_a_different_fport_with_the_same_bytes_is_not_a_duplicate():
    d, _ = memory()
    assert d.check(uplink(fport=1)) == NEW
    assert d.check(uplink(fport=2)) == COUNTER_RESET


def test_the_same_delivery_again_is_a_redelivery_so_a_crash_before_the_outbox_loses_nothing():
    d, _ = memory()
    assert d.check(uplink(source_id="dedup-1")) == NEW
    assert d.check(uplink(source_id="dedup-1")) == REDELIVERY
    assert d.check(uplink(source_id="dedup-2")) == DUPLICATE


def test_keys_expire_after_the_window():
    d, clock = memory()
    assert d.check(uplink()) == NEW
    clock.t += 599
    assert d.check(uplink()) == DUPLICATE
    clock.t += 2
    assert d.check(uplink()) == NEW


def test_uplinks_without_a_counter_are_keyed_by_payload_within_the_short_window():
    d, clock = memory()
    assert d.check(uplink(fcnt=None)) == NEW
    assert d.check(uplink(fcnt=None)) == DUPLICATE
    assert d.check(uplink(fcnt=None, payload=b"\x99")) == NEW
    clock.t += 61
    assert d.check(uplink(fcnt=None)) == NEW


def test_memory_store_is_bounded():
    d = Deduplicator(600, max_entries=100, clock=Clock())
    for i in range(1000):
        d.check(uplink(fcnt=i))
    assert len(d) <= 101


def test_different_devices_never_collide():
    d, _ = memory()
    assert d.check(uplink(dev="ac1f09fffe000001")) == NEW
    assert d.check(uplink(dev="ac1f09fffe000002")) == NEW


def test_check_takes_the_pipelines_clock_when_given():
    d = Deduplicator(600, clock=lambda: 0.0)
    assert d.check(uplink(), now=5000.0) == NEW
    assert d.check(uplink(), now=5500.0) == DUPLICATE
    assert d.check(uplink(), now=5601.0) == NEW


# -- Redis -----------------------------------------------------------------------------------------------------

needs_redis = pytest.mark.skipif(redis_binary() is None, reason="redis-server not installed")


@pytest.fixture
def redis_url(tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        yield server.url


@needs_redis
def test_redis_store_gives_the_same_verdicts_as_memory(redis_url):
    d = RedisDeduplicator.from_url(redis_url, window_s=600)
    assert d.check(uplink()) == NEW
    assert d.check(uplink(rssi=-130)) == DUPLICATE
    assert d.check(uplink(payload=b"\x02")) == COUNTER_RESET
    assert d.check(uplink(payload=b"\x02")) == DUPLICATE
    assert d.check(uplink(fcnt=6, source_id="a")) == NEW
    assert d.check(uplink(fcnt=6, source_id="a")) == REDELIVERY
    assert d.check(uplink(fcnt=None)) == NEW
    assert d.check(uplink(fcnt=None)) == DUPLICATE


@needs_redis
def test_two_bridge_processes_share_dedup_through_redis(redis_url):
    first = RedisDeduplicator.from_url(redis_url, window_s=600)
    second = RedisDeduplicator.from_url(redis_url, window_s=600)
    verdicts = [first.check(uplink(fcnt=i)) if i % 2 else second.check(uplink(fcnt=i)) for i in range(20)]
    assert verdicts == [NEW] * 20
    assert [second.check(uplink(fcnt=i)) for i in range(20)] == [DUPLICATE] * 20


@needs_redis
def test_redis_keys_carry_the_window_as_expiry(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    d = RedisDeduplicator(client, window_s=600, prefix="t:")
    d.check(uplink(fcnt=77))
    ttl = client.ttl("t:ac1f09fffe000001:77")
    assert 590 <= ttl <= 600
    stored = client.get("t:ac1f09fffe000001:77").decode()
    assert len(stored.split("|")[0]) == 32  # a payload hash, not the payload


class DeadRedis:
    calls = 0

    def set(self, *args, **kwargs):
        import redis

        self.calls += 1
        raise redis.ConnectionError("Connection refused")

    get = set


def test_unreachable_redis_fails_open_counts_errors_and_backs_off():
    clock = Clock()
    client = DeadRedis()
    d = RedisDeduplicator(client, window_s=600, retry_after_s=5, monotonic=clock)
    assert d.check(uplink()) == NEW
    assert d.check(uplink()) == NEW  # possibly a duplicate, never a loss
    assert d.errors == 2 and client.calls == 1  # the second did not wait for Redis
    clock.t += 6
    assert d.check(uplink()) == NEW and client.calls == 2


def test_redis_from_url_does_not_stall_when_nothing_listens():
    from redis_server import free_port

    d = RedisDeduplicator.from_url(f"redis://127.0.0.1:{free_port()}/0")
    assert d.check(uplink()) == NEW and d.errors == 1


def test_payload_hash_ignores_rf_metadata():
    from citynode.core.dedup import payload_hash

    a = uplink(rssi=-50)
    b = replace(a, rx=(RxInfo("gw9", -120, -10),), received_at=datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert payload_hash(a) == payload_hash(b)
