"""The scheduling decision rendered plainly: every plugin on every node, walking every pod.

:func:`schedule_reference` runs the filters one by one in kube-scheduler's order on every node,
counts pods for spreading and pod affinity by walking all of them (no per-node aggregates), and
computes every score plugin even where it gives 0 everywhere. ``test_scheduler_equivalence``
holds :func:`scheduler.fastpath.schedule` -- what the scheduler runs -- to the same answers.
What both need (the pod and node model, the PreFilter states, the arithmetic of the spreading and
pod affinity scores) is shared from ``scheduler``; only the shortcuts differ.
"""

from __future__ import annotations

import math
import random
from collections import Counter

from apimachinery.nodematch import matches_node, preferred_node_terms, preferred_weight, tolerated
from scheduler import framework as fw
from scheduler.fastpath import (
    AffinityFilterState,
    PodState,
    SpreadFilterState,
    SpreadSelector,
    default_normalize,
    normalize_spread,
    normalize_topology,
    pod_tolerations,
    schedule,
)
from scheduler.framework import (
    AffinityTerm,
    NodeInfo,
    Obj,
    PodInfo,
    Result,
    Snapshot,
    Status,
    insufficient,
    ports_conflict,
    untolerated_taint_reason,
)

# --------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------


def filter_node_unschedulable(pod: PodInfo, node: NodeInfo) -> Status | None:
    if not node.unschedulable:
        return None
    taint = {"key": fw.TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}
    if tolerated(pod_tolerations(pod.pod), taint):
        return None
    return Status(fw.NODE_UNSCHEDULABLE, [fw.ERR_NODE_UNSCHEDULABLE], resolvable=False)


def filter_node_name(pod: PodInfo, node: NodeInfo) -> Status | None:
    wanted = (pod.pod.get("spec") or {}).get("nodeName")
    if wanted and wanted != node.name:
        return Status(fw.NODE_NAME, [fw.ERR_NODE_NAME], resolvable=False)
    return None


def filter_taints(pod: PodInfo, node: NodeInfo) -> Status | None:
    tolerations = pod_tolerations(pod.pod)
    for taint in node.taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not tolerated(tolerations, taint):
            return Status(fw.TAINT_TOLERATION, [untolerated_taint_reason(taint)], resolvable=False)
    return None


def filter_node_affinity(pod: PodInfo, node: NodeInfo) -> Status | None:
    if matches_node(pod.pod.get("spec") or {}, node.name, node.labels):
        return None
    return Status(fw.NODE_AFFINITY, [fw.ERR_NODE_AFFINITY], resolvable=False)


def filter_node_ports(pod: PodInfo, node: NodeInfo) -> Status | None:
    if not pod.host_ports:
        return None
    for other in node.pods.values():
        for used in other.host_ports:
            if any(ports_conflict(want, used) for want in pod.host_ports):
                return Status(fw.NODE_PORTS, [fw.ERR_NODE_PORTS])
    return None


def filter_resources(pod: PodInfo, node: NodeInfo) -> Status | None:
    """``noderesources.fitsRequest``: every shortfall is one reason ("Insufficient cpu", ...)."""
    reasons: list[str] = []
    if len(node.pods) + 1 > node.allowed_pods:
        reasons.append(fw.ERR_TOO_MANY_PODS)
    ordered: list[str] = [r for r in ("cpu", "memory", "ephemeral-storage") if r in pod.requests]
    ordered += sorted(r for r in pod.requests if r not in ("cpu", "memory", "ephemeral-storage"))
    for res in ordered:
        want = pod.requests[res]
        if want <= 0:
            continue
        free = node.allocatable.get(res, 0) - node.requested.get(res, 0)
        if want > free:
            reasons.append(insufficient(res))
    if reasons:
        return Status(fw.NODE_RESOURCES_FIT, reasons)
    return None


FILTERS = (
    filter_node_unschedulable,
    filter_node_name,
    filter_taints,
    filter_node_affinity,
    filter_node_ports,
    filter_resources,
)


def count_plain(node: NodeInfo, selector: SpreadSelector, namespace: str) -> int:
    return sum(
        1
        for p in node.pods.values()
        if p.namespace == namespace and not p.terminating and selector.matches(p)
    )


def run_filters(state: PodState, snapshot: Snapshot) -> tuple[list[NodeInfo], dict[str, Status]]:
    """Every node through every filter; the first that fails gives the node's status."""
    pi = state.pi
    spread = SpreadFilterState(state, snapshot, count_plain)
    affinity = AffinityFilterState(pi, snapshot, indexed=False)
    statuses: dict[str, Status] = {}
    for node in snapshot.node_list():
        status = next((s for f in FILTERS if (s := f(pi, node)) is not None), None)
        status = status or spread.filter(pi, node) or affinity.filter(node)
        if status is not None:
            statuses[node.name] = status
    return [n for n in snapshot.node_list() if n.name not in statuses], statuses


# --------------------------------------------------------------------------------------------------
# Scores (each 0..100 per node, after normalisation)
# --------------------------------------------------------------------------------------------------


