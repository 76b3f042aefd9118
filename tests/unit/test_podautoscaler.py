"""The HPA controller's replica calculator and behavior rules, against Kubernetes' own cases
(``replica_calculator_test.go``, ``horizontal_test.go``)."""

from __future__ import annotations

import pytest

from controllers.podautoscaler import (
    DEFAULT_SCALE_DOWN,
    History,
    MetricsError,
    PodMetric,
    ScaleEvent,
    normalize_with_behavior,
    normalize_without_behavior,
    resource_replicas,
    scale_limit,
)

pytestmark = pytest.mark.unit

NOW = 10_000.0


def ts(t: float) -> str:
    from apimachinery.timefmt import rfc3339

    return rfc3339(t)


def pod(
    name: str, request: str = "1", phase: str = "Running", ready: bool = True, started: float = NOW - 3600
) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": request}}}]},
        "status": {
            "phase": phase,
            "startTime": ts(started),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": ts(started + 10),
                }
            ],
        },
    }


def metrics(**usage: int) -> dict[str, PodMetric]:
    return {name: PodMetric(value, NOW - 5, 15) for name, value in usage.items()}


def test_scale_up_by_the_usage_ratio() -> None:
    # 3 pods at 1 core request using 0.9, 1.0 and 1.1: 100 % against a 50 % target -> 6
    pods = [pod("a"), pod("b"), pod("c")]
    replicas, utilization, average = resource_replicas(
        3, pods, metrics(a=900, b=1000, c=1100), "cpu", NOW, target_utilization=50
    )
    assert (replicas, utilization, average) == (6, 100, 1000)


def test_within_tolerance_keeps_the_count() -> None:
    pods = [pod("a"), pod("b")]
    replicas, utilization, _ = resource_replicas(
        2, pods, metrics(a=520, b=530), "cpu", NOW, target_utilization=50
    )
    assert (replicas, utilization) == (2, 52)  # ratio 1.05: inside the 0.1 tolerance


def test_scale_down() -> None:
    pods = [pod(n) for n in "abcd"]
    replicas, _, _ = resource_replicas(
        4, pods, metrics(a=100, b=100, c=100, d=100), "cpu", NOW, target_utilization=50
    )
    assert replicas == 1  # 10 % of requests against 50 %: ceil(0.2 * 4)


def test_missing_metrics_count_as_the_request_when_scaling_down() -> None:
    # two pods at 10 %, one without metrics taken as using 100 % (max(100, target)): the ratio
    # becomes (10+10+100)/3/50 = 0.8 -> ceil(0.8 * 3) = 3: no scale down
    pods = [pod("a"), pod("b"), pod("c")]
    replicas, _, _ = resource_replicas(3, pods, metrics(a=100, b=100), "cpu", NOW, target_utilization=50)
    assert replicas == 3


def test_missing_metrics_count_as_zero_when_scaling_up() -> None:
    # 2 pods at 100 % of a 50 % target, one missing: taken as 0 -> (100+100+0)/3/50 = 1.33 -> 4
    pods = [pod("a"), pod("b"), pod("c")]
    replicas, _, _ = resource_replicas(3, pods, metrics(a=1000, b=1000), "cpu", NOW, target_utilization=50)
    assert replicas == 4


def test_unready_pods_do_not_push_a_scale_up() -> None:
    # the ready pod is exactly at its 100 % target (ratio 1): the pending pod changes nothing, keep 2
    pods = [pod("a"), pod("b", phase="Pending")]
    replicas, _, _ = resource_replicas(2, pods, metrics(a=1000), "cpu", NOW, target_utilization=100)
    assert replicas == 2


def test_failed_and_deleted_pods_are_ignored() -> None:
    deleted = pod("d")
    deleted["metadata"]["deletionTimestamp"] = ts(NOW)
    pods = [pod("a"), pod("f", phase="Failed"), deleted]
    replicas, _, _ = resource_replicas(3, pods, metrics(a=1000, f=0, d=0), "cpu", NOW, target_utilization=50)
    assert replicas == 2


def test_average_value_targets() -> None:
    pods = [pod("a"), pod("b")]
    # 300m and 500m against an average of 200m: ratio 2 -> 4 replicas
    replicas, utilization, average = resource_replicas(
        2, pods, metrics(a=300, b=500), "cpu", NOW, target_average=200
    )
    assert (replicas, utilization, average) == (4, None, 400)


def test_errors() -> None:
    with pytest.raises(MetricsError, match="no pods returned by selector"):
        resource_replicas(1, [], {}, "cpu", NOW, target_utilization=50)
    with pytest.raises(MetricsError, match="did not receive metrics"):
        resource_replicas(1, [pod("a", phase="Pending")], {}, "cpu", NOW, target_utilization=50)
    no_request = pod("a")
    no_request["spec"]["containers"][0]["resources"] = {}
    with pytest.raises(MetricsError, match="missing request for cpu in container c of Pod a"):
        resource_replicas(1, [no_request], metrics(a=1), "cpu", NOW, target_utilization=50)


