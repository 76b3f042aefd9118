"""The scheduling decision as the scheduler runs it: the same answer as
:func:`scheduler.framework.schedule_reference`, for a fraction of the work.

Where the time goes in the plain rendering, and what this module does instead (the way
kube-scheduler's PreFilter/PreScore phases and its NodeInfo aggregates do it):

* **What the pod asks, once.** :class:`PodState` reads the pod's tolerations, node selector and
  node affinity, ordered requests, preferred terms and spread constraints once per decision,
  instead of once per node and plugin.
* **Plugins with nothing to do are skipped.** No ``nodeSelector``/required node affinity: no
  NodeAffinity filter; no host ports: no NodePorts filter; no pod (anti-)affinity on the pod and
  none on the pods in the cluster: no InterPodAffinity work; no preferred node affinity: its score
  is 0 everywhere.
* **Per-node aggregates instead of walks over every pod.** :class:`~scheduler.framework.NodeInfo`
  keeps the host ports in use, the pods that carry affinity terms, and its pods grouped by
  namespace and by (namespace, controller owner), updated on every add/remove (assume, forget,
  informer events). Counting a pod's siblings for spreading reads the owner group; existing pods'
  anti-affinity reads only the pods that have some.

Every filter keeps kube-scheduler's order and messages, and every score keeps its arithmetic
(integer and floating point alike), so ties and the random tie-break come out the same.
"""

from __future__ import annotations

import math
import random
from typing import Any

from .framework import (
    BALANCED_ALLOCATION,
    ERR_NO_NODES,
    ERR_NODE_AFFINITY,
    ERR_NODE_NAME,
    ERR_NODE_PORTS,
    ERR_NODE_UNSCHEDULABLE,
    ERR_TOO_MANY_PODS,
    INTER_POD_AFFINITY,
    LABEL_HOSTNAME,
    LABEL_ZONE,
    MAX_NODE_SCORE,
    NODE_AFFINITY,
    NODE_NAME,
    NODE_PORTS,
    NODE_RESOURCES_FIT,
    NODE_UNSCHEDULABLE,
    POD_TOPOLOGY_SPREAD,
    SCORE_WEIGHTS,
    TAINT_TOLERATION,
    TAINT_UNSCHEDULABLE,
    AffinityFilterState,
    NodeInfo,
    Obj,
    Placement,
    PodInfo,
    Result,
    Snapshot,
    SpreadConstraint,
    SpreadFilterState,
    SpreadSelector,
    Status,
    Unschedulable,
    _spread_constraints,
    default_normalize,
    default_spread_selector,
    fit_error_message,
    insufficient,
    node_selector_term_matches,
    pod_matches_node_selector_and_affinity,
    pod_tolerations,
    ports_conflict,
    select_host,
    tolerated,
    untolerated_taint_reason,
)


def count_matching(node: NodeInfo, selector: SpreadSelector, namespace: str) -> int:
    """:func:`framework._count_matching` from the node's namespace or owner group."""
    if selector.owner_uid is not None:
        group = node.by_owner.get((namespace, selector.owner_uid))
        if group and selector.labels is None:
            return sum(1 for p in group.values() if not p.terminating)
    else:
        group = node.by_namespace.get(namespace)
    if not group:
        return 0
    return sum(1 for p in group.values() if not p.terminating and selector.matches(p))


class PodState:
    """PreFilter/PreScore: what the plugins need from the pod, computed once per decision."""

    def __init__(self, pi: PodInfo, snapshot: Snapshot) -> None:
        spec = pi.pod.get("spec") or {}
        self.pi = pi
        self.tolerations = pod_tolerations(pi.pod)
        unschedulable = {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}
        self.tolerates_unschedulable = tolerated(self.tolerations, unschedulable)
        self.soft_tolerations = [
            t for t in self.tolerations if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"
        ]
        self.node_name = spec.get("nodeName") or None
        node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
        self.node_affinity_filter = bool(spec.get("nodeSelector")) or (
            node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") is not None
        )
        self.preferred_node_terms = [
            t
            for t in node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
            if int(t.get("weight") or 0) != 0
            and (
                (t.get("preference") or {}).get("matchExpressions")
                or (t.get("preference") or {}).get("matchFields")
            )
        ]
        ordered: list[str] = [r for r in ("cpu", "memory", "ephemeral-storage") if r in pi.requests]
        ordered += sorted(r for r in pi.requests if r not in ("cpu", "memory", "ephemeral-storage"))
        self.wanted = [(r, pi.requests[r], insufficient(r)) for r in ordered if pi.requests[r] > 0]
        self.explicit_spread = bool(spec.get("topologySpreadConstraints"))
        self.soft_spread = _spread_constraints(pi, "ScheduleAnyway")
        if not self.explicit_spread:
            sel = default_spread_selector(pi, snapshot.services)
            if sel is not None:
                self.soft_spread = [
                    SpreadConstraint(3, LABEL_HOSTNAME, sel),
                    SpreadConstraint(5, LABEL_ZONE, sel),
                ]

    def node_included(self, c: SpreadConstraint, node: NodeInfo) -> bool:
        """:func:`framework._node_included` with the pod's node affinity known up front."""
        if (
            c.honor_node_affinity
            and self.node_affinity_filter
            and not pod_matches_node_selector_and_affinity(self.pi.pod, node)
        ):
            return False
        if c.honor_node_taints:
            for taint in node.hard_taints:
                if not tolerated(self.tolerations, taint):
                    return False
        return True


