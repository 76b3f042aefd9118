"""status.conditions: finding one, and lastTransitionTime changing only with the status."""

from __future__ import annotations

from typing import Any

import pytest

from apimachinery import conditions
from apimachinery.timefmt import rfc3339

pytestmark = pytest.mark.unit

T0, T1 = 1_700_000_000.0, 1_700_000_100.0


def test_find_and_get() -> None:
    ready = {"type": "Ready", "status": "True"}
    status: dict[str, Any] = {"conditions": [{"type": "Other"}, ready]}
    assert conditions.find(status["conditions"], "Ready") is ready
    assert conditions.find(None, "Ready") is None
    got = conditions.get_condition(status, "Ready")
    assert got == ready and got is not ready
    assert conditions.get_condition({}, "Ready") is None


def test_transition_time_is_kept_while_the_status_stays() -> None:
    old = {"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(T0)}
    assert conditions.transition_time(old, "True") == rfc3339(T0)
    assert conditions.transition_time(old, "False") is None
    assert conditions.transition_time(None, "True") is None
    assert conditions.transition_time({"status": "True"}, "True") is None


def test_set_condition() -> None:
    status: dict[str, Any] = {}
    conditions.set_condition(status, conditions.new_condition("Available", "True", "A", "m", T0))
    first = status["conditions"][0]
    # same status and reason: untouched, even with another message
    conditions.set_condition(status, conditions.new_condition("Available", "True", "A", "other", T1))
    assert status["conditions"] == [first]
    # same status, other reason: replaced, the transition time kept
    conditions.set_condition(status, conditions.new_condition("Available", "True", "B", "m", T1))
    assert status["conditions"][0]["reason"] == "B"
    assert status["conditions"][0]["lastTransitionTime"] == rfc3339(T0)
    # another status: the transition time is the new condition's
    conditions.set_condition(status, conditions.new_condition("Available", "False", "B", "m", T1))
    assert status["conditions"][0]["lastTransitionTime"] == rfc3339(T1)
    conditions.set_condition(status, conditions.new_condition("Progressing", "True", "P", "", T1, True))
    assert [c["type"] for c in status["conditions"]] == ["Available", "Progressing"]
    assert status["conditions"][1]["lastUpdateTime"] == rfc3339(T1)
    conditions.remove_condition(status, "Available")
    assert [c["type"] for c in status["conditions"]] == ["Progressing"]
    conditions.remove_condition(status, "Progressing")
    assert "conditions" not in status
