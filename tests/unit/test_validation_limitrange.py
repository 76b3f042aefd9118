"""A LimitRange item's ordering checks (min <= defaultRequest <= default <= max): each names the
field and value Kubernetes names, in Kubernetes' order."""

from __future__ import annotations

import pytest

from apimachinery.resources import kind_info
from apiserver import validation

pytestmark = pytest.mark.unit


def test_every_ordering_check_of_a_limit_range_item() -> None:
    item = {
        "type": "Container",
        "min": {"cpu": "4", "memory": "2Gi"},
        "max": {"cpu": "1"},
        "default": {"cpu": "3"},
        "defaultRequest": {"cpu": "5", "memory": "1Gi"},
    }
    obj = {"metadata": {"name": "l", "namespace": "ns"}, "spec": {"limits": [item]}}
    causes = [(c["field"], c["message"]) for c in validation.validate(kind_info("v1", "LimitRange"), obj)]
    p = "spec.limits[0]"
    assert causes == [
        (f"{p}.min[cpu]", 'Invalid value: "4": min value 4 is greater than max value 1'),
        (
            f"{p}.defaultRequest[cpu]",
            'Invalid value: "5": default request value 5 is greater than max value 1',
        ),
        (
            f"{p}.defaultRequest[cpu]",
            'Invalid value: "5": default request value 5 is greater than default limit value 3',
        ),
        (f"{p}.default[cpu]", 'Invalid value: "4": min value 4 is greater than default value 3'),
        (f"{p}.default[cpu]", 'Invalid value: "1": default value 3 is greater than max value 1'),
        (
            f"{p}.defaultRequest[memory]",
            'Invalid value: "1Gi": min value 2Gi is greater than default request value 1Gi',
        ),
    ]
