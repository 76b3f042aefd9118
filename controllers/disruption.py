"""The disruption controller: keep each PodDisruptionBudget's status, as kube-controller-manager's
``pkg/controller/disruption``.

``reconcile(namespace/name)`` of a budget:

1. the pods of its namespace its selector matches (a missing selector matches none, ``{}`` all);
2. ``expectedPods`` and ``desiredHealthy``: with an integer ``minAvailable`` the matching pods
   and that number; with ``maxUnavailable`` or a percentage the sum of the scales of the pods'
   controllers (a ReplicaSet of a Deployment counts the Deployment's ``spec.replicas``; a
   StatefulSet, a ReplicaSet, or any other owner through its ``/scale``), the percentage rounded
   up; unmanaged pods get an ``UnmanagedPods`` warning;
3. ``disruptedPods`` keeps the evictions (written by the eviction subresource) younger than two
   minutes whose pod still exists and is not being deleted; an older entry is dropped with a
   ``NotDeleted`` event on the pod, and the budget is looked at again when the youngest expires;
4. ``currentHealthy`` counts the ready pods that are neither deleting nor recently evicted;
   ``disruptionsAllowed = max(0, currentHealthy - desiredHealthy)`` (0 when no pod is expected);
5. ``status`` (with ``observedGeneration`` and the ``DisruptionAllowed`` condition:
   ``SufficientPods`` / ``InsufficientPods``) is written through ``/status`` with the
   resourceVersion read, so a concurrent eviction's decrement is never overwritten (a conflict
   retries).  When the status cannot be computed, ``disruptionsAllowed`` becomes 0 with the
   condition ``SyncFailed`` (fail safe) and the key is retried.

Pod events enqueue the budgets that select the pod; the workload kinds are read from their caches.
"""

from __future__ import annotations

import logging
from typing import Any

from apimachinery import disruption, errors
from apimachinery.client import Obj
from apimachinery.events import NORMAL, WARNING
from apimachinery.resources import by_kind, kind_info
from apimachinery.selectors import selector_from_dict
from apimachinery.timefmt import parse_time

from .base import DEPLOYMENTS, REPLICA_SETS, Controller, ControllerContext
from .podcontrol import PODS
from .util import controller_ref, deep_copy, is_deleting, is_pod_ready, labels_of, meta, namespace_of, uid_of

log = logging.getLogger(__name__)

PDBS = kind_info("policy/v1", "PodDisruptionBudget")
STATEFUL_SETS = kind_info("apps/v1", "StatefulSet")


class NoController(Exception):
    """A pod's controller could not be found (the status cannot be computed)."""


def healthy_and_disrupted(
    pdb: Obj, pods: list[Obj], now: float
) -> tuple[int, dict[str, str], float | None, list[Obj]]:
    """(currentHealthy, the disruptedPods to keep, when to look again, pods whose eviction
    entry expired without the pod being deleted) — ``buildDisruptedPodMap`` and
    ``countHealthyPods``."""
    recorded = ((pdb.get("status") or {}).get("disruptedPods")) or {}
    kept: dict[str, str] = {}
    recheck: float | None = None
    expired: list[Obj] = []
    for pod in pods:
        if is_deleting(pod):
            continue
        name = meta(pod).get("name", "")
        when = recorded.get(name)
        if when is None:
            continue
        at = parse_time(when)
        if at is None:
            continue
        deadline = at + disruption.DELETION_TIMEOUT
        if deadline < now:
            expired.append(pod)
        else:
            kept[name] = when
            recheck = deadline if recheck is None else min(recheck, deadline)
    healthy = 0
    for pod in pods:
        if is_deleting(pod):
            continue
        if meta(pod).get("name", "") in kept:
            continue
        if is_pod_ready(pod):
            healthy += 1
    return healthy, kept, recheck, expired


def new_status(
    pdb: Obj, healthy: int, desired: int, expected: int, disrupted: dict[str, str], now: float
) -> dict[str, Any]:
    """The status to write (``updatePdbStatus``), conditions carried over and brought up to date."""
    old = pdb.get("status") or {}
    status: dict[str, Any] = {
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": disruption.disruptions_allowed(healthy, desired, expected),
        "observedGeneration": int(meta(pdb).get("generation") or 0),
    }
    if disrupted:
        status["disruptedPods"] = disrupted
    if old.get("conditions"):
        status["conditions"] = deep_copy(old["conditions"])
    disruption.set_disruption_allowed_condition(status, now)
    return status


