"""Availability: online after any uplink, offline after N expected intervals of silence, reported once."""

from __future__ import annotations

import pytest

from citynode.core.availability import Availability


def test_a_device_is_online_after_its_first_uplink_and_only_then_reported():
    a = Availability(default_interval_s=900, offline_after_intervals=3)
    assert a.heard("d1", None, 0) is True
    assert a.heard("d1", None, 10) is False
    assert a.is_online("d1") is True


def test_offline_after_three_intervals_of_silence_once():
    a = Availability(default_interval_s=900, offline_after_intervals=3)
    a.heard("d1", None, 0)
    assert a.due(2699) == []
    assert [d for d, *_ in a.due(2700)] == ["d1"]
    assert a.due(9999) == []  # reported once
    assert a.heard("d1", None, 10000) is True  # back online


def test_each_device_uses_its_own_expected_interval():
    a = Availability(default_interval_s=900, offline_after_intervals=3)
    a.heard("fast", 60, 0)
    a.heard("slow", 86400, 0)
    assert [d for d, *_ in a.due(200)] == ["fast"]
    assert a.due(3 * 86400 - 1) == []
    assert [d for d, *_ in a.due(3 * 86400)] == ["slow"]


def test_registry_devices_never_heard_go_offline_after_the_timeout_from_start():
    a = Availability(default_interval_s=100, offline_after_intervals=2)
    a.watch("quiet", None, 1000)
    assert a.due(1199) == []
    [(device, last_seen, silence)] = a.due(1200)
    assert device == "quiet" and last_seen is None and silence == 200


def test_silence_is_measured_from_the_last_uplink():
    a = Availability(default_interval_s=100, offline_after_intervals=1)
    a.heard("d", None, 0)
    a.heard("d", None, 90)
    assert a.due(150) == []
    [(_, last_seen, silence)] = a.due(190)
    assert last_seen == 90 and silence == 100


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        Availability(0, 3)
    with pytest.raises(ValueError):
        Availability(100, 0)


def test_memory_is_bounded_under_a_flood_of_devices():
    a = Availability(100, 3, max_devices=1000)
    for i in range(5000):
        a.heard(f"d{i}", None, i)
    assert len(a._devices) <= 1000
