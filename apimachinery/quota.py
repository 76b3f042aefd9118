"""Resource quota accounting shared by the API server's ResourceQuota admission and the quota
controller: what one object adds to a namespace's usage, which quotas cover it, and how usage is
printed (Kubernetes' ``pkg/quota/v1/evaluator/core``).
"""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from apimachinery.quantity import BINARY_SI, DECIMAL_SI, format_quantity, parse_quantity

Obj = dict[str, Any]
Usage = dict[str, Decimal]

# Resources whose quota makes every container state a request or limit (Kubernetes' validationSet).
CONSTRAINED = ("cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory")
# The few kinds with a short resource name besides ``count/<resource>``.
SHORT_NAMES = {
    ("", "services"): "services",
    ("", "configmaps"): "configmaps",
    ("", "secrets"): "secrets",
    ("", "persistentvolumeclaims"): "persistentvolumeclaims",
    ("", "replicationcontrollers"): "replicationcontrollers",
    ("", "resourcequotas"): "resourcequotas",
}
SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort")


def count_name(group: str, plural: str) -> str:
    return f"count/{plural}" if not group else f"count/{plural}.{group}"


def _d(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _dl(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _q(value: Any) -> Decimal | None:
    try:
        return parse_quantity(str(value))
    except ValueError:
        return None


def _add(total: Usage, name: str, value: Decimal) -> None:
    total[name] = total.get(name, Decimal(0)) + value


def _container_usage(resources: Obj) -> Usage:
    """Kubernetes' ``podComputeUsageHelper`` for one container (or a pod's summed resources)."""
    out: Usage = {}
    requests, limits = _d(resources.get("requests")), _d(resources.get("limits"))
    for name, raw in requests.items():
        value = _q(raw)
        if value is None:
            continue
        if name in ("cpu", "memory", "ephemeral-storage"):
            out[name] = value
        out[f"requests.{name}"] = value
    for name, raw in limits.items():
        value = _q(raw)
        if value is not None:
            out[f"limits.{name}"] = value
    return out


def pod_requests_limits(spec: Obj) -> tuple[Usage, Usage]:
    """Effective requests and limits of a pod: containers summed, the largest init container
    where it is larger, plus the pod overhead."""
    requests: Usage = {}
    limits: Usage = {}
    for c in _dl(spec.get("containers")):
        res = _d(c.get("resources"))
        for name, raw in _d(res.get("requests")).items():
            v = _q(raw)
            if v is not None:
                _add(requests, name, v)
        for name, raw in _d(res.get("limits")).items():
            v = _q(raw)
            if v is not None:
                _add(limits, name, v)
    for c in _dl(spec.get("initContainers")):
        res = _d(c.get("resources"))
        for target, key in ((requests, "requests"), (limits, "limits")):
            for name, raw in _d(res.get(key)).items():
                v = _q(raw)
                if v is not None and v > target.get(name, Decimal(0)):
                    target[name] = v
    for name, raw in _d(spec.get("overhead")).items():
        v = _q(raw)
        if v is not None:
            _add(requests, name, v)
            if name in limits:
                _add(limits, name, v)
    return requests, limits


def _parse_time(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def pod_counts(pod: Obj, now: float | None = None) -> bool:
    """Whether a pod's compute resources (and ``pods``) count: not terminal and not past its
    deletion grace period (Kubernetes' ``QuotaV1Pod``)."""
    if _d(pod.get("status")).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = _d(pod.get("metadata"))
    if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") is not None:
        at = _parse_time(meta["deletionTimestamp"])
        if at is not None and (now if now is not None else time.time()) > at + float(
            meta["deletionGracePeriodSeconds"]
        ):
            return False
    return True


def pod_usage(pod: Obj, now: float | None = None) -> Usage:
    usage: Usage = {"count/pods": Decimal(1)}
    if not pod_counts(pod, now):
        return usage
    usage["pods"] = Decimal(1)
    requests, limits = pod_requests_limits(_d(pod.get("spec")))
    usage.update(_container_usage({"requests": requests, "limits": limits}))
    return usage


def object_usage(group: str, plural: str, obj: Obj, now: float | None = None) -> Usage:
    """What ``obj`` (of resource ``group``/``plural``) counts against a quota."""
    if (group, plural) == ("", "pods"):
        return pod_usage(obj, now)
    usage: Usage = {count_name(group, plural): Decimal(1)}
    short = SHORT_NAMES.get((group, plural))
    if short:
        usage[short] = Decimal(1)
    if (group, plural) == ("", "services"):
        spec = _d(obj.get("spec"))
        kind = spec.get("type") or "ClusterIP"
        if kind in ("NodePort", "LoadBalancer"):
            usage["services.nodeports"] = Decimal(len(_dl(spec.get("ports"))))
        if kind == "LoadBalancer":
            usage["services.loadbalancers"] = Decimal(1)
    elif (group, plural) == ("", "persistentvolumeclaims"):
        spec = _d(obj.get("spec"))
        storage = _q(_d(_d(spec.get("resources")).get("requests")).get("storage"))
        if storage is not None:
            usage["requests.storage"] = storage
            cls = spec.get("storageClassName")
            if cls:
                usage[f"{cls}.storageclass.storage.k8s.io/requests.storage"] = storage
                usage[f"{cls}.storageclass.storage.k8s.io/persistentvolumeclaims"] = Decimal(1)
    return usage


def _is_best_effort(spec: Obj) -> bool:
    for c in _dl(spec.get("containers")) + _dl(spec.get("initContainers")):
        res = _d(c.get("resources"))
        for key in ("requests", "limits"):
            for name in ("cpu", "memory"):
                v = _q(_d(res.get(key)).get(name))
                if v is not None and v > 0:
                    return False
    return True


def quota_matches(quota: Obj, group: str, plural: str, obj: Obj) -> bool:
    """Whether ``obj`` falls under the quota's scopes (a scoped quota covers only pods)."""
    spec = _d(quota.get("spec"))
    scopes = [str(s) for s in spec.get("scopes") or []]
    for expr in _dl(_d(spec.get("scopeSelector")).get("matchExpressions")):
        if expr.get("operator") in ("Exists", None) and expr.get("scopeName") in SCOPES:
            scopes.append(str(expr["scopeName"]))
        elif expr.get("scopeName"):
            scopes.append("?")
    if not scopes:
        return True
    if (group, plural) != ("", "pods"):
        return False
    pod_spec = _d(obj.get("spec"))
    for scope in scopes:
        terminating = pod_spec.get("activeDeadlineSeconds") is not None
        best_effort = _is_best_effort(pod_spec)
        ok = {
            "Terminating": terminating,
            "NotTerminating": not terminating,
            "BestEffort": best_effort,
            "NotBestEffort": not best_effort,
        }.get(scope, False)
        if not ok:
            return False
    return True


def missing_constraints(spec: Obj, required: set[str]) -> dict[str, list[str]]:
    """Resource -> containers that do not state it, for the quota resources that require every
    container to (Kubernetes' pod evaluator ``Constraints``)."""
    need = required & set(CONSTRAINED)
    missing: dict[str, list[str]] = {}
    if not need:
        return missing
    for c in _dl(spec.get("containers")) + _dl(spec.get("initContainers")):
        have = set(_container_usage(_d(c.get("resources"))))
        for name in sorted(need - have):
            missing.setdefault(name, []).append(str(c.get("name", "")))
    return missing


def constraint_message(missing: dict[str, list[str]]) -> str:
    parts = [f"{name} for: {','.join(sorted(set(missing[name])))}" for name in sorted(missing)]
    return "must specify " + "; ".join(parts)


def format_value(name: str, value: Decimal) -> str:
    binary = "memory" in name or "storage" in name
    return format_quantity(value, BINARY_SI if binary else DECIMAL_SI)


def pretty(usage: Usage) -> str:
    """``a=1,b=2Gi`` in key order, as Kubernetes' ``prettyPrint``."""
    return ",".join(f"{k}={format_value(k, usage[k])}" for k in sorted(usage))


def parse_list(values: Any) -> Usage:
    out: Usage = {}
    for name, raw in _d(values).items():
        v = _q(raw)
        if v is not None:
            out[str(name)] = v
    return out


def to_list(usage: Usage) -> dict[str, str]:
    return {k: format_value(k, usage[k]) for k in sorted(usage)}


def resources_of_hard(hard: Usage) -> set[tuple[str, str]]:
    """(group, plural) of the resources a quota with these hard limits must count."""
    out: set[tuple[str, str]] = set()
    for name in hard:
        if name in ("pods", "cpu", "memory", "ephemeral-storage") or name.startswith(
            ("requests.", "limits.")
        ):
            if name not in ("requests.storage",):
                out.add(("", "pods"))
        if name == "requests.storage" or name.endswith(
            (
                "storageclass.storage.k8s.io/requests.storage",
                "storageclass.storage.k8s.io/persistentvolumeclaims",
            )
        ):
            out.add(("", "persistentvolumeclaims"))
        if name.startswith("services"):
            out.add(("", "services"))
        for (group, plural), short in SHORT_NAMES.items():
            if name == short:
                out.add((group, plural))
        if name.startswith("count/"):
            rest = name[len("count/") :]
            plural, _, group = rest.partition(".")
            out.add((group, plural))
    return out