class DisruptionController(Controller):
    name = "disruption"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.pdbs = self.informer(PDBS, on_change=self.enqueue, on_delete=self.enqueue)
        self.pods = self.informer(PODS)
        self.pods.add_event_handler(
            self._pod_changed, lambda old, new: self._pod_updated(old, new), self._pod_changed
        )
        self.replica_sets = self.informer(REPLICA_SETS)
        self.deployments = self.informer(DEPLOYMENTS)
        self.stateful_sets = self.informer(STATEFUL_SETS)

    # -- handlers (only enqueue) ----------------------------------------------------------------

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        self._pod_changed(new)
        if labels_of(old) != labels_of(new):
            self._pod_changed(old)

    def _pod_changed(self, pod: Obj) -> None:
        for pdb in self.budgets_of(pod):
            self.enqueue(pdb)

    def budgets_of(self, pod: Obj) -> list[Obj]:
        out = []
        for pdb in self.pdbs.store.by_index("namespace", namespace_of(pod)):
            try:
                selector = selector_from_dict((pdb.get("spec") or {}).get("selector"))
            except errors.StatusError:
                continue
            if selector.matches(labels_of(pod)):
                out.append(pdb)
        return out

    # -- reconcile --------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        pdb = self.pdbs.store.get(key)
        if pdb is None:
            return
        try:
            await self.try_sync(pdb)
        except errors.Conflict:
            raise
        except Exception as exc:
            log.warning("disruption: failed to sync budget %s: %s", key, exc)
            await self.fail_safe(pdb, str(exc))
            raise

    def pods_of(self, pdb: Obj) -> list[Obj]:
        selector = selector_from_dict((pdb.get("spec") or {}).get("selector"))
        return [
            p
            for p in self.pods.store.by_index("namespace", namespace_of(pdb))
            if selector.matches(labels_of(p))
        ]

    async def try_sync(self, pdb: Obj) -> None:
        pods = self.pods_of(pdb)
        if not pods:
            self.recorder.event(pdb, NORMAL, "NoPods", "No matching pods found")
        spec = pdb.get("spec") or {}
        try:
            if disruption.uses_scale(spec):
                expected, unmanaged = await self.expected_scale(pods)
            else:
                expected, unmanaged = len(pods), []
            desired = disruption.desired_healthy(spec, expected)
        except (NoController, ValueError) as exc:
            self.recorder.event(
                pdb,
                WARNING,
                "CalculateExpectedPodCountFailed",
                f"Failed to calculate the number of expected pods: {exc}",
            )
            raise
        if unmanaged:
            self.recorder.event(
                pdb,
                WARNING,
                "UnmanagedPods",
                f"Pods selected by this PodDisruptionBudget (selector: {spec.get('selector')}) were found to be "
                "unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result "
                'in undefined behavior. To account for these pods please set ".spec.minAvailable" field of the '
                "PDB to an integer value.",
            )
        now = self.ctx.clock()
        healthy, kept, recheck, expired = healthy_and_disrupted(pdb, pods, now)
        for pod in expired:
            self.recorder.event(
                pod,
                WARNING,
                "NotDeleted",
                f"Pod was expected by PDB {namespace_of(pdb)}/{meta(pdb).get('name')} to be deleted but it wasn't",
            )
        status = new_status(pdb, healthy, desired, expected, kept, now)
        await self.write_status(PDBS, pdb, status)
        if recheck is not None:
            self.queue.add_after(f"{namespace_of(pdb)}/{meta(pdb).get('name')}", max(0.0, recheck - now))

    async def fail_safe(self, pdb: Obj, message: str) -> None:
        status = deep_copy(pdb.get("status") or {})
        status["disruptionsAllowed"] = 0
        disruption.set_disruption_allowed_condition(status, self.ctx.clock(), disruption.SYNC_FAILED, message)
        try:
            await self.write_status(PDBS, pdb, status)
        except errors.StatusError as exc:
            log.warning("disruption: fail-safe status of %s not written: %s", meta(pdb).get("name"), exc)

    # -- the scale of the pods' controllers ------------------------------------------------------

    async def expected_scale(self, pods: list[Obj]) -> tuple[int, list[str]]:
        """Sum of the scales of the controllers of ``pods`` (each counted once) and the names of
        the pods without a controller."""
        scales: dict[str, int] = {}
        seen: set[str] = set()
        unmanaged: list[str] = []
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                unmanaged.append(meta(pod).get("name", ""))
                continue
            if ref.get("uid") in seen:
                continue
            found = await self.find_controller(ref, namespace_of(pod))
            if found is None:
                raise NoController(f'found no controllers for pod "{meta(pod).get("name")}"')
            seen.add(str(ref.get("uid")))
            scales[found[0]] = found[1]
        return sum(scales.values()), unmanaged

    def _cached(self, inf: Any, namespace: str, ref: dict[str, Any]) -> Obj | None:
        obj = inf.store.get(f"{namespace}/{ref.get('name')}")
        if obj is None or uid_of(obj) != ref.get("uid"):
            return None
        return obj

    async def find_controller(self, ref: dict[str, Any], namespace: str) -> tuple[str, int] | None:
        """(uid, scale) of the controller ``ref`` names: the finders of Kubernetes in order."""
        group = str(ref.get("apiVersion") or "").rpartition("/")[0]
        kind = ref.get("kind")
        if kind == "ReplicaSet" and group == "apps":
            rs = self._cached(self.replica_sets, namespace, ref)
            if rs is None:
                return None
            owner = controller_ref(rs)
            if owner is not None and owner.get("kind") == "Deployment":
                dep = self._cached(self.deployments, namespace, owner)
                if dep is None:
                    return None
                return uid_of(dep), _replicas(dep)
            return uid_of(rs), _replicas(rs)
        if kind == "StatefulSet" and group == "apps":
            sts = self._cached(self.stateful_sets, namespace, ref)
            return None if sts is None else (uid_of(sts), _replicas(sts))
        info = by_kind(str(ref.get("apiVersion") or ""), str(kind or ""))
        if info is None or "scale" not in info.subresources:
            return None
        try:
            scale = await self.client.get_scale(info, str(ref.get("name")), namespace)
        except errors.NotFound:
            return None
        if (scale.get("metadata") or {}).get("uid") not in (None, "", ref.get("uid")):
            return None
        return str(ref.get("uid")), int((scale.get("spec") or {}).get("replicas") or 0)


def _replicas(obj: Obj) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)
