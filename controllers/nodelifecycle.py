"""Node lifecycle: notices dead nodes, taints them, and evicts their pods after their toleration.

* **Health.**  A node is healthy while its Lease ``kube-node-lease/<node>`` (or its Ready
  condition's heartbeat) changed within ``--node-monitor-grace-period``, measured on this
  process's monotonic clock from when *we observed* the change (a node first seen gets a full
  grace period).  The periodic monitor (every ``--node-monitor-period``) enqueues nodes whose
  state must change; ``reconcile(node)`` does the writes.
* **Conditions.**  An unhealthy node gets Ready (and the pressure conditions) ``Unknown`` with
  reason ``NodeStatusUnknown``, "Kubelet stopped posting node status.".
* **Taints.**  Ready=Unknown -> ``node.kubernetes.io/unreachable`` NoSchedule + NoExecute;
  Ready=False -> ``node.kubernetes.io/not-ready`` NoSchedule + NoExecute; Ready=True -> neither.
* **Eviction** (the NoExecute taint manager).  A pod on a node with NoExecute taints is deleted at
  once if it does not tolerate one of them, else when the shortest ``tolerationSeconds`` since the
  taint's ``timeAdded`` has passed; a pod with no toleration for the not-ready/unreachable taints
  gets ``--pod-eviction-timeout`` (what Kubernetes' DefaultTolerationSeconds admission adds, 300 s).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.events import NORMAL
from apimachinery.nodematch import tolerates

from .base import LEASES, NODES, PODS, Controller, ControllerContext
from .util import (
    NODE_NAME_INDEX,
    deep_copy,
    ensure_index,
    get_condition,
    is_pod_active,
    meta,
    name_of,
    parse_time,
    pod_node_index,
    rfc3339,
)

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
MANAGED_TAINTS = (UNREACHABLE, NOT_READY)
UNKNOWN_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


# -- pure decisions ---------------------------------------------------------------------------------


def desired_taints(ready_status: str | None) -> list[tuple[str, str]]:
    """(key, effect) pairs the node should carry for its Ready status."""
    if ready_status == "True":
        return []
    key = NOT_READY if ready_status == "False" else UNREACHABLE
    return [(key, "NoSchedule"), (key, "NoExecute")]


def reconcile_taints(
    taints: list[dict[str, Any]], ready_status: str | None, now: float
) -> list[dict[str, Any]]:
    """The node's taints with the managed ones made to match ``ready_status`` (others untouched)."""
    want = desired_taints(ready_status)
    out = [t for t in taints if t.get("key") not in MANAGED_TAINTS or (t.get("key"), t.get("effect")) in want]
    have = {(t.get("key"), t.get("effect")) for t in out}
    for key, effect in want:
        if (key, effect) not in have:
            taint: dict[str, Any] = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = rfc3339(now)
            out.append(taint)
    return out


