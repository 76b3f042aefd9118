"""PodDisruptionBudget arithmetic: scaled int-or-percent, desired healthy, disruptions allowed,
the DisruptionAllowed condition, the controller's healthy count and disruptedPods expiry, and the
eviction subresource's decrement."""

from __future__ import annotations

from typing import Any

import pytest

from apimachinery import disruption, errors
from apimachinery.timefmt import rfc3339
from apiserver import eviction
from controllers.disruption import healthy_and_disrupted, new_status

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0


def pod(name: str, ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = rfc3339(NOW)
    return {
        "metadata": meta,
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


@pytest.mark.parametrize(
    ("value", "total", "up", "want"),
    [
        (3, 10, True, 3),
        ("50%", 3, True, 2),
        ("50%", 3, False, 1),
        ("30%", 4, True, 2),
        ("0%", 7, True, 0),
        ("100%", 7, True, 7),
    ],
)
def test_scaled_value_rounds_percentages(value: Any, total: int, up: bool, want: int) -> None:
    assert disruption.scaled_value(value, total, up) == want


@pytest.mark.parametrize("value", ["5", "x%", True, None, 1.5])
def test_scaled_value_rejects_what_is_not_int_or_percent(value: Any) -> None:
    with pytest.raises(ValueError):
        disruption.scaled_value(value, 10)


def test_desired_healthy_and_where_the_expected_count_comes_from() -> None:
    assert disruption.desired_healthy({"minAvailable": 2}, 5) == 2
    assert not disruption.uses_scale({"minAvailable": 2})
    assert disruption.uses_scale({"minAvailable": "50%"})
    assert disruption.desired_healthy({"minAvailable": "50%"}, 5) == 3
    assert disruption.uses_scale({"maxUnavailable": 1})
    assert disruption.desired_healthy({"maxUnavailable": 1}, 5) == 4
    assert disruption.desired_healthy({"maxUnavailable": "30%"}, 4) == 2  # ceil(1.2) = 2 unavailable
    assert disruption.desired_healthy({"maxUnavailable": 9}, 4) == 0
    assert disruption.desired_healthy({}, 4) == 0


@pytest.mark.parametrize(
    ("healthy", "desired", "expected", "want"), [(3, 2, 3, 1), (2, 2, 3, 0), (1, 2, 3, 0), (3, 0, 0, 0)]
)
def test_disruptions_allowed(healthy: int, desired: int, expected: int, want: int) -> None:
    assert disruption.disruptions_allowed(healthy, desired, expected) == want


def test_condition_keeps_transition_time_while_status_is_unchanged() -> None:
    status: dict[str, Any] = {"disruptionsAllowed": 1, "observedGeneration": 3}
    disruption.set_disruption_allowed_condition(status, NOW)
    cond = status["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"], cond["observedGeneration"]) == (
        "DisruptionAllowed",
        "True",
        "SufficientPods",
        3,
    )
    status["disruptionsAllowed"] = 2
    disruption.set_disruption_allowed_condition(status, NOW + 60)
    assert status["conditions"][0]["lastTransitionTime"] == rfc3339(NOW)
    status["disruptionsAllowed"] = 0
    disruption.set_disruption_allowed_condition(status, NOW + 120)
    assert len(status["conditions"]) == 1
    assert (status["conditions"][0]["reason"], status["conditions"][0]["lastTransitionTime"]) == (
        "InsufficientPods",
        rfc3339(NOW + 120),
    )
    disruption.set_disruption_allowed_condition(status, NOW + 180, disruption.SYNC_FAILED, "boom")
    assert (
        status["conditions"][0]["status"],
        status["conditions"][0]["reason"],
        status["conditions"][0]["message"],
    ) == (
        "False",
        "SyncFailed",
        "boom",
    )


def test_healthy_count_skips_deleting_unready_and_recently_evicted_pods() -> None:
    pdb = {
        "metadata": {"name": "b", "generation": 2},
        "status": {
            "disruptedPods": {"fresh": rfc3339(NOW - 30), "stale": rfc3339(NOW - 300), "gone": rfc3339(NOW)}
        },
    }
    pods = [pod("a"), pod("fresh"), pod("stale"), pod("sick", ready=False), pod("bye", deleting=True)]
    healthy, kept, recheck, expired = healthy_and_disrupted(pdb, pods, NOW)
    assert healthy == 2  # a and stale
    assert kept == {"fresh": rfc3339(NOW - 30)}
    assert recheck == NOW - 30 + disruption.DELETION_TIMEOUT
    assert [p["metadata"]["name"] for p in expired] == ["stale"]
    status = new_status(pdb, healthy, 2, 4, kept, NOW)
    assert {
        k: status[k] for k in ("currentHealthy", "desiredHealthy", "expectedPods", "disruptionsAllowed")
    } == {
        "currentHealthy": 2,
        "desiredHealthy": 2,
        "expectedPods": 4,
        "disruptionsAllowed": 0,
    }
    assert status["observedGeneration"] == 2
    assert status["disruptedPods"] == kept


def budget(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "generation": 1, "resourceVersion": "5"},
        "spec": {},
        "status": status,
    }


