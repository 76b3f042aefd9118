"""PodDisruptionBudget arithmetic shared by the eviction subresource and the disruption controller.

Pure functions over plain dicts, as Kubernetes' ``pkg/controller/disruption`` and
``pkg/apis/policy/helper`` compute them:

* :func:`scaled_value` is ``intstr.GetScaledValueFromIntOrPercent`` (percentages rounded **up**);
* :func:`desired_healthy` turns ``minAvailable`` / ``maxUnavailable`` and the expected pod count
  into the number of healthy pods the budget wants;
* :func:`disruptions_allowed` is ``currentHealthy - desiredHealthy`` floored at 0 (and 0 when no
  pod is expected);
* :func:`set_disruption_allowed_condition` keeps the ``DisruptionAllowed`` condition
  (``SufficientPods`` / ``InsufficientPods``; ``SyncFailed`` when the controller could not compute
  the status), keeping ``lastTransitionTime`` while the status does not change.
"""

from __future__ import annotations

import math
import re
from typing import Any

from apimachinery.timefmt import rfc3339

DISRUPTION_ALLOWED = "DisruptionAllowed"
SUFFICIENT_PODS = "SufficientPods"
INSUFFICIENT_PODS = "InsufficientPods"
SYNC_FAILED = "SyncFailed"
# the cause type of a 429 from the eviction subresource (policyv1.DisruptionBudgetCause)
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
# how long an eviction's entry in status.disruptedPods counts before the controller drops it
DELETION_TIMEOUT = 120.0
UNHEALTHY_POLICIES = ("AlwaysAllow", "IfHealthyBudget")

_PERCENT = re.compile(r"^[0-9]+%$")


def is_percent(value: Any) -> bool:
    return isinstance(value, str) and bool(_PERCENT.match(value))


def scaled_value(value: Any, total: int, round_up: bool = True) -> int:
    """An int-or-percent against ``total``: ints as they are, ``"N%"`` as ``N * total / 100``
    rounded up (or down); anything else (a string without ``%``) raises ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if _PERCENT.match(value):
            exact = int(value[:-1]) * total / 100
            return math.ceil(exact) if round_up else math.floor(exact)
    raise ValueError(f"invalid value for IntOrString: invalid value {value!r}")


def uses_scale(spec: dict[str, Any]) -> bool:
    """Whether the expected count comes from the controllers' scale (Kubernetes: maxUnavailable
    set, or minAvailable a percentage); otherwise it is the number of matching pods."""
    if spec.get("maxUnavailable") is not None:
        return True
    return isinstance(spec.get("minAvailable"), str)


def desired_healthy(spec: dict[str, Any], expected: int) -> int:
    """``getExpectedPodCount``'s desiredHealthy for ``expected`` pods (the controllers' scale, or
    the matching pods when :func:`uses_scale` is false)."""
    if spec.get("maxUnavailable") is not None:
        return max(0, expected - scaled_value(spec["maxUnavailable"], expected, True))
    min_available = spec.get("minAvailable")
    if min_available is None:
        return 0
    return scaled_value(min_available, expected, True)


def disruptions_allowed(current_healthy: int, desired: int, expected: int) -> int:
    if expected <= 0 or current_healthy <= desired:
        return 0
    return current_healthy - desired


def set_disruption_allowed_condition(
    status: dict[str, Any], now: float | None = None, reason: str | None = None, message: str = ""
) -> None:
    """Set ``DisruptionAllowed`` from ``status["disruptionsAllowed"]`` (or ``SyncFailed`` with
    ``reason``) as ``pdbhelper.UpdateDisruptionAllowedCondition`` / ``apimeta.SetStatusCondition``."""
    if reason == SYNC_FAILED:
        cond_status = "False"
    elif int(status.get("disruptionsAllowed") or 0) > 0:
        cond_status, reason = "True", SUFFICIENT_PODS
    else:
        cond_status, reason = "False", INSUFFICIENT_PODS
    conds = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    current = next((c for c in conds if c.get("type") == DISRUPTION_ALLOWED), None)
    new = {
        "type": DISRUPTION_ALLOWED,
        "status": cond_status,
        "reason": reason,
        "message": message,
        "observedGeneration": status.get("observedGeneration") or 0,
        "lastTransitionTime": rfc3339(now),
    }
    if current is not None and current.get("status") == cond_status:
        new["lastTransitionTime"] = current.get("lastTransitionTime") or new["lastTransitionTime"]
    status["conditions"] = [c for c in conds if c.get("type") != DISRUPTION_ALLOWED] + [new]


def budget_message(name: str, status: dict[str, Any]) -> str:
    """The cause message of the 429 when a budget allows no disruption."""
    return (
        f"The disruption budget {name} needs {int(status.get('desiredHealthy') or 0)} healthy pods "
        f"and has {int(status.get('currentHealthy') or 0)} currently"
    )
