"""The DaemonSet controller: one pod on every eligible node.

``reconcile(namespace/name)``, after Kubernetes' ``DaemonSetsController.syncDaemonSet``:

* a node is *eligible* when the pod template's ``nodeSelector`` and required node affinity match
  it and every ``NoSchedule``/``NoExecute`` taint is tolerated, counting the tolerations Kubernetes
  adds to daemon pods (not-ready and unreachable ``NoExecute``; disk-, memory-, pid-pressure and
  unschedulable ``NoSchedule``; network-unavailable for ``hostNetwork``). A pod already on a node
  may *continue* there unless a ``NoExecute`` taint is not tolerated;
* missing pods are created (slow-start batches) with a required node affinity
  ``matchFields metadata.name In [node]`` — the scheduler binds them, as in Kubernetes; extra pods
  on a node (all but the oldest), failed pods and pods on nodes that are not eligible (or gone) are
  deleted; expectations keep a lagging cache from acting twice;
* ``RollingUpdate``: pods whose ``controller-revision-hash`` is not the template's hash are
  deleted — unavailable ones at once, available ones while fewer than ``maxUnavailable``
  (number or percent of desiredNumberScheduled, rounded up) daemon pods are unavailable; the
  replacement is created on the next pass. ``OnDelete`` replaces only pods deleted by others;
* history: each distinct template is a ControllerRevision ``<name>-<hash>`` labelled with the hash
  the pods carry (``history.py``), kept on the controller's history queue;
* status: desiredNumberScheduled, currentNumberScheduled, numberMisscheduled, numberReady,
  updatedNumberScheduled, numberAvailable, numberUnavailable, observedGeneration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from apimachinery import errors
from apimachinery.client import Obj
from apimachinery.informer import object_key, split_key
from apimachinery.nodematch import matches_node, tolerates, untolerated_taint
from apimachinery.resources import kind_info

from .base import NODES, ControllerContext, OwnerController
from .deploymentutil import compute_hash
from .history import HistoryKeeper, revision_name
from .podcontrol import pod_from_template
from .util import (
    creation_ts,
    deep_copy,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    labels_of,
    meta,
    name_of,
    new_controller_ref,
    pod_node_name,
    pod_phase,
    scaled_value,
    uid_of,
)

log = logging.getLogger(__name__)

DAEMON_SETS = kind_info("apps/v1", "DaemonSet")

REVISION_LABEL = "controller-revision-hash"

DEFAULT_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
NETWORK_UNAVAILABLE = {
    "key": "node.kubernetes.io/network-unavailable",
    "operator": "Exists",
    "effect": "NoSchedule",
}


# -- pure decisions ---------------------------------------------------------------------------------


def daemon_tolerations(template_spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The template's tolerations plus the defaults Kubernetes adds to daemon pods."""
    tols = [dict(t) for t in template_spec.get("tolerations") or []]
    extra = list(DEFAULT_TOLERATIONS) + ([NETWORK_UNAVAILABLE] if template_spec.get("hostNetwork") else [])
    for t in extra:
        if not any(tolerates(have, t) and have.get("effect") == t["effect"] for have in tols):
            tols.append(dict(t))
    return tols


def node_should_run(template_spec: Mapping[str, Any], node: Obj) -> tuple[bool, bool]:
    """(should run, should continue running) — NodeShouldRunDaemonPod."""
    if not matches_node(template_spec, name_of(node), labels_of(node)):
        return False, False
    tols = daemon_tolerations(template_spec)
    taints = (node.get("spec") or {}).get("taints") or []
    return untolerated_taint(tols, taints) is None, untolerated_taint(tols, taints, ("NoExecute",)) is None


def template_hash(ds: Obj) -> str:
    spec = ds.get("spec") or {}
    return compute_hash(spec.get("template") or {}, (ds.get("status") or {}).get("collisionCount"))


def live_revisions(ds: Obj, pods: list[Obj]) -> set[str]:
    """The revisions still in use: the current template's and those of the daemon pods."""
    names = {revision_name(name_of(ds), template_hash(ds))}
    names.update(
        revision_name(name_of(ds), labels_of(p)[REVISION_LABEL])
        for p in pods
        if labels_of(p).get(REVISION_LABEL)
    )
    return names


def target_node(pod: Obj) -> str:
    """The node a daemon pod is for: its nodeName, else the node of its matchFields affinity."""
    node = pod_node_name(pod)
    if node:
        return node
    required = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if (
                f.get("key") == "metadata.name"
                and f.get("operator") == "In"
                and len(f.get("values") or []) == 1
            ):
                return str(f["values"][0])
    return ""