def test_scale_up_policies_select_max_min_disabled() -> None:
    h = History()
    rules = {
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    }
    assert scale_limit(True, 10, h, rules, NOW) == 20
    assert scale_limit(True, 1, h, rules, NOW) == 5
    assert scale_limit(True, 10, h, {**rules, "selectPolicy": "Min"}, NOW) == 14
    assert scale_limit(True, 10, h, {**rules, "selectPolicy": "Disabled"}, NOW) == 10
    # 3 replicas added in the period: the period started at 7
    h.scale_up.append(ScaleEvent(NOW - 5, 3))
    assert (
        scale_limit(True, 10, h, {"policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]}, NOW) == 11
    )
    assert (
        scale_limit(True, 10, h, {"policies": [{"type": "Pods", "value": 4, "periodSeconds": 4}]}, NOW) == 14
    )


def test_scale_down_policies() -> None:
    h = History()
    rules = {
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 2, "periodSeconds": 60},
            {"type": "Percent", "value": 10, "periodSeconds": 60},
        ],
    }
    assert scale_limit(False, 10, h, rules, NOW) == 8  # Max: the policy allowing the bigger change
    assert scale_limit(False, 10, h, {**rules, "selectPolicy": "Min"}, NOW) == 9
    assert scale_limit(False, 10, h, DEFAULT_SCALE_DOWN, NOW) == 0


def test_stabilization_window_keeps_the_highest_recent_recommendation() -> None:
    h = History()
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    n, able, limited = normalize_with_behavior(5, 5, 1, 10, behavior, h, NOW - 30)
    assert n == 5
    n, able, limited = normalize_with_behavior(5, 2, 1, 10, behavior, h, NOW)
    assert n == 5 and able[0] == "ScaleDownStabilized"
    assert (
        able[1]
        == "recent recommendations were higher than current one, applying the highest recent recommendation"
    )
    # once the window passed, the lower recommendation is applied
    n, able, limited = normalize_with_behavior(5, 2, 1, 10, behavior, h, NOW + 61)
    assert n == 2 and limited[0] == "DesiredWithinRange"


def test_behavior_limits_and_their_reasons() -> None:
    behavior = {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}
    n, _able, limited = normalize_with_behavior(2, 8, 1, 10, behavior, History(), NOW)
    assert n == 3 and limited == (
        "ScaleUpLimit",
        "the desired replica count is increasing faster than the maximum scale rate",
    )
    n, _able, limited = normalize_with_behavior(2, 30, 1, 3, None, History(), NOW)
    assert n == 3 and limited[0] == "TooManyReplicas"
    n, _able, limited = normalize_with_behavior(
        5, 1, 3, 10, {"scaleDown": {"stabilizationWindowSeconds": 0}}, History(), NOW
    )
    assert n == 3 and limited[0] == "TooFewReplicas"
    n, _able, limited = normalize_with_behavior(
        5, 9, 1, 10, {"scaleUp": {"selectPolicy": "Disabled"}}, History(), NOW
    )
    assert n == 5 and limited[0] == "ScaleUpLimit"


def test_without_behavior_up_to_twice_or_four() -> None:
    n, _able, limited = normalize_without_behavior(1, 10, 1, 20, History(), NOW)
    assert n == 4 and limited[0] == "ScaleUpLimit"
    n, _able, _limited = normalize_without_behavior(5, 30, 1, 20, History(), NOW)
    assert n == 10
    # the 300 s scale-down stabilization
    h = History()
    normalize_without_behavior(6, 6, 1, 20, h, NOW)
    n, able, _ = normalize_without_behavior(6, 2, 1, 20, h, NOW + 100)
    assert n == 6 and able[0] == "ScaleDownStabilized"


def test_autoscaling_v1_view_converts_both_ways() -> None:
    from apiserver.autoscaling_v1 import to_v1, to_v2

    v1 = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "targetCPUUtilizationPercentage": 50,
        },
    }
    v2 = to_v2(v1)
    assert v2["apiVersion"] == "autoscaling/v2"
    assert v2["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
        }
    ]
    v2["status"] = {
        "currentReplicas": 2,
        "desiredReplicas": 3,
        "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 95}}}
        ],
    }
    back = to_v1(v2)
    assert back["spec"] == v1["spec"]
    assert back["status"] == {
        "currentReplicas": 2,
        "desiredReplicas": 3,
        "currentCPUUtilizationPercentage": 95,
    }
    # no CPU target given in v1: none in v2 either (the v2 default, 80 %, applies)
    assert "metrics" not in to_v2({"spec": {"maxReplicas": 2}})["spec"]