def _fractions(pod: PodInfo, node: NodeInfo, nonzero: bool) -> list[tuple[int, int]]:
    """(requested including the pod, allocatable) for cpu and memory; nodes without a resource skip it."""
    out = []
    for res in ("cpu", "memory"):
        alloc = node.allocatable.get(res, 0)
        if alloc == 0:
            continue
        if nonzero:
            req = node.nonzero_cpu + pod.nonzero[0] if res == "cpu" else node.nonzero_mem + pod.nonzero[1]
        else:
            req = node.requested.get(res, 0) + pod.requests.get(res, 0)
        out.append((req, alloc))
    return out


def score_least_allocated(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, int]:
    out = {}
    for node in nodes:
        total = weight = 0
        for req, alloc in _fractions(pod, node, nonzero=True):
            total += 0 if req > alloc else (alloc - req) * fw.MAX_NODE_SCORE // alloc
            weight += 1
        out[node.name] = total // weight if weight else 0
    return out


def score_balanced_allocation(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, int]:
    out = {}
    for node in nodes:
        fracs = [min(req / alloc, 1.0) for req, alloc in _fractions(pod, node, nonzero=False)]
        std = abs(fracs[0] - fracs[1]) / 2 if len(fracs) == 2 else 0.0  # cpu and memory only
        out[node.name] = int((1 - std) * fw.MAX_NODE_SCORE)
    return out


def score_node_affinity(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, int]:
    terms = preferred_node_terms(pod.pod.get("spec") or {})
    raw = {}
    for node in nodes:
        raw[node.name] = preferred_weight(terms, node.name, node.labels)
    return default_normalize(raw)


def score_taint_toleration(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, int]:
    tolerations = [
        t for t in pod_tolerations(pod.pod) if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"
    ]
    raw = {}
    for node in nodes:
        raw[node.name] = sum(
            1 for t in node.taints if t.get("effect") == "PreferNoSchedule" and not tolerated(tolerations, t)
        )
    return default_normalize(raw, reverse=True)


def score_inter_pod_affinity(pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> dict[str, int]:
    """Every pod on every node: the incoming pod's preferred terms against it, and its terms (required
    with weight 1, preferred) against the incoming pod, summed per topology pair."""
    topo: Counter[tuple[str, str]] = Counter()
    for node in snapshot.nodes.values():
        for other in node.pods.values():
            weighed: list[tuple[AffinityTerm, int, PodInfo]] = [
                *((t, t.weight, other) for t in pod.preferred_affinity),
                *((t, -t.weight, other) for t in pod.preferred_anti_affinity),
                *((t, 1, pod) for t in other.required_affinity),
                *((t, t.weight, pod) for t in other.preferred_affinity),
                *((t, -t.weight, pod) for t in other.preferred_anti_affinity),
            ]
            for term, weight, target in weighed:
                if term.topology_key in node.labels and term.matches(target, snapshot.namespace_labels):
                    topo[(term.topology_key, node.labels[term.topology_key])] += weight
    return normalize_topology(topo, nodes)


def score_topology_spread(state: PodState, nodes: list[NodeInfo], snapshot: Snapshot) -> dict[str, int]:
    """Per feasible node and constraint: the matching pods in its domain, counted over every node of
    the cluster, weighted by log(number of domains among the feasible nodes + 2)."""
    constraints = state.soft_spread
    keys = [c.topology_key for c in constraints]

    def counted(node: NodeInfo) -> bool:
        return not state.explicit_spread or all(k in node.labels for k in keys)

    scored = [n for n in nodes if counted(n)] if constraints else []
    raw: dict[str, int] = {}
    for node in scored:
        total = 0.0
        for c in constraints:
            key = c.topology_key
            if key == fw.LABEL_HOSTNAME:
                domains = len(scored)
                count = count_plain(node, c.selector, state.pi.namespace)
            elif key in node.labels:
                domains = len({n.labels.get(key, "") for n in scored})
                count = sum(
                    count_plain(n, c.selector, state.pi.namespace)
                    for n in snapshot.nodes.values()
                    if counted(n) and n.labels.get(key, "") == node.labels[key] and state.node_included(c, n)
                )
            else:
                continue
            total += count * math.log(domains + 2) + (c.max_skew - 1)
        raw[node.name] = round(total)
    return normalize_spread(raw, nodes) if constraints else {n.name: 0 for n in nodes}


def all_totals(state: PodState, nodes: list[NodeInfo], snapshot: Snapshot) -> dict[str, int]:
    """Every score plugin on every node, weighted and summed."""
    pi = state.pi
    per_plugin = {
        fw.NODE_RESOURCES_FIT: score_least_allocated(pi, nodes),
        fw.BALANCED_ALLOCATION: score_balanced_allocation(pi, nodes),
        fw.NODE_AFFINITY: score_node_affinity(pi, nodes),
        fw.INTER_POD_AFFINITY: score_inter_pod_affinity(pi, nodes, snapshot),
        fw.POD_TOPOLOGY_SPREAD: score_topology_spread(state, nodes, snapshot),
        fw.TAINT_TOLERATION: score_taint_toleration(pi, nodes),
    }
    totals = {n.name: 0 for n in nodes}
    for plugin, scores in per_plugin.items():
        for name, s in scores.items():
            totals[name] += s * fw.SCORE_WEIGHTS[plugin]
    return totals


def schedule_reference(pod: Obj | PodInfo, snapshot: Snapshot, rng: random.Random | None = None) -> Result:
    return schedule(pod, snapshot, rng, filters=run_filters, totals=all_totals)
