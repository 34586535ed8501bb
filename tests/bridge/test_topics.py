"""Platform topics: safe whatever a network server calls a device."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citynode.core.topics import TopicError, Topics, check_base, is_safe_topic, sanitise_id

HOSTILE = ["+", "#", "a/b", "tree+1", "bin#2", "", "   ", "/", "//", "$SYS", "Tree 0001", "\x00null", "ünïcødé",
           "../../etc", "a" * 500, "+/#", "-_-", "..", "\u202e\u2066", "a\nb"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_device_names_never_make_wildcards_or_empty_levels(name):
    topics = Topics("citynode")
    for topic in (topics.reading("soil", name), topics.state("fill", name), topics.availability("soil", name),
                  topics.status("fill", name), topics.alert("soil", name, name), topics.set_response("soil", name)):
        assert is_safe_topic(topic), topic
        assert "+" not in topic and "#" not in topic and "//" not in topic and not topic.endswith("/")


@given(st.text(max_size=300), st.text(max_size=50), st.text(max_size=50))
def test_any_text_as_device_kind_or_alert_gives_a_safe_topic_with_fixed_depth(device, kind, alert):
    topics = Topics("city/sensors")
    reading = topics.reading(kind, device)
    assert is_safe_topic(reading)
    assert reading.count("/") == 4  # city/sensors/<kind>/<device>/reading
    alert_topic = topics.alert(kind, device, alert)
    assert is_safe_topic(alert_topic) and alert_topic.count("/") == 5


def test_sanitised_ids_use_only_lowercase_letters_digits_underscore_and_dash():
    assert sanitise_id("Tree 0001/Nord+") == "tree_0001_nord"
    assert sanitise_id("glass-0002") == "glass-0002"
    assert sanitise_id("###", "AC1F09FFFE000001") == "ac1f09fffe000001"
    assert sanitise_id(None) == "unknown"
    assert len(sanitise_id("x" * 200)) == 64


def test_unknown_kinds_are_published_under_unknown():
    assert Topics().reading("glass", "d1") == "citynode/unknown/d1/reading"
    assert Topics().reading("fill", "d1") == "citynode/fill/d1/reading"


@pytest.mark.parametrize("base", ["", "a//b", "city/+", "#", "/citynode", "citynode/", "$SYS/x", "city node"])
def test_unusable_base_topics_are_refused(base):
    with pytest.raises(TopicError):
        check_base(base)


def test_layout_of_every_topic():
    t = Topics("citynode")
    assert t.reading("soil", "tree-1") == "citynode/soil/tree-1/reading"
    assert t.state("soil", "tree-1") == "citynode/soil/tree-1/state"
    assert t.availability("fill", "c-2") == "citynode/fill/c-2/availability"
    assert t.status("fill", "c-2") == "citynode/fill/c-2/status"
    assert t.alert("fill", "c-2", "collection_needed") == "citynode/alerts/fill/c-2/collection_needed"
    assert t.deadletter() == "citynode/deadletter"
    assert t.set("soil", "tree-1") == "citynode/soil/tree-1/set"
    assert t.set_response("soil", "tree-1") == "citynode/soil/tree-1/set/response"
    assert t.set_subscription() == "citynode/+/+/set"


def test_parse_set_returns_kind_and_device_only_for_set_topics():
    t = Topics("city/x")
    assert t.parse_set("city/x/soil/tree-1/set") == ("soil", "tree-1")
    assert t.parse_set("city/x/soil/tree-1/set/response") is None
    assert t.parse_set("citynode/soil/tree-1/set") is None
    assert t.parse_set("city/x/soil//set") is None
