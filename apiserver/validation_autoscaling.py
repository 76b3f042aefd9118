"""Validation of ``autoscaling/v2`` HorizontalPodAutoscalers, as ``pkg/apis/autoscaling/validation``.

* ``scaleTargetRef``: ``kind`` and ``name`` required (``name`` a valid path segment);
* ``minReplicas`` at least 1, ``maxReplicas`` at least 1 and not below ``minReplicas``;
* each metric: a known ``type`` with its source set; for ``Resource`` a resource ``name`` and a
  target of type ``Utilization`` (``averageUtilization`` > 0) or ``AverageValue``
  (``averageValue`` > 0) -- ``Value`` is not allowed for resource metrics;
* ``behavior``: ``stabilizationWindowSeconds`` in [0, 3600], ``selectPolicy`` ``Max``, ``Min`` or
  ``Disabled``, at least one policy, each of type ``Pods`` or ``Percent`` with ``value`` > 0 and
  ``periodSeconds`` in (0, 1800].
"""

from __future__ import annotations

from typing import Any

from apimachinery.quantity import parse_quantity

from . import validation as v

Obj = dict[str, Any]
Cause = dict[str, str]

METRIC_SOURCES = {
    "Object": "object",
    "Pods": "pods",
    "Resource": "resource",
    "ContainerResource": "containerResource",
    "External": "external",
}
MAX_PERIOD_SECONDS = 1800
MAX_STABILIZATION_WINDOW_SECONDS = 3600


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_quantity(value: Any) -> bool:
    try:
        return parse_quantity(str(value)) > 0
    except (ValueError, ArithmeticError):
        return False


def _target(target: Any, path: str, resource: bool) -> list[Cause]:
    t = v._d(target)
    kind = t.get("type")
    causes: list[Cause] = []
    if not kind:
        return [v.required(f"{path}.type", "must specify a metric target type")]
    if kind not in ("Utilization", "Value", "AverageValue"):
        return [v.not_supported(f"{path}.type", kind, ["AverageValue", "Utilization", "Value"])]
    if kind == "Utilization" and t.get("averageUtilization") is None:
        causes.append(
            v.required(
                f"{path}.averageUtilization", "must set either a target raw value or a target utilization"
            )
        )
    if kind == "AverageValue" and t.get("averageValue") is None:
        causes.append(
            v.required(f"{path}.averageValue", "must set either a target raw value or a target utilization")
        )
    if kind == "Value" and t.get("value") is None:
        causes.append(v.required(f"{path}.value", "must set either a target value or averageValue"))
    if resource and kind == "Value":
        causes.append(v.invalid(f"{path}.type", kind, "must be either Utilization or AverageValue"))
    if t.get("averageUtilization") is not None and not _positive_int(t["averageUtilization"]):
        causes.append(
            v.invalid(f"{path}.averageUtilization", t["averageUtilization"], "must be greater than 0")
        )
    for name in ("averageValue", "value"):
        if t.get(name) is not None and not _positive_quantity(t[name]):
            causes.append(v.invalid(f"{path}.{name}", t[name], "must be positive"))
    return causes


def _metric(metric: Any, path: str) -> list[Cause]:
    m = v._d(metric)
    kind = m.get("type")
    if not kind:
        return [v.required(f"{path}.type", "must specify a metric source type")]
    if kind not in METRIC_SOURCES:
        return [v.not_supported(f"{path}.type", kind, sorted(METRIC_SOURCES))]
    key = METRIC_SOURCES[kind]
    causes = [
        v.forbidden(f"{path}.{other}", "must populate the given metric source only")
        for other in METRIC_SOURCES.values()
        if other != key and m.get(other) is not None
    ]
    source = m.get(key)
    if source is None:
        causes.append(
            v.required(
                f"{path}.{key}", f"must populate information for the given metric source (type {kind})"
            )
        )
        return causes
    s = v._d(source)
    if kind in ("Resource", "ContainerResource"):
        if not s.get("name"):
            causes.append(v.required(f"{path}.{key}.name", "must specify a resource name"))
        if kind == "ContainerResource" and not s.get("container"):
            causes.append(v.required(f"{path}.{key}.container", "must specify a container"))
        causes.extend(_target(s.get("target"), f"{path}.{key}.target", True))
    else:
        if not v._d(s.get("metric")).get("name"):
            causes.append(v.required(f"{path}.{key}.metric.name", "must specify a metric name"))
        causes.extend(_target(s.get("target"), f"{path}.{key}.target", False))
    return causes