# --------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------


def filter_node(state: PodState, node: NodeInfo) -> Status | None:
    """NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit."""
    pi = state.pi
    if node.unschedulable and not state.tolerates_unschedulable:
        return Status(NODE_UNSCHEDULABLE, [ERR_NODE_UNSCHEDULABLE], resolvable=False)
    if state.node_name and state.node_name != node.name:
        return Status(NODE_NAME, [ERR_NODE_NAME], resolvable=False)
    for taint in node.hard_taints:
        if not tolerated(state.tolerations, taint):
            return Status(TAINT_TOLERATION, [untolerated_taint_reason(taint)], resolvable=False)
    if state.node_affinity_filter and not pod_matches_node_selector_and_affinity(pi.pod, node):
        return Status(NODE_AFFINITY, [ERR_NODE_AFFINITY], resolvable=False)
    if pi.host_ports and node.used_ports:
        for used in node.used_ports:
            for want in pi.host_ports:
                if ports_conflict(want, used):
                    return Status(NODE_PORTS, [ERR_NODE_PORTS])
    reasons: list[str] | None = None
    if len(node.pods) + 1 > node.allowed_pods:
        reasons = [ERR_TOO_MANY_PODS]
    allocatable, requested = node.allocatable, node.requested
    for res, amount, reason in state.wanted:
        if amount > allocatable.get(res, 0) - requested.get(res, 0):
            if reasons is None:
                reasons = []
            reasons.append(reason)
    if reasons:
        return Status(NODE_RESOURCES_FIT, reasons)
    return None


def run_filters(state: PodState, snapshot: Snapshot) -> tuple[list[NodeInfo], dict[str, Status]]:
    pi = state.pi
    spread = SpreadFilterState(pi, snapshot, count_matching)
    affinity = AffinityFilterState(pi, snapshot, indexed=True)
    feasible: list[NodeInfo] = []
    statuses: dict[str, Status] = {}
    for node in snapshot.node_list():
        status = filter_node(state, node)
        if status is None and spread.constraints:
            status = spread.filter(pi, node)
        if status is None and affinity.active:
            status = affinity.filter(node)
        if status is None:
            feasible.append(node)
        else:
            statuses[node.name] = status
    return feasible, statuses


# --------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------


def score_resources(state: PodState, nodes: list[NodeInfo]) -> tuple[dict[str, int], dict[str, int]]:
    """NodeResourcesFit (LeastAllocated) and NodeResourcesBalancedAllocation, in one pass."""
    pi = state.pi
    pod_cpu_nz, pod_mem_nz = pi.nonzero
    pod_cpu, pod_mem = pi.requests.get("cpu", 0), pi.requests.get("memory", 0)
    least: dict[str, int] = {}
    balanced: dict[str, int] = {}
    for node in nodes:
        total = weight = 0
        fracs: list[float] = []
        alloc = node.allocatable.get("cpu", 0)
        if alloc != 0:
            req = node.nonzero_cpu + pod_cpu_nz
            total += 0 if req > alloc else (alloc - req) * MAX_NODE_SCORE // alloc
            weight += 1
            fracs.append(min((node.requested.get("cpu", 0) + pod_cpu) / alloc, 1.0))
        alloc = node.allocatable.get("memory", 0)
        if alloc != 0:
            req = node.nonzero_mem + pod_mem_nz
            total += 0 if req > alloc else (alloc - req) * MAX_NODE_SCORE // alloc
            weight += 1
            fracs.append(min((node.requested.get("memory", 0) + pod_mem) / alloc, 1.0))
        least[node.name] = total // weight if weight else 0
        std = abs(fracs[0] - fracs[1]) / 2 if len(fracs) == 2 else 0.0
        balanced[node.name] = int((1 - std) * MAX_NODE_SCORE)
    return least, balanced


