"""The HorizontalPodAutoscaler controller (Kubernetes' ``podautoscaler`` package: ``horizontal.go``
and ``replica_calculator.go``), for ``Resource`` metrics (CPU and memory; ``Utilization`` of the
pods' requests or ``AverageValue``) read from ``metrics.k8s.io`` through the API server.

Every ``--horizontal-pod-autoscaler-sync-period`` (default 15 s) each HPA is reconciled:

1. read the target's ``scale`` subresource (replicas and the pod selector);
2. outside ``[minReplicas, maxReplicas]`` the count is brought inside; a target at 0 replicas is
   not autoscaled (``ScalingDisabled``); otherwise each metric proposes a count with the replica
   calculator -- the usage ratio against the target, Kubernetes' 0.1 tolerance, pods still
   starting or without metrics handled as Kubernetes does (:func:`resource_replicas`) -- and the
   largest proposal wins;
3. the proposal goes through ``behavior`` (:func:`normalize_with_behavior`): the stabilization
   windows (the highest recommendation of the scale-down window, the lowest of the scale-up one),
   the ``Pods``/``Percent`` policies over their periods with ``selectPolicy`` ``Max``, ``Min`` or
   ``Disabled``; without ``behavior``, Kubernetes' older rule (:func:`normalize_without_behavior`):
   up to ``max(2 × current, 4)`` at once and a 300 s scale-down stabilization;
4. a new count is written to the target's ``scale`` (Event ``SuccessfulRescale``, ``New size: N;
   reason: ...``) and the status is written: ``currentReplicas``, ``desiredReplicas``,
   ``currentMetrics``, ``lastScaleTime`` and the conditions ``AbleToScale``, ``ScalingActive`` and
   ``ScalingLimited`` with Kubernetes' reasons and messages.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.events import NORMAL, WARNING
from apimachinery.quantity import quantity_to_millis
from apimachinery.resources import kind_info
from apimachinery.selectors import parse_label_selector
from apimachinery.timefmt import parse_time, rfc3339

from .base import Controller, ControllerContext

log = logging.getLogger(__name__)

HPAS = kind_info("autoscaling/v2", "HorizontalPodAutoscaler")
PODS_INFO = kind_info("v1", "Pod")

TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
CPU_INITIALIZATION_PERIOD = 300.0  # --horizontal-pod-autoscaler-cpu-initialization-period
INITIAL_READINESS_DELAY = 30.0  # --horizontal-pod-autoscaler-initial-readiness-delay
DOWNSCALE_STABILIZATION = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization
SCALE_UP_LIMIT_FACTOR, SCALE_UP_LIMIT_MINIMUM = 2, 4

DEFAULT_SCALE_UP = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ],
}
DEFAULT_SCALE_DOWN = {
    "stabilizationWindowSeconds": 300,
    "selectPolicy": "Max",
    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
}


class MetricsError(Exception):
    """A metric could not be computed (the ``FailedGetResourceMetric`` reasons)."""


# ---- the replica calculator (pure) -----------------------------------------------------------


@dataclass
class PodMetric:
    value: int  # milli-units (millicores, or milli-bytes for memory)
    timestamp: float
    window: float


def group_pods(
    pods: list[Obj], metrics: dict[str, PodMetric], resource: str, now: float
) -> tuple[int, set[str], set[str], set[str]]:
    """(ready count, unready, missing, ignored) as Kubernetes' ``groupPods``."""
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        name = meta.get("name", "")
        if meta.get("deletionTimestamp") or status.get("phase") == "Failed":
            ignored.add(name)
            continue
        if status.get("phase") == "Pending":
            unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            missing.add(name)
            continue
        if resource == "cpu":
            cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
            start = parse_time(status.get("startTime"))
            if cond is None or start is None:
                is_unready = True
            else:
                transition = parse_time(cond.get("lastTransitionTime")) or 0.0
                if start + CPU_INITIALIZATION_PERIOD > now:
                    is_unready = (
                        cond.get("status") == "False" or metric.timestamp < transition + metric.window
                    )
                else:
                    is_unready = (
                        cond.get("status") == "False" and start + INITIAL_READINESS_DELAY > transition
                    )
            if is_unready:
                unready.add(name)
                continue
        ready += 1
    return ready, unready, missing, ignored