def with_node_affinity(spec: dict[str, Any], node_name: str) -> dict[str, Any]:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: pin the pod to one node by ``matchFields``."""
    spec = deep_copy(spec)
    field = {"key": "metadata.name", "operator": "In", "values": [node_name]}
    affinity = spec.setdefault("affinity", {})
    na = affinity.setdefault("nodeAffinity", {})
    required = na.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        terms = [{"matchFields": [field]}]
    else:
        terms = [{**t, "matchFields": [field]} for t in terms]
    na["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}
    spec["tolerations"] = daemon_tolerations(spec)
    return spec


def daemon_pod(ds: Obj, node_name: str, revision: str) -> Obj:
    template = deep_copy((ds.get("spec") or {}).get("template") or {})
    template["spec"] = with_node_affinity(template.get("spec") or {}, node_name)
    tmeta = template.setdefault("metadata", {})
    tmeta.setdefault("labels", {})[REVISION_LABEL] = revision
    return pod_from_template(ds, template, new_controller_ref(ds, "apps/v1", "DaemonSet"))


class DsPlan:
    def __init__(self) -> None:
        self.create_on: list[str] = []
        self.delete: list[Obj] = []
        self.status: dict[str, Any] = {}


def plan_daemonset(ds: Obj, nodes: Iterable[Obj], pods: list[Obj], now: float) -> DsPlan:
    spec = ds.get("spec") or {}
    tspec = (spec.get("template") or {}).get("spec") or {}
    revision = template_hash(ds)
    min_ready = int(spec.get("minReadySeconds") or 0)
    plan = DsPlan()
    by_node: dict[str, list[Obj]] = {}
    for pod in pods:
        by_node.setdefault(target_node(pod), []).append(pod)
    desired = current = misscheduled = ready = updated = available = 0
    node_names: set[str] = set()
    wanted_pods: dict[str, Obj] = {}  # node -> the pod kept there
    for node in nodes:
        nname = name_of(node)
        node_names.add(nname)
        run, cont = node_should_run(tspec, node)
        node_pods = [p for p in by_node.get(nname, []) if not is_deleting(p)]
        failed = [p for p in node_pods if pod_phase(p) == "Failed"]
        live = [p for p in node_pods if pod_phase(p) != "Failed"]
        if run:
            desired += 1
        if node_pods and (run or cont):
            current += 1
        elif node_pods:
            misscheduled += 1
        if run and not by_node.get(nname):
            plan.create_on.append(nname)
        elif cont or run:
            plan.delete.extend(failed)
            live.sort(key=lambda p: (creation_ts(p), name_of(p)))
            plan.delete.extend(live[1:])
            if live:
                wanted_pods[nname] = live[0]
            elif failed and run and not any(is_deleting(p) for p in by_node.get(nname, [])):
                pass  # recreated once the failed pod is gone
        else:
            plan.delete.extend(node_pods)
    for nname, node_pods in by_node.items():
        if nname not in node_names:
            plan.delete.extend(p for p in node_pods if not is_deleting(p))
    for pod in wanted_pods.values():
        if is_pod_ready(pod):
            ready += 1
        if is_pod_available(pod, min_ready, now):
            available += 1
        if labels_of(pod).get(REVISION_LABEL) == revision:
            updated += 1

    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        max_unavailable = scaled_value(
            (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1), desired, round_up=True
        )
        max_unavailable = max(max_unavailable, 0)
        old_available: list[Obj] = []
        unavailable = desired - available
        for pod in wanted_pods.values():
            if labels_of(pod).get(REVISION_LABEL) == revision:
                continue
            if is_pod_available(pod, min_ready, now):
                old_available.append(pod)
            else:
                plan.delete.append(pod)  # unavailable already: replacing it costs nothing
        old_available.sort(key=lambda p: name_of(p))
        for pod in old_available:
            if unavailable >= max_unavailable:
                break
            plan.delete.append(pod)
            unavailable += 1

    plan.status = {
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
        "numberUnavailable": max(0, desired - available),
        "observedGeneration": meta(ds).get("generation", 1),
    }
    return plan


# -- the controller ---------------------------------------------------------------------------------


class DaemonSetController(OwnerController):
    name = "daemonset-controller"
    owner_info = DAEMON_SETS

    def __init__(self, ctx: ControllerContext, **kwargs: Any) -> None:
        super().__init__(ctx, **kwargs)
        self.node_informer = self.informer(NODES)
        self.node_informer.add_event_handler(self._enqueue_all, self._node_updated, self._enqueue_all)
        self.history = HistoryKeeper(self, template_hash, live_revisions)

    def enqueue(self, obj: Obj | str) -> None:
        super().enqueue(obj)
        self.history.queue.add(obj if isinstance(obj, str) else object_key(obj))

    async def background(self) -> None:
        await self.history.run(self.ctx.options.workers)

    def _enqueue_all(self, node: Obj) -> None:
        for key in self.owner_informer.store.keys():
            self.enqueue(key)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if labels_of(old) != labels_of(new) or (old.get("spec") or {}) != (new.get("spec") or {}):
            self._enqueue_all(new)

    async def reconcile(self, key: str) -> None:
        namespace, _ = split_key(key)
        ds = self.owner_informer.store.get(key)
        if ds is None:
            self.expectations.delete(key)
            return
        pods = await self.claim(ds, self.owned_informer.store.by_index("namespace", namespace or ""))
        now = self.ctx.clock()
        plan = plan_daemonset(ds, self.node_informer.store.list(), pods, now)
        first_error: errors.StatusError | None = None
        if self.expectations.satisfied(key) and not is_deleting(ds):
            first_error = await self._manage(key, ds, plan)
        status = deep_copy(ds.get("status") or {})
        status.update(plan.status)
        await self.write_status(DAEMON_SETS, ds, status)
        if first_error is not None:
            raise first_error

    async def _manage(self, key: str, ds: Obj, plan: DsPlan) -> errors.StatusError | None:
        first: errors.StatusError | None = None
        victims = list({uid_of(p): p for p in plan.delete}.values())
        if victims:
            log.info("%s: deleting %d daemon pods", key, len(victims))
            first = await self.delete_owned(key, ds, victims)
        if plan.create_on:
            revision = template_hash(ds)
            log.info("%s: creating daemon pods for %d nodes", key, len(plan.create_on))
            bodies = [daemon_pod(ds, n, revision) for n in plan.create_on]
            error = await self.create_owned(key, ds, bodies)
            first = first or error
        return first