def score_node_affinity(state: PodState, nodes: list[NodeInfo]) -> dict[str, int]:
    terms = state.preferred_node_terms
    if not terms:
        return {n.name: 0 for n in nodes}
    raw = {
        node.name: sum(
            int(t.get("weight") or 0)
            for t in terms
            if node_selector_term_matches(t.get("preference") or {}, node.name, node.labels)
        )
        for node in nodes
    }
    return default_normalize(raw)


def score_taint_toleration(state: PodState, nodes: list[NodeInfo]) -> dict[str, int]:
    tolerations = state.soft_tolerations
    raw = {
        node.name: sum(1 for t in node.soft_taints if not tolerated(tolerations, t))
        if node.soft_taints
        else 0
        for node in nodes
    }
    return default_normalize(raw, reverse=True)


def score_inter_pod_affinity(state: PodState, nodes: list[NodeInfo], snapshot: Snapshot) -> dict[str, int]:
    """The pod's preferred terms against every pod; existing pods' terms only from the pods that
    have some (``NodeInfo.affinity_pods``)."""
    pi = state.pi
    ns_labels = snapshot.namespace_labels
    topo: dict[tuple[str, str], int] = {}

    def add(term: Any, weight: int, target: PodInfo, node: NodeInfo) -> None:
        value = node.labels.get(term.topology_key)
        if value is not None and term.matches(target, ns_labels):
            topo[(term.topology_key, value)] = topo.get((term.topology_key, value), 0) + weight

    has_preferred = bool(pi.preferred_affinity or pi.preferred_anti_affinity)
    for node in snapshot.nodes.values():
        if has_preferred:
            for existing in node.pods.values():
                for t in pi.preferred_affinity:
                    add(t, t.weight, existing, node)
                for t in pi.preferred_anti_affinity:
                    add(t, -t.weight, existing, node)
        for existing in node.affinity_pods.values():
            for t in existing.required_affinity:  # hardPodAffinityWeight 1
                add(t, 1, pi, node)
            for t in existing.preferred_affinity:
                add(t, t.weight, pi, node)
            for t in existing.preferred_anti_affinity:
                add(t, -t.weight, pi, node)
    if not topo:
        return {n.name: 0 for n in nodes}
    raw = {n.name: sum(w for (k, v), w in topo.items() if n.labels.get(k) == v) for n in nodes}
    lo, hi = min(raw.values()), max(raw.values())
    if hi == lo:
        return {k: 0 for k in raw}
    return {k: int(MAX_NODE_SCORE * ((v - lo) / (hi - lo))) for k, v in raw.items()}


def score_topology_spread(state: PodState, nodes: list[NodeInfo], snapshot: Snapshot) -> dict[str, int]:
    """:func:`framework.score_topology_spread`, counting from the nodes' owner/namespace groups
    and only for the domains some feasible node reads."""
    pi = state.pi
    constraints = state.soft_spread
    if not constraints:
        return {n.name: 0 for n in nodes}
    require_all = state.explicit_spread
    keys = [c.topology_key for c in constraints]
    ignored = {n.name for n in nodes if require_all and not all(k in n.labels for k in keys)}
    pair_counts: dict[tuple[str, str], int] = {}
    sizes = [0] * len(constraints)
    for node in nodes:
        if node.name in ignored:
            continue
        for i, c in enumerate(constraints):
            if c.topology_key == LABEL_HOSTNAME:
                continue
            pair = (c.topology_key, node.labels.get(c.topology_key, ""))
            if pair not in pair_counts:
                pair_counts[pair] = 0
                sizes[i] += 1
    for i, c in enumerate(constraints):
        if c.topology_key == LABEL_HOSTNAME:
            sizes[i] = len(nodes) - len(ignored)
    weights = [math.log(s + 2) for s in sizes]
    # Only the domains of feasible nodes that carry the key are ever read below.
    wanted = {
        (c.topology_key, value)
        for node in nodes
        if node.name not in ignored
        for c in constraints
        if c.topology_key != LABEL_HOSTNAME and (value := node.labels.get(c.topology_key)) is not None
    }
    if wanted:
        for node in snapshot.nodes.values():
            if require_all and not all(k in node.labels for k in keys):
                continue
            for c in constraints:
                if c.topology_key == LABEL_HOSTNAME:
                    continue  # hostname domains are counted per node below
                pair = (c.topology_key, node.labels.get(c.topology_key, ""))
                if pair not in wanted or not state.node_included(c, node):
                    continue
                pair_counts[pair] += count_matching(node, c.selector, pi.namespace)
    raw: dict[str, int] = {}
    for node in nodes:
        if node.name in ignored:
            continue
        total = 0.0
        for i, c in enumerate(constraints):
            value = node.labels.get(c.topology_key)
            if c.topology_key == LABEL_HOSTNAME:
                count = count_matching(node, c.selector, pi.namespace)
            elif value is not None:
                count = pair_counts.get((c.topology_key, value), 0)
            else:
                continue
            total += count * weights[i] + (c.max_skew - 1)
        raw[node.name] = round(total)
    out: dict[str, int] = {}
    lo = min(raw.values(), default=0)
    hi = max(raw.values(), default=0)
    for node in nodes:
        if node.name in ignored:
            out[node.name] = 0
        elif hi == 0:
            out[node.name] = MAX_NODE_SCORE
        else:
            out[node.name] = MAX_NODE_SCORE * (hi + lo - raw[node.name]) // hi
    return out


