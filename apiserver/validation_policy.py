"""Validation of ``policy/v1`` PodDisruptionBudgets, as ``pkg/apis/policy/validation``.

* ``minAvailable`` and ``maxUnavailable`` cannot be both set (Kubernetes accepts neither: such a
  budget expects no pod and allows every disruption);
* each is an int-or-percent: a non-negative integer or ``"N%"`` with N at most 100;
* ``selector`` is a valid label selector (a missing one selects no pod, ``{}`` every pod of the
  namespace);
* ``unhealthyPodEvictionPolicy`` is ``IfHealthyBudget`` or ``AlwaysAllow`` when set;
* the status counters (``disruptionsAllowed``, ``currentHealthy``, ``desiredHealthy``,
  ``expectedPods``) are not negative.
"""

from __future__ import annotations

import json
from typing import Any

from apimachinery.disruption import UNHEALTHY_POLICIES

from . import validation as v

Obj = dict[str, Any]
Cause = dict[str, str]


def _int_or_percent(value: Any, path: str) -> list[Cause]:
    """``ValidatePositiveIntOrPercent`` and ``IsNotMoreThan100Percent``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return [v.invalid(path, value, "must be an integer or percentage (e.g '5%')")]
    if isinstance(value, int):
        return v._nonnegative(value, path)
    if not v._PERCENT_RE.match(value):
        return [v.invalid(path, value, "must be an integer or percentage (e.g '5%')")]
    if int(value[:-1]) > 100:
        return [v.invalid(path, value, "must not be greater than 100%")]
    return []


def validate_pod_disruption_budget(obj: Obj) -> list[Cause]:
    spec = v._d(obj.get("spec"))
    errs: list[Cause] = []
    min_available = spec.get("minAvailable")
    max_unavailable = spec.get("maxUnavailable")
    if min_available is not None and max_unavailable is not None:
        shown = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        errs.append(v.invalid("spec", shown, "minAvailable and maxUnavailable cannot be both set"))
    if min_available is not None:
        errs.extend(_int_or_percent(min_available, "spec.minAvailable"))
    if max_unavailable is not None:
        errs.extend(_int_or_percent(max_unavailable, "spec.maxUnavailable"))
    errs.extend(v.validate_label_selector(spec.get("selector"), "spec.selector"))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in UNHEALTHY_POLICIES:
        errs.append(v.not_supported("spec.unhealthyPodEvictionPolicy", policy, list(UNHEALTHY_POLICIES)))
    errs.extend(_validate_status(v._d(obj.get("status"))))
    return errs


def _validate_status(status: Obj) -> list[Cause]:
    errs: list[Cause] = []
    for key in ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"):
        errs.extend(v._nonnegative(status.get(key), f"status.{key}"))
    return errs