def _rules(rules: Any, path: str) -> list[Cause]:
    if rules is None:
        return []
    r = v._d(rules)
    causes: list[Cause] = []
    window = r.get("stabilizationWindowSeconds")
    if window is not None and (
        not isinstance(window, int)
        or isinstance(window, bool)
        or not 0 <= window <= MAX_STABILIZATION_WINDOW_SECONDS
    ):
        causes.append(
            v.invalid(
                f"{path}.stabilizationWindowSeconds",
                window,
                f"must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"
                if isinstance(window, int) and window > 0
                else "must be greater than or equal to zero",
            )
        )
    select = r.get("selectPolicy")
    if select is not None and select not in ("Max", "Min", "Disabled"):
        causes.append(v.not_supported(f"{path}.selectPolicy", select, ["Disabled", "Max", "Min"]))
    policies = r.get("policies")
    if not policies:
        causes.append(v.required(f"{path}.policies", "must specify at least one Policy"))
        return causes
    for i, p in enumerate(policies if isinstance(policies, list) else []):
        pp, ppath = v._d(p), f"{path}.policies[{i}]"
        if pp.get("type") not in ("Pods", "Percent"):
            causes.append(v.not_supported(f"{ppath}.type", pp.get("type"), ["Percent", "Pods"]))
        if not _positive_int(pp.get("value")):
            causes.append(v.invalid(f"{ppath}.value", pp.get("value"), "must be greater than zero"))
        period = pp.get("periodSeconds")
        if not _positive_int(period):
            causes.append(v.invalid(f"{ppath}.periodSeconds", period, "must be greater than zero"))
        elif isinstance(period, int) and period > MAX_PERIOD_SECONDS:
            causes.append(
                v.invalid(
                    f"{ppath}.periodSeconds", period, f"must be less than or equal to {MAX_PERIOD_SECONDS}"
                )
            )
    return causes


def validate_horizontal_pod_autoscaler(obj: Obj) -> list[Cause]:
    spec = v._d(obj.get("spec"))
    causes: list[Cause] = []
    ref = v._d(spec.get("scaleTargetRef"))
    if not ref.get("kind"):
        causes.append(v.required("spec.scaleTargetRef.kind"))
    name = ref.get("name")
    if not name:
        causes.append(v.required("spec.scaleTargetRef.name"))
    elif name in (".", "..") or "/" in str(name) or "%" in str(name):
        causes.append(
            v.invalid(
                "spec.scaleTargetRef.name", name, "may not contain '/' or '%' and may not be '.' or '..'"
            )
        )
    minimum = spec.get("minReplicas")
    if minimum is not None and (not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 1):
        causes.append(v.invalid("spec.minReplicas", minimum, "must be greater than or equal to 1"))
    maximum = spec.get("maxReplicas")
    if not isinstance(maximum, int) or isinstance(maximum, bool) or maximum < 1:
        causes.append(v.invalid("spec.maxReplicas", maximum, "must be greater than 0"))
    elif isinstance(minimum, int) and not isinstance(minimum, bool) and maximum < minimum:
        causes.append(
            v.invalid("spec.maxReplicas", maximum, "must be greater than or equal to `minReplicas`")
        )
    for i, m in enumerate(spec.get("metrics") or []):
        causes.extend(_metric(m, f"spec.metrics[{i}]"))
    behavior = spec.get("behavior")
    if behavior is not None:
        b = v._d(behavior)
        causes.extend(_rules(b.get("scaleUp"), "spec.behavior.scaleUp"))
        causes.extend(_rules(b.get("scaleDown"), "spec.behavior.scaleDown"))
    return causes