def pod_requests(pods: list[Obj], resource: str, container: str = "") -> dict[str, int]:
    """Each pod's request of ``resource`` in milli-units (the sum of its containers')."""
    out = {}
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        total = 0
        for c in (pod.get("spec") or {}).get("containers") or []:
            if container and c.get("name") != container:
                continue
            req = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if req is None:
                raise MetricsError(
                    f"missing request for {resource} in container {c.get('name')} of Pod {name}"
                )
            total += quantity_to_millis(str(req))
        out[name] = total
    return out


def utilization_ratio(
    metrics: dict[str, PodMetric], requests: dict[str, int], target: int
) -> tuple[float, int, int]:
    """(usage ratio, utilization %, average raw usage) of the pods that have requests."""
    usage = req = 0
    for name, m in metrics.items():
        if name in requests:
            usage += m.value
            req += requests[name]
    if req == 0:
        raise MetricsError("no metrics returned matched known pods")
    utilization = int(usage * 100 / req)
    return utilization / target, utilization, usage // max(1, len(metrics))


def _replicas_from_ratio(
    current: int,
    ratio: float,
    ready: int,
    unready: set[str],
    missing: set[str],
    metrics: dict[str, PodMetric],
    recompute: Callable[[dict[str, PodMetric]], float],
    missing_value: Callable[[str], int],
) -> int:
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - ratio) <= TOLERANCE:
            return current
        return math.ceil(ratio * ready)
    metrics = dict(metrics)
    if missing:
        for name in missing:
            if ratio < 1.0:
                metrics[name] = PodMetric(missing_value(name), 0, 0)
            elif ratio > 1.0:
                metrics[name] = PodMetric(0, 0, 0)
    if scale_up_with_unready:
        for name in unready:
            metrics[name] = PodMetric(0, 0, 0)
    new_ratio = recompute(metrics)
    if (
        abs(1.0 - new_ratio) <= TOLERANCE
        or (ratio < 1.0 and new_ratio > 1.0)
        or (ratio > 1.0 and new_ratio < 1.0)
    ):
        return current
    new = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
        return current
    return new


def resource_replicas(
    current: int,
    pods: list[Obj],
    metrics: dict[str, PodMetric],
    resource: str,
    now: float,
    target_utilization: int | None = None,
    target_average: int | None = None,
) -> tuple[int, int | None, int]:
    """Kubernetes' ``GetResourceReplicas`` (utilization %) or ``GetRawResourceReplicas`` (average
    value, milli-units): (replicas, utilization % or None, average usage in milli-units)."""
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    ready, unready, missing, ignored = group_pods(pods, metrics, resource, now)
    metrics = {k: v for k, v in metrics.items() if k not in ignored and k not in unready}
    if not metrics:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    if target_utilization is not None:
        requests = pod_requests(pods, resource)
        ratio, utilization, average = utilization_ratio(metrics, requests, target_utilization)
        fallback = max(100, target_utilization)
        replicas = _replicas_from_ratio(
            current,
            ratio,
            ready,
            unready,
            missing,
            metrics,
            lambda m: utilization_ratio(m, requests, target_utilization)[0],
            lambda name: requests[name] * fallback // 100,
        )
        return replicas, utilization, average
    assert target_average is not None and target_average > 0

    def average_ratio(m: dict[str, PodMetric]) -> float:
        return (sum(x.value for x in m.values()) / len(m)) / target_average

    average = sum(x.value for x in metrics.values()) // len(metrics)
    replicas = _replicas_from_ratio(
        current,
        average_ratio(metrics),
        ready,
        unready,
        missing,
        metrics,
        average_ratio,
        lambda _n: target_average,
    )
    return replicas, None, average


# ---- behavior (pure) ---------------------------------------------------------------------------


@dataclass
class ScaleEvent:
    at: float
    change: int  # replicas added (scale up) or removed (scale down), positive


