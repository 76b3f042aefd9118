"""PodGC: force-delete the pods nobody else will ever clean up, as kube-controller-manager's podgc.

Every ``--pod-gc-period`` (20 s, Kubernetes' gcCheckPeriod) it looks at the pod and node caches:

* **terminated pods over the threshold**: when more than ``--terminated-pod-gc-threshold``
  (12500; 0 turns this off) pods are ``Succeeded``/``Failed``, the surplus is deleted, evicted
  pods first, then oldest first (creation time, then name);
* **terminating pods on an out-of-service node**: a pod being deleted on a node that is not Ready
  and carries the ``node.kubernetes.io/out-of-service`` taint;
* **unscheduled terminating pods**: a pod being deleted that no node was ever bound to;
* **orphaned pods**: a pod bound to a node the cache does not know is put in quarantine (40 s);
  if a GET of the node still answers 404 after it, every pod of that node is marked
  ``Failed`` with the ``DisruptionTarget`` condition (``DeletionByPodGC``, "PodGC: node no
  longer exists") and force-deleted.  A Node deletion starts the quarantine at once.

"Force-delete" is what Kubernetes does: a pod not yet ``Succeeded``/``Failed`` gets
``status.phase: Failed`` first (so a Job replaces it), then it is deleted with grace period 0.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj

from .base import NODES, PODS, Controller, ControllerContext
from .util import (
    NODE_NAME_INDEX,
    creation_ts,
    deep_copy,
    ensure_index,
    get_condition,
    is_deleting,
    name_of,
    namespace_of,
    pod_node_index,
    pod_node_name,
    pod_phase,
    rfc3339,
    uid_of,
)

log = logging.getLogger(__name__)

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
DEFAULT_THRESHOLD = 12500
GC_PERIOD = 20.0
QUARANTINE = 40.0


# -- pure decisions ---------------------------------------------------------------------------------


def is_terminated(pod: Obj) -> bool:
    return pod_phase(pod) not in ("Pending", "Running", "Unknown", "")


def is_evicted(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Failed" and status.get("reason") == "Evicted"


def eviction_order(pods: list[Obj]) -> list[Obj]:
    """Evicted pods first, then by creation time, then by name (byEvictionAndCreationTimestamp)."""
    return sorted(pods, key=lambda p: (not is_evicted(p), creation_ts(p), name_of(p)))


def terminated_to_delete(pods: list[Obj], threshold: int) -> list[Obj]:
    if threshold <= 0:
        return []
    terminated = [p for p in pods if is_terminated(p)]
    count = len(terminated) - threshold
    return eviction_order(terminated)[:count] if count > 0 else []


def node_ready(node: Obj) -> bool:
    return (get_condition(node.get("status") or {}, "Ready") or {}).get("status") == "True"


def terminating_out_of_service(pods: list[Obj], nodes: dict[str, Obj]) -> list[Obj]:
    out = []
    for pod in pods:
        node = nodes.get(pod_node_name(pod))
        if not is_deleting(pod) or node is None or node_ready(node):
            continue
        if any(t.get("key") == OUT_OF_SERVICE for t in (node.get("spec") or {}).get("taints") or []):
            out.append(pod)
    return eviction_order(out)


def unscheduled_terminating(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if is_deleting(p) and not pod_node_name(p)]


def failed_status(pod: Obj, condition: dict[str, Any] | None) -> dict[str, Any] | None:
    """The status to write before deleting ``pod`` (phase Failed, plus ``condition``), or None when
    it is Succeeded/Failed already."""
    if pod_phase(pod) in ("Succeeded", "Failed"):
        return None
    status = deep_copy(pod.get("status") or {})
    status["phase"] = "Failed"
    if condition is not None:
        conds = [c for c in status.get("conditions") or [] if c.get("type") != condition["type"]]
        conds.append(condition)
        status["conditions"] = conds
    return status


# -- the controller ---------------------------------------------------------------------------------


class PodGCController(Controller):
    """The queue holds node names in quarantine; the periodic pass does the rest."""

    name = "pod-garbage-collector"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        extra = ctx.options.extra
        self.threshold = int(extra.get("terminated_pod_gc_threshold", DEFAULT_THRESHOLD))
        self.period = float(extra.get("pod_gc_period", GC_PERIOD))
        self.quarantine = float(extra.get("pod_gc_quarantine", QUARANTINE))
        self.pod_informer = self.informer(PODS, on_change=self._pod_seen)
        self.node_informer = self.informer(NODES, on_delete=self._node_gone)
        ensure_index(self.pod_informer.store, NODE_NAME_INDEX, pod_node_index)

    def _pod_seen(self, pod: Obj) -> None:
        node = pod_node_name(pod)
        if node and node not in self.node_informer.store:
            self.queue.add_after(node, self.quarantine)

    def _node_gone(self, node: Obj) -> None:
        if self.pod_informer.store.by_index(NODE_NAME_INDEX, name_of(node)):
            self.queue.add_after(name_of(node), self.quarantine)

    async def background(self) -> None:
        while True:
            try:
                await self.gc()
            except asyncio.CancelledError:
                raise
            except Exception:  # a pass that failed is retried by the next one
                log.exception("pod GC pass failed")
            await asyncio.sleep(self.period)

    async def gc(self) -> None:
        pods = self.pod_informer.store.list()
        nodes = {name_of(n): n for n in self.node_informer.store.list()}
        for pod in terminated_to_delete(pods, self.threshold):
            await self.force_delete(pod, None, "terminated pods over the threshold")
        for pod in terminating_out_of_service(pods, nodes):
            await self.force_delete(pod, None, "terminating on an out-of-service node")
        for pod in pods:
            node = pod_node_name(pod)
            if node and node not in nodes:
                self.queue.add_after(node, self.quarantine)
        for pod in unscheduled_terminating(pods):
            await self.force_delete(pod, None, "unscheduled and terminating")

    async def reconcile(self, key: str) -> None:
        """``key`` is a node name out of quarantine: its pods go if the node is really gone."""
        if key in self.node_informer.store:
            return
        try:
            await self.client.get(NODES, key)
            return
        except errors.NotFound:
            pass
        condition = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists",
            "lastTransitionTime": rfc3339(self.ctx.clock()),
        }
        for pod in self.pod_informer.store.by_index(NODE_NAME_INDEX, key):
            await self.force_delete(pod, condition, f"orphaned (node {key} no longer exists)")

    async def force_delete(self, pod: Obj, condition: dict[str, Any] | None, why: str) -> None:
        ns, name = namespace_of(pod), name_of(pod)
        log.info("PodGC is force deleting pod %s/%s: %s", ns, name, why)
        status = failed_status(pod, condition)
        try:
            if status is not None:
                await self.client.patch(
                    PODS,
                    name,
                    {"metadata": {"uid": uid_of(pod)}, "status": status},
                    ns,
                    subresource="status",
                )
            await self.client.delete(
                PODS, name, ns, grace_period_seconds=0, preconditions={"uid": uid_of(pod)}
            )
        except (errors.NotFound, errors.Conflict):
            pass
        except errors.StatusError as exc:
            log.warning("PodGC: deleting pod %s/%s failed: %s", ns, name, exc)
