"""Validation of ``scheduling.k8s.io`` PriorityClasses, as ``pkg/apis/scheduling/validation``.

* a name starting with ``system-`` is reserved for the two system classes, which must keep their
  value and ``globalDefault: false``;
* a user class's ``value`` is at most 1,000,000,000 (``HighestUserDefinablePriority``);
* ``preemptionPolicy`` is ``PreemptLowerPriority`` or ``Never``;
* on update ``value`` and ``preemptionPolicy`` are immutable.

That only one class may be ``globalDefault`` is admission's rule (a 403, as Kubernetes' Priority
plugin answers), see :mod:`apiserver.priority`.
"""

from __future__ import annotations

import json
from typing import Any

from apimachinery import errors
from apimachinery.selectors import go_quote

Obj = dict[str, Any]
Cause = dict[str, str]

SYSTEM_PRIORITY_CLASS_PREFIX = "system-"
HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000
SYSTEM_CRITICAL_PRIORITY = 2 * HIGHEST_USER_DEFINABLE_PRIORITY
SYSTEM_CLUSTER_CRITICAL = "system-cluster-critical"
SYSTEM_NODE_CRITICAL = "system-node-critical"
# name -> (value, globalDefault), scheduling.SystemPriorityClasses()
SYSTEM_PRIORITY_CLASSES: dict[str, tuple[int, bool]] = {
    SYSTEM_NODE_CRITICAL: (SYSTEM_CRITICAL_PRIORITY + 1000, False),
    SYSTEM_CLUSTER_CRITICAL: (SYSTEM_CRITICAL_PRIORITY, False),
}
PREEMPTION_POLICIES = ["Never", "PreemptLowerPriority"]


# The cause builders of apiserver.validation, here without importing it (it imports this module).
def forbidden(path: str, detail: str) -> Cause:
    return errors.cause(path, f"Forbidden: {detail}", "FieldValueForbidden")


def not_supported(path: str, value: Any, valid: list[str]) -> Cause:
    supported = ", ".join(go_quote(v) for v in valid)
    return errors.cause(
        path,
        f"Unsupported value: {json.dumps(value)}: supported values: {supported}",
        "FieldValueNotSupported",
    )


def immutable(path: str, new: Any, old: Any) -> list[Cause]:
    if (new or None) == (old or None):
        return []
    shown = "null" if new is None else json.dumps(new)
    return [errors.cause(path, f"Invalid value: {shown}: field is immutable", "FieldValueInvalid")]


def _value(obj: Obj) -> int:
    try:
        return int(obj.get("value") or 0)
    except (TypeError, ValueError):
        return 0


def known_system_class_error(name: str, value: int, global_default: bool) -> str | None:
    """``IsKnownSystemPriorityClass``'s error, None for a known system class as it must be."""
    known = SYSTEM_PRIORITY_CLASSES.get(name)
    if known is None:
        return f"{name} is not a known system priority class"
    if known[0] != value:
        return f"value of {name} PriorityClass must be {known[0]}"
    if known[1] != global_default:
        return f"globalDefault of {name} PriorityClass must be {str(known[1]).lower()}"
    return None


def validate_priority_class(obj: Obj) -> list[Cause]:
    errs: list[Cause] = []
    name = str((obj.get("metadata") or {}).get("name") or "")
    value = _value(obj)
    if name.startswith(SYSTEM_PRIORITY_CLASS_PREFIX):
        problem = known_system_class_error(name, value, bool(obj.get("globalDefault")))
        if problem is not None:
            errs.append(
                forbidden(
                    "metadata.name",
                    f"priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved "
                    f"for system use only. error: {problem}",
                )
            )
    elif value > HIGHEST_USER_DEFINABLE_PRIORITY:
        errs.append(
            forbidden(
                "value",
                f"maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}",
            )
        )
    policy = obj.get("preemptionPolicy")
    if policy is not None and policy not in PREEMPTION_POLICIES:
        errs.append(not_supported("preemptionPolicy", policy, PREEMPTION_POLICIES))
    return errs


def validate_priority_class_update(obj: Obj, old: Obj) -> list[Cause]:
    errs: list[Cause] = []
    if _value(obj) != _value(old):
        errs.append(forbidden("value", "may not be changed in an update."))
    errs.extend(immutable("preemptionPolicy", obj.get("preemptionPolicy"), old.get("preemptionPolicy")))
    return errs