def test_decrement_spends_one_disruption_and_records_the_pod() -> None:
    new = eviction.decrement(
        budget(observedGeneration=1, disruptionsAllowed=1, desiredHealthy=2, currentHealthy=3), "p", NOW
    )
    assert new["status"]["disruptionsAllowed"] == 0
    assert new["status"]["disruptedPods"] == {"p": rfc3339(NOW)}
    assert new["status"]["conditions"][0]["reason"] == "InsufficientPods"
    assert new["metadata"]["resourceVersion"] == "5"  # the write is a compare-and-swap


def test_decrement_refuses_with_kubernetes_429s() -> None:
    with pytest.raises(errors.TooManyRequests) as exc:
        eviction.decrement(
            budget(observedGeneration=1, disruptionsAllowed=0, desiredHealthy=2, currentHealthy=2), "p", NOW
        )
    assert exc.value.status()["details"] == {
        "causes": [
            {
                "reason": "DisruptionBudget",
                "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
            }
        ]
    }
    with pytest.raises(errors.TooManyRequests) as exc:
        eviction.decrement(budget(observedGeneration=0, disruptionsAllowed=5), "p", NOW)
    assert (
        exc.value.causes[0]["message"] == "The disruption budget web is still being processed by the server."
    )
    with pytest.raises(errors.Forbidden):
        eviction.decrement(budget(observedGeneration=1, disruptionsAllowed=-1), "p", NOW)


def test_matching_budgets_and_pdb_free_phases() -> None:
    p = pod("a")
    budgets = [
        {"metadata": {"name": "all"}, "spec": {"selector": {}}},
        {"metadata": {"name": "none"}, "spec": {}},
        {"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}},
        {"metadata": {"name": "db"}, "spec": {"selector": {"matchLabels": {"app": "db"}}}},
        {
            "metadata": {"name": "bad"},
            "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "?"}]}},
        },
    ]
    assert [b["metadata"]["name"] for b in eviction.matching_budgets(p, budgets)] == ["all", "web"]
    assert not eviction.can_ignore_pdb(p)
    for phase in ("Succeeded", "Failed", "Pending"):
        assert eviction.can_ignore_pdb({"status": {"phase": phase}})
    assert eviction.can_ignore_pdb(pod("x", deleting=True))
    assert eviction.should_enforce_resource_version({"status": {"phase": "Pending"}})
    assert not eviction.should_enforce_resource_version({"status": {"phase": "Failed"}})


def test_check_eviction_body() -> None:
    opts = eviction.check_eviction(
        {
            "apiVersion": "policy/v1beta1",
            "kind": "Eviction",
            "metadata": {"name": "a"},
            "deleteOptions": {"gracePeriodSeconds": 0},
        },
        "ns",
        "a",
        True,
    )
    assert opts == {"gracePeriodSeconds": 0, "dryRun": ["All"]}
    with pytest.raises(errors.BadRequest, match="name in URL does not match name in Eviction object"):
        eviction.check_eviction({"metadata": {"name": "b"}}, "ns", "a", False)
    with pytest.raises(errors.BadRequest):
        eviction.check_eviction({"deleteOptions": {"dryRun": ["Some"]}}, "ns", "a", False)