def run_scores(state: PodState, nodes: list[NodeInfo], snapshot: Snapshot) -> dict[str, dict[str, int]]:
    """Plugin -> node -> normalised score (0..100), before weights."""
    least, balanced = score_resources(state, nodes)
    return {
        NODE_RESOURCES_FIT: least,
        BALANCED_ALLOCATION: balanced,
        NODE_AFFINITY: score_node_affinity(state, nodes),
        INTER_POD_AFFINITY: score_inter_pod_affinity(state, nodes, snapshot),
        POD_TOPOLOGY_SPREAD: score_topology_spread(state, nodes, snapshot),
        TAINT_TOLERATION: score_taint_toleration(state, nodes),
    }


# --------------------------------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------------------------------


def schedule(pod: Obj | PodInfo, snapshot: Snapshot, rng: random.Random | None = None) -> Result:
    """Filter, score, select: where ``pod`` should run, or why it cannot run anywhere."""
    pi = pod if isinstance(pod, PodInfo) else PodInfo.of(pod)
    rng = rng or random.Random()
    num_nodes = len(snapshot.nodes)
    if num_nodes == 0:
        return Unschedulable(ERR_NO_NODES, {}, 0)
    state = PodState(pi, snapshot)
    feasible, statuses = run_filters(state, snapshot)
    if not feasible:
        return Unschedulable(fit_error_message(pi.pod, statuses, num_nodes), statuses, num_nodes)
    if len(feasible) == 1:
        return Placement(feasible[0].name, {feasible[0].name: 0}, 1, num_nodes)
    totals = weighted_totals(state, feasible, snapshot)
    return Placement(select_host(totals, rng), totals, len(feasible), num_nodes)


def weighted_totals(state: PodState, nodes: list[NodeInfo], snapshot: Snapshot) -> dict[str, int]:
    """The sum of the weighted scores per node, skipping plugins that give 0 to every node."""
    least, balanced = score_resources(state, nodes)
    w_fit, w_bal = SCORE_WEIGHTS[NODE_RESOURCES_FIT], SCORE_WEIGHTS[BALANCED_ALLOCATION]
    totals = {name: s * w_fit + balanced[name] * w_bal for name, s in least.items()}
    pi = state.pi
    more: list[tuple[str, dict[str, int]]] = [(TAINT_TOLERATION, score_taint_toleration(state, nodes))]
    if state.preferred_node_terms:
        more.append((NODE_AFFINITY, score_node_affinity(state, nodes)))
    if (
        pi.preferred_affinity
        or pi.preferred_anti_affinity
        or any(n.affinity_pods for n in snapshot.nodes.values())
    ):
        more.append((INTER_POD_AFFINITY, score_inter_pod_affinity(state, nodes, snapshot)))
    if state.soft_spread:
        more.append((POD_TOPOLOGY_SPREAD, score_topology_spread(state, nodes, snapshot)))
    for plugin, scores in more:
        weight = SCORE_WEIGHTS[plugin]
        for name, s in scores.items():
            totals[name] += s * weight
    return totals