def eviction_time(pod: Obj, taints: list[dict[str, Any]], default_seconds: float, now: float) -> float | None:
    """When ``pod`` must be evicted from a node with ``taints`` (now or later), or None (never)."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    deadline: float | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        added = parse_time(taint.get("timeAdded")) or now
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            if taint.get("key") in MANAGED_TAINTS:
                seconds: float | None = default_seconds
            else:
                return now
        else:
            bounded = [
                float(t["tolerationSeconds"]) for t in matching if t.get("tolerationSeconds") is not None
            ]
            if len(bounded) < len(matching):
                seconds = None  # tolerated forever by at least one toleration
            else:
                seconds = max(0.0, min(bounded))
        if seconds is not None:
            at = added + seconds
            deadline = at if deadline is None else min(deadline, at)
    return deadline


def unknown_conditions(status: dict[str, Any], now: float) -> dict[str, Any]:
    """The node status with every kubelet-owned condition set Unknown."""
    status = deep_copy(status)
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    for ctype in UNKNOWN_CONDITIONS:
        cond = conds.get(ctype)
        if cond is None:
            conds[ctype] = {
                "type": ctype,
                "status": "Unknown",
                "reason": "NodeStatusNeverUpdated",
                "message": "Kubelet never posted node status.",
                "lastHeartbeatTime": rfc3339(now),
                "lastTransitionTime": rfc3339(now),
            }
        elif cond.get("status") != "Unknown":
            cond.update(
                status="Unknown",
                reason="NodeStatusUnknown",
                message="Kubelet stopped posting node status.",
                lastTransitionTime=rfc3339(now),
            )
    status["conditions"] = list(conds.values())
    return status


# -- the controller ---------------------------------------------------------------------------------


class NodeLifecycleController(Controller):
    name = "node-lifecycle-controller"

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        # node -> (last heartbeat seen, monotonic time we saw it change)
        self.observed: dict[str, tuple[str, float]] = {}
        self.node_informer = self.informer(NODES, on_change=self._node_seen, on_delete=self._node_gone)
        self.lease_informer = self.informer(LEASES, NODE_LEASE_NAMESPACE, on_change=self._lease_seen)
        self.pod_informer = self.informer(PODS, on_change=self._pod_changed)
        ensure_index(self.pod_informer.store, NODE_NAME_INDEX, pod_node_index)

    @property
    def grace(self) -> float:
        return self.ctx.options.node_monitor_grace_period

    def _heartbeat(self, node: str, stamp: str) -> None:
        if not stamp:
            return
        seen = self.observed.get(node)
        if seen is None or seen[0] != stamp:
            self.observed[node] = (stamp, self.ctx.monotonic())

    def _node_seen(self, node: Obj) -> None:
        name = name_of(node)
        ready = get_condition(node.get("status") or {}, "Ready") or {}
        if name not in self.observed:
            self.observed[name] = ("", self.ctx.monotonic())
        if ready.get("status") in ("True", "False"):
            self._heartbeat(name, "node:" + str(ready.get("lastHeartbeatTime") or ""))
        self.enqueue(name)

    def _node_gone(self, node: Obj) -> None:
        self.observed.pop(name_of(node), None)

    def _lease_seen(self, lease: Obj) -> None:
        name = name_of(lease)
        self._heartbeat(name, "lease:" + str((lease.get("spec") or {}).get("renewTime") or ""))
        if name in self.node_informer.store:
            self.enqueue(name)

    def _pod_changed(self, pod: Obj) -> None:
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        if node:
            n = self.node_informer.store.get(node)
            if n is not None and any(
                t.get("effect") == "NoExecute" for t in (n.get("spec") or {}).get("taints") or []
            ):
                self.enqueue(node)

    def healthy(self, node: str) -> bool:
        seen = self.observed.get(node)
        if seen is None:
            return True
        return self.ctx.monotonic() - seen[1] <= self.grace

    async def background(self) -> None:
        """The periodic monitor: enqueue nodes whose health no longer matches their Ready status."""
        while True:
            await asyncio.sleep(self.ctx.options.node_monitor_period)
            self.monitor()

    def monitor(self) -> None:
        for node in self.node_informer.store.list():
            name = name_of(node)
            ready = (get_condition(node.get("status") or {}, "Ready") or {}).get("status")
            if not self.healthy(name) and ready != "Unknown":
                self.enqueue(name)

    async def reconcile(self, key: str) -> None:
        node = self.node_informer.store.get(key)
        if node is None:
            return
        now = self.ctx.clock()
        status = node.get("status") or {}
        ready = (get_condition(status, "Ready") or {}).get("status")
        if not self.healthy(key) and ready != "Unknown":
            updated = deep_copy(node)
            updated["status"] = unknown_conditions(status, now)
            log.info("node %s: lease not renewed for %.0fs; marking Ready=Unknown", key, self.grace)
            self.recorder.event(node, NORMAL, "NodeNotReady", f"Node {key} status is now: NodeNotReady")
            await self.client.update_status(NODES, updated)
            return  # the update comes back through the informer
        taints = list((node.get("spec") or {}).get("taints") or [])
        want = reconcile_taints(taints, ready, now)
        if want != taints:
            updated = deep_copy(node)
            updated.setdefault("spec", {})["taints"] = want or None
            if not want:
                updated["spec"].pop("taints")
            log.info(
                "node %s: Ready=%s; taints now %s", key, ready, [f"{t['key']}:{t['effect']}" for t in want]
            )
            await self.client.update(NODES, updated)
            return
        await self.evict(key, taints, now)

    async def evict(self, node: str, taints: list[dict[str, Any]], now: float) -> None:
        if not any(t.get("effect") == "NoExecute" for t in taints):
            return
        next_check: float | None = None
        for pod in self.pod_informer.store.by_index(NODE_NAME_INDEX, node):
            if not is_pod_active(pod):
                continue
            at = eviction_time(pod, taints, self.ctx.options.pod_eviction_timeout, now)
            if at is None:
                continue
            if at <= now:
                log.info(
                    "node %s: evicting pod %s/%s (NoExecute taint)",
                    node,
                    meta(pod).get("namespace"),
                    name_of(pod),
                )
                self.recorder.event(
                    pod,
                    NORMAL,
                    "TaintManagerEviction",
                    f"Marking for deletion Pod {meta(pod).get('namespace')}/{name_of(pod)}",
                )
                try:
                    await self.client.delete(PODS, name_of(pod), meta(pod).get("namespace"))
                except errors.NotFound:
                    pass
            else:
                next_check = at if next_check is None else min(next_check, at)
        if next_check is not None:
            self.queue.add_after(node, max(0.1, next_check - now))
