"""autoscaling/v1 HPAs with bad annotations: a 422 naming the annotation, never an exception."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from apimachinery import errors
from apiserver.autoscaling_v1 import BEHAVIOR, CONDITIONS, CURRENT_METRICS, METRICS, to_v2


def hpa(annotations: Any) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "annotations": annotations},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 3,
            "targetCPUUtilizationPercentage": 50,
        },
        "status": {"currentReplicas": 1, "desiredReplicas": 1},
    }


@pytest.mark.parametrize(
    ("annotations", "field"),
    [
        (["abc"], "metadata.annotations"),
        ("abc", "metadata.annotations"),
        (5, "metadata.annotations"),
        ([["a", "b"]], "metadata.annotations"),  # dict() would have made {"a": "b"} of it
        ({METRICS: "{"}, f"metadata.annotations[{METRICS}]"),
        ({METRICS: "{}"}, f"metadata.annotations[{METRICS}]"),
        ({METRICS: "[5]"}, f"metadata.annotations[{METRICS}]"),
        ({METRICS: '["cpu"]'}, f"metadata.annotations[{METRICS}]"),
        ({METRICS: 7}, f"metadata.annotations[{METRICS}]"),
        ({BEHAVIOR: "[]"}, f"metadata.annotations[{BEHAVIOR}]"),
        ({CURRENT_METRICS: "[null]"}, f"metadata.annotations[{CURRENT_METRICS}]"),
        ({CONDITIONS: '"x"'}, f"metadata.annotations[{CONDITIONS}]"),
    ],
)
def test_bad_annotations_are_invalid_naming_the_field(annotations: Any, field: str) -> None:
    with pytest.raises(errors.StatusError) as caught:
        to_v2(hpa(annotations))
    err = caught.value
    assert err.code == 422 and err.reason == "Invalid"
    assert [c["field"] for c in err.causes] == [field]
    assert err.name == "web"


@pytest.mark.parametrize(
    "metric",
    [
        {"type": "Resource", "resource": "cpu"},
        {"type": "Resource", "resource": {"name": "cpu", "target": "Utilization"}},
        {"type": "Resource", "resource": {"name": "cpu", "current": 5}},
    ],
)
def test_odd_metric_shapes_in_the_annotations_do_not_crash_the_conversion(metric: dict[str, Any]) -> None:
    dumped = orjson.dumps([metric]).decode()
    v2 = to_v2(hpa({METRICS: dumped, CURRENT_METRICS: dumped}))
    # passed on as given: autoscaling/v2 validation judges them
    assert v2["spec"]["metrics"][1:] == [metric]
    assert v2["status"]["currentMetrics"] == [metric]


def test_good_annotations_still_convert() -> None:
    pods = {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue"}}}
    v2 = to_v2(hpa({METRICS: orjson.dumps([pods]).decode(), "team": "a"}))
    assert v2["spec"]["metrics"][1] == pods
    assert v2["metadata"]["annotations"] == {"team": "a"}