@dataclass
class History:
    """What the controller remembers of one HPA: recommendations and scale events."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_up: list[ScaleEvent] = field(default_factory=list)
    scale_down: list[ScaleEvent] = field(default_factory=list)


def rules_with_defaults(behavior: Obj | None) -> tuple[Obj, Obj]:
    behavior = behavior or {}
    up = {**DEFAULT_SCALE_UP, **{k: v for k, v in (behavior.get("scaleUp") or {}).items() if v is not None}}
    down = {
        **DEFAULT_SCALE_DOWN,
        **{k: v for k, v in (behavior.get("scaleDown") or {}).items() if v is not None},
    }
    return up, down


def _changes(period: float, events: list[ScaleEvent], now: float) -> int:
    return sum(e.change for e in events if e.at > now - period)


def scale_limit(up: bool, current: int, h: History, rules: Obj, now: float) -> int:
    """The furthest the policies of ``rules`` let the count go from ``current``, up or down
    (Kubernetes' ``calculateScaleUpLimitWithScalingRules`` and ``calculateScaleDownLimitWithBehaviors``).
    Each policy counts from the count its period started with; ``selectPolicy: Max`` (the default)
    takes the policy allowing the bigger change, ``Min`` the smaller one."""
    if rules.get("selectPolicy") == "Disabled":
        return current
    bigger, smaller = (max, min) if up else (min, max)
    pick = smaller if rules.get("selectPolicy") == "Min" else bigger
    result: int | None = None
    for p in rules.get("policies") or []:
        period = float(p.get("periodSeconds") or 0)
        start = current - _changes(period, h.scale_up, now) + _changes(period, h.scale_down, now)
        value = int(p.get("value") or 0)
        if p.get("type") == "Pods":
            proposed = start + value if up else start - value
        elif up:
            proposed = math.ceil(start * (1 + value / 100))
        else:
            proposed = int(start * (1 - value / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def stabilize(
    current: int, desired: int, h: History, up_window: float, down_window: float, now: float
) -> tuple[int, str, str]:
    """The recommendation after the stabilization windows (and recorded in ``h``)."""
    up_rec = down_rec = desired
    for at, rec in h.recommendations:
        if at > now - up_window:
            up_rec = min(up_rec, rec)
        if at > now - down_window:
            down_rec = max(down_rec, rec)
    keep = max(up_window, down_window)
    h.recommendations = [(at, rec) for at, rec in h.recommendations if at > now - keep]
    h.recommendations.append((now, desired))
    recommendation = current
    if recommendation < up_rec:
        recommendation = up_rec
    if recommendation > down_rec:
        recommendation = down_rec
    if recommendation == desired:
        return recommendation, "ReadyForNewScale", "recommended size matches current size"
    if recommendation < desired:
        return (
            recommendation,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    return (
        recommendation,
        "ScaleDownStabilized",
        "recent recommendations were higher than current one, applying the highest recent recommendation",
    )


def normalize_with_behavior(
    current: int, desired: int, minimum: int, maximum: int, behavior: Obj | None, h: History, now: float
) -> tuple[int, tuple[str, str], tuple[str, str]]:
    """(replicas, AbleToScale (reason, message), ScalingLimited (reason, message))."""
    up, down = rules_with_defaults(behavior)
    stabilized, reason, message = stabilize(
        current,
        desired,
        h,
        float(up.get("stabilizationWindowSeconds") or 0),
        float(down.get("stabilizationWindowSeconds") or 0),
        now,
    )
    able = (reason, message)
    limited = ("DesiredWithinRange", "the desired count is within the acceptable range")
    if stabilized > current:
        limit = max(scale_limit(True, current, h, up, now), current)
        if maximum > limit:
            allowed, why = (
                limit,
                (
                    "ScaleUpLimit",
                    "the desired replica count is increasing faster than the maximum scale rate",
                ),
            )
        else:
            allowed, why = (
                maximum,
                ("TooManyReplicas", "the desired replica count is more than the maximum replica count"),
            )
        if stabilized > allowed:
            return allowed, able, why
    elif stabilized < current:
        limit = min(scale_limit(False, current, h, down, now), current)
        if minimum < limit:
            allowed, why = (
                limit,
                (
                    "ScaleDownLimit",
                    "the desired replica count is decreasing faster than the maximum scale rate",
                ),
            )
        else:
            allowed, why = (
                minimum,
                ("TooFewReplicas", "the desired replica count is less than the minimum replica count"),
            )
        if stabilized < allowed:
            return allowed, able, why
    return stabilized, able, limited


def normalize_without_behavior(
    current: int, desired: int, minimum: int, maximum: int, h: History, now: float
) -> tuple[int, tuple[str, str], tuple[str, str]]:
    """Kubernetes' ``normalizeDesiredReplicas``: a 300 s scale-down stabilization, and up to
    ``max(2 × current, 4)`` replicas at once."""
    stabilized, reason, message = stabilize(current, desired, h, 0.0, DOWNSCALE_STABILIZATION, now)
    able = (reason, message)
    limit = max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM)
    if stabilized < minimum:
        return (
            minimum,
            able,
            ("TooFewReplicas", "the desired replica count is less than the minimum replica count"),
        )
    if maximum > limit and stabilized > limit:
        return (
            limit,
            able,
            ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"),
        )
    if stabilized > maximum:
        return (
            maximum,
            able,
            ("TooManyReplicas", "the desired replica count is more than the maximum replica count"),
        )
    return stabilized, able, ("DesiredWithinRange", "the desired count is within the acceptable range")


# ---- the controller ----------------------------------------------------------------------------


def _condition(type_: str, status: bool, reason: str, message: str, old: list[Obj], now: str) -> Obj:
    prev = next((c for c in old if c.get("type") == type_), None)
    s = "True" if status else "False"
    changed = prev is None or prev.get("status") != s
    return {
        "type": type_,
        "status": s,
        "lastTransitionTime": now if changed else prev.get("lastTransitionTime", now),  # type: ignore[union-attr]
        "reason": reason,
        "message": message,
    }


def _value(resource: str, milli: int) -> str:
    """A usage in milli-units as Kubernetes writes it: millicores for CPU, bytes otherwise."""
    return f"{milli}m" if resource == "cpu" else str(milli // 1000)


def metric_description(resource: str, utilization: bool) -> str:
    return (
        f"{resource} resource utilization (percentage of request)" if utilization else f"{resource} resource"
    )


class HPAController(Controller):
    name = "horizontal-pod-autoscaler"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.hpas = self.informer(HPAS)
        # a new HPA or a spec change is looked at now; status writes (this controller's own) wait
        # for the sync period, as Kubernetes' rate-limited queue does
        self.hpas.add_event_handler(
            self.enqueue,
            lambda old, new: self.enqueue(new) if old.get("spec") != new.get("spec") else None,
            self._deleted,
        )
        self.pods = self.informer(PODS_INFO)
        self.sync_period = float(ctx.options.extra.get("horizontal_pod_autoscaler_sync_period", 15.0))
        self.history: dict[str, History] = {}
        self.clock: Callable[[], float] = time.time

    def _deleted(self, obj: Obj) -> None:
        self.history.pop(f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}", None)

    async def background(self) -> None:
        while True:
            await asyncio.sleep(self.sync_period)
            for hpa in self.hpas.store.list():
                self.enqueue(hpa)

    async def pod_metrics(self, namespace: str, selector: str, resource: str) -> dict[str, PodMetric]:
        r = await self.client.raw(
            "GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods", {"labelSelector": selector}
        )
        out = {}
        for item in r.json().get("items") or []:
            containers = item.get("containers") or []
            if not containers:
                continue
            value = sum(
                quantity_to_millis(str((c.get("usage") or {}).get(resource, "0"))) for c in containers
            )
            window = str(item.get("window") or "0s").rstrip("s") or "0"
            out[item["metadata"]["name"]] = PodMetric(
                value, parse_time(item.get("timestamp")) or 0.0, float(window)
            )
        return out

    async def reconcile(self, key: str) -> None:
        hpa = self.hpas.store.get(key)
        if hpa is None or hpa["metadata"].get("deletionTimestamp"):
            self.history.pop(key, None)
            return
        now = self.clock()
        stamp = rfc3339(now)
        spec, status = hpa.get("spec") or {}, dict(hpa.get("status") or {})
        old_conds = list(status.get("conditions") or [])
        ref = spec.get("scaleTargetRef") or {}
        ns = hpa["metadata"].get("namespace", "")
        ref_text = f"{ref.get('kind')}/{ref.get('name')}"
        min_replicas = spec.get("minReplicas")
        minimum = 1 if min_replicas is None else int(min_replicas)
        maximum = int(spec.get("maxReplicas") or 1)
        conditions: list[Obj] = []

        async def finish(current: int, desired: int, metrics: list[Obj], scaled: bool) -> None:
            new_status: Obj = {
                "observedGeneration": hpa["metadata"].get("generation"),
                "currentReplicas": current,
                "desiredReplicas": desired,
            }
            if metrics:
                new_status["currentMetrics"] = metrics
            last = stamp if scaled else status.get("lastScaleTime")
            if last:
                new_status["lastScaleTime"] = last
            order = {"AbleToScale": 0, "ScalingActive": 1, "ScalingLimited": 2}
            new_status["conditions"] = sorted(conditions, key=lambda c: order.get(c["type"], 9))
            if {k: v for k, v in new_status.items() if v is not None} != {
                k: v for k, v in (hpa.get("status") or {}).items() if v is not None
            }:
                try:
                    await self.write_status(HPAS, hpa, {k: v for k, v in new_status.items() if v is not None})
                except errors.Conflict:
                    self.enqueue(key)

        try:
            target = kind_info(str(ref.get("apiVersion") or ""), str(ref.get("kind") or ""))
        except (KeyError, ValueError):
            target = None
        if target is None or "scale" not in target.subresources:
            msg = f"the HPA controller was unable to get the target's current scale: no scale subresource for {ref_text}"
            conditions.append(_condition("AbleToScale", False, "FailedGetScale", msg, old_conds, stamp))
            self.recorder.event(hpa, WARNING, "FailedGetScale", msg)
            await finish(
                int(status.get("currentReplicas") or 0), int(status.get("desiredReplicas") or 0), [], False
            )
            return
        try:
            scale = await self.client.get_scale(target, str(ref.get("name")), ns)
        except errors.StatusError as e:
            msg = f"the HPA controller was unable to get the target's current scale: {e}"
            conditions.append(_condition("AbleToScale", False, "FailedGetScale", msg, old_conds, stamp))
            self.recorder.event(hpa, WARNING, "FailedGetScale", msg)
            await finish(
                int(status.get("currentReplicas") or 0), int(status.get("desiredReplicas") or 0), [], False
            )
            return
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        selector = str((scale.get("status") or {}).get("selector") or "")
        h = self.history.setdefault(key, History())
        metrics_status: list[Obj] = []
        rescale_reason = ""
        if current == 0 and minimum != 0:
            desired = 0
            conditions.append(
                _condition(
                    "ScalingActive",
                    False,
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                    old_conds,
                    stamp,
                )
            )
            conditions.append(
                _condition(
                    "AbleToScale",
                    True,
                    "SucceededGetScale",
                    "the HPA controller was able to get the target's current scale",
                    old_conds,
                    stamp,
                )
            )
        elif current > maximum:
            desired, rescale_reason = maximum, "Current number of replicas above Spec.MaxReplicas"
            conditions.append(
                _condition(
                    "AbleToScale",
                    True,
                    "SucceededGetScale",
                    "the HPA controller was able to get the target's current scale",
                    old_conds,
                    stamp,
                )
            )
        elif current < minimum:
            desired, rescale_reason = minimum, "Current number of replicas below Spec.MinReplicas"
            conditions.append(
                _condition(
                    "AbleToScale",
                    True,
                    "SucceededGetScale",
                    "the HPA controller was able to get the target's current scale",
                    old_conds,
                    stamp,
                )
            )
        else:
            proposal, reason_metric, failure = await self.compute(
                hpa, ns, selector, current, now, metrics_status
            )
            if failure is not None:
                reason, msg = failure
                conditions.append(
                    _condition(
                        "AbleToScale",
                        True,
                        "SucceededGetScale",
                        "the HPA controller was able to get the target's current scale",
                        old_conds,
                        stamp,
                    )
                )
                conditions.append(_condition("ScalingActive", False, reason, msg, old_conds, stamp))
                self.recorder.event(hpa, WARNING, reason, msg)
                await finish(current, int(status.get("desiredReplicas") or current), metrics_status, False)
                return
            conditions.append(
                _condition(
                    "ScalingActive",
                    True,
                    "ValidMetricFound",
                    f"the HPA was able to successfully calculate a replica count from {reason_metric}",
                    old_conds,
                    stamp,
                )
            )
            if spec.get("behavior") is not None:
                desired, able, limited = normalize_with_behavior(
                    current, proposal, minimum, maximum, spec["behavior"], h, now
                )
            else:
                desired, able, limited = normalize_without_behavior(
                    current, proposal, minimum, maximum, h, now
                )
            conditions.append(_condition("AbleToScale", True, able[0], able[1], old_conds, stamp))
            conditions.append(
                _condition(
                    "ScalingLimited",
                    limited[0] != "DesiredWithinRange",
                    limited[0],
                    limited[1],
                    old_conds,
                    stamp,
                )
            )
            if desired > current:
                rescale_reason = f"{reason_metric} above target"
            elif desired < current:
                rescale_reason = "All metrics below target"
        scaled = False
        if desired != current:
            try:
                await self.client.scale(target, str(ref.get("name")), desired, ns)
            except errors.StatusError as e:
                msg = f"the HPA controller was unable to update the target scale: {e}"
                conditions = [c for c in conditions if c["type"] != "AbleToScale"]
                conditions.append(
                    _condition("AbleToScale", False, "FailedUpdateScale", msg, old_conds, stamp)
                )
                self.recorder.event(
                    hpa,
                    WARNING,
                    "FailedRescale",
                    f"New size: {desired}; reason: {rescale_reason}; error: {e}",
                )
                await finish(current, desired, metrics_status, False)
                return
            scaled = True
            if desired > current:
                h.scale_up.append(ScaleEvent(now, desired - current))
            else:
                h.scale_down.append(ScaleEvent(now, current - desired))
            keep = 3600.0
            h.scale_up = [e for e in h.scale_up if e.at > now - keep]
            h.scale_down = [e for e in h.scale_down if e.at > now - keep]
            self.recorder.event(
                hpa, NORMAL, "SuccessfulRescale", f"New size: {desired}; reason: {rescale_reason}"
            )
            conditions = [c for c in conditions if c["type"] != "AbleToScale"]
            conditions.append(
                _condition(
                    "AbleToScale",
                    True,
                    "SucceededRescale",
                    f"the HPA controller was able to update the target scale to {desired}",
                    old_conds,
                    stamp,
                )
            )
            log.info("%s: scaled %s from %d to %d (%s)", key, ref_text, current, desired, rescale_reason)
        await finish(current, desired, metrics_status, scaled)

    async def compute(
        self, hpa: Obj, ns: str, selector: str, current: int, now: float, metrics_status: list[Obj]
    ) -> tuple[int, str, tuple[str, str] | None]:
        """(largest proposal, the metric that gave it, or the (reason, message) of a failure)."""
        spec = hpa.get("spec") or {}
        specs = spec.get("metrics") or [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
            }
        ]
        try:
            sel = parse_label_selector(selector)
        except ValueError as e:
            return (
                0,
                "",
                (
                    "InvalidSelector",
                    f"couldn't convert selector into a corresponding internal selector object: {e}",
                ),
            )
        pods = [
            p
            for p in self.pods.store.by_index("namespace", ns)
            if sel.matches((p.get("metadata") or {}).get("labels") or {})
        ]
        best, best_metric = -1, ""
        for m in specs:
            if m.get("type") != "Resource":
                return (
                    0,
                    "",
                    (
                        "InvalidMetricSourceType",
                        f"the HPA was unable to compute the replica count: unsupported metric source type {m.get('type')!r}",
                    ),
                )
            res = m.get("resource") or {}
            resource = str(res.get("name") or "")
            target = res.get("target") or {}
            try:
                pod_metrics = await self.pod_metrics(ns, selector, resource)
                if target.get("type") == "Utilization":
                    want = int(target.get("averageUtilization") or 0)
                    replicas, utilization, average = resource_replicas(
                        current, pods, pod_metrics, resource, now, target_utilization=want
                    )
                    current_target: Obj = {
                        "averageUtilization": utilization,
                        "averageValue": _value(resource, average),
                    }
                    description = metric_description(resource, True)
                else:
                    want = quantity_to_millis(str(target.get("averageValue") or "0"))
                    replicas, _u, average = resource_replicas(
                        current, pods, pod_metrics, resource, now, target_average=want
                    )
                    current_target = {"averageValue": _value(resource, average)}
                    description = metric_description(resource, False)
            except (MetricsError, errors.StatusError, ValueError) as e:
                return (
                    0,
                    "",
                    (
                        "FailedGetResourceMetric",
                        f"the HPA was unable to compute the replica count: failed to get {resource} utilization: {e}",
                    ),
                )
            metrics_status.append(
                {"type": "Resource", "resource": {"name": resource, "current": current_target}}
            )
            if replicas > best:
                best, best_metric = replicas, description
        return best, best_metric, None
