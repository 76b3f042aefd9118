"""The scheduling decision: kube-scheduler's default plugins over a snapshot, and the placement.

``schedule(pod, snapshot)`` runs kube-scheduler's default filter plugins over every node, in
kube-scheduler's order (the first failing plugin decides a node's status):

==================  ===========================================================================
NodeUnschedulable   ``spec.unschedulable`` (``kubectl cordon``) unless the pod tolerates
                    ``node.kubernetes.io/unschedulable:NoSchedule``
NodeName            ``spec.nodeName`` names another node
TaintToleration     an untolerated ``NoSchedule``/``NoExecute`` taint; a node whose Ready
                    condition is not True also carries ``not-ready``/``unreachable:NoSchedule``
NodeAffinity        ``nodeSelector`` and required node affinity (In, NotIn, Exists,
                    DoesNotExist, Gt, Lt; ``matchFields`` on ``metadata.name``)
NodePorts           a ``hostPort`` already taken (same protocol and port, same or wildcard IP)
NodeResourcesFit    requests (init containers' max, sidecars, overhead) against allocatable
                    minus what the node's pods request; the pod count
PodTopologySpread   ``whenUnsatisfiable: DoNotSchedule`` constraints (maxSkew, minDomains)
InterPodAffinity    required pod affinity/anti-affinity, and existing pods' anti-affinity
==================  ===========================================================================

then scores the feasible nodes with the default score plugins and weights (NodeResourcesFit
LeastAllocated 1, NodeResourcesBalancedAllocation 1, NodeAffinity 1, InterPodAffinity 1,
PodTopologySpread 2 -- including the system default spreading of a pod's siblings --,
TaintToleration 3) and picks the highest total, breaking ties with the injected random source.

The work per decision is kept small the way kube-scheduler's PreFilter/PreScore phases and its
NodeInfo aggregates keep it:

* **What the pod asks, once.** :class:`PodState` reads the pod's tolerations, node selector and
  node affinity, ordered requests, preferred terms and spread constraints once per decision.
* **Plugins with nothing to do are skipped.** No ``nodeSelector``/required node affinity: no
  NodeAffinity filter; no host ports: no NodePorts filter; no pod (anti-)affinity on the pod and
  none on the pods in the cluster: no InterPodAffinity work; a score that is 0 everywhere is not
  computed.
* **Per-node aggregates instead of walks over every pod.** :class:`~scheduler.framework.NodeInfo`
  keeps the host ports in use, the pods that carry affinity terms, and its pods grouped by
  namespace and by (namespace, controller owner). Counting a pod's siblings for spreading reads
  the owner group; existing pods' anti-affinity reads only the pods that have some.

``tests/unit/scheduler_reference.py`` renders the plugins plainly (every plugin on every node,
walking every pod; the ``counter`` and ``indexed`` parameters below are its way in), and
``tests/unit/test_scheduler_equivalence.py`` holds this module to the same answers.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from apimachinery.nodematch import (
    matches_node,
    preferred_node_terms,
    preferred_weight,
    tolerated,
    untolerated_taint,
)
from apimachinery.selectors import LabelSelector, new_requirement

from .framework import (
    BALANCED_ALLOCATION,
    ERR_AFFINITY,
    ERR_ANTI_AFFINITY,
    ERR_EXISTING_ANTI_AFFINITY,
    ERR_NO_NODES,
    ERR_NODE_AFFINITY,
    ERR_NODE_NAME,
    ERR_NODE_PORTS,
    ERR_NODE_UNSCHEDULABLE,
    ERR_SPREAD,
    ERR_SPREAD_LABEL,
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
    AffinityTerm,
    NodeInfo,
    Obj,
    Placement,
    PodInfo,
    Result,
    Snapshot,
    Status,
    Unschedulable,
    fit_error_message,
    insufficient,
    ports_conflict,
    safe_selector,
    untolerated_taint_reason,
    with_match_label_keys,
)


def pod_tolerations(pod: Mapping[str, Any]) -> list[Obj]:
    return [t for t in (pod.get("spec") or {}).get("tolerations") or [] if isinstance(t, dict)]


def default_normalize(scores: dict[str, int], reverse: bool = False) -> dict[str, int]:
    """``helper.DefaultNormalizeScore``: scale to 0..100 by the maximum (optionally reversed)."""
    top = max(scores.values(), default=0)
    if top == 0:
        return {k: (MAX_NODE_SCORE if reverse else 0) for k in scores}
    out = {}
    for k, v in scores.items():
        s = MAX_NODE_SCORE * v // top
        out[k] = MAX_NODE_SCORE - s if reverse else s
    return out


# -- PodTopologySpread -------------------------------------------------------------------------------


@dataclass
class SpreadSelector:
    """Which pods a spread constraint counts: a label selector, and/or the pod's controller owner."""

    labels: LabelSelector | None = None
    owner_uid: str | None = None

    def matches(self, pi: PodInfo) -> bool:
        if self.labels is not None and not self.labels.matches(pi.labels):
            return False
        if self.owner_uid is not None and pi.owner_uid != self.owner_uid:
            return False
        return True


@dataclass
class SpreadConstraint:
    max_skew: int
    topology_key: str
    selector: SpreadSelector
    min_domains: int = 1
    honor_node_affinity: bool = True
    honor_node_taints: bool = False


def spread_constraints(pod: PodInfo, action: str) -> list[SpreadConstraint]:
    out: list[SpreadConstraint] = []
    for c in (pod.pod.get("spec") or {}).get("topologySpreadConstraints") or []:
        if c.get("whenUnsatisfiable", "DoNotSchedule") != action:
            continue
        sel = safe_selector(c.get("labelSelector"))
        sel = with_match_label_keys(sel, c.get("matchLabelKeys") or (), pod.labels, "in")
        out.append(
            SpreadConstraint(
                max_skew=int(c.get("maxSkew") or 1),
                topology_key=str(c.get("topologyKey") or ""),
                selector=SpreadSelector(sel),
                min_domains=int(c.get("minDomains") or 1),
                honor_node_affinity=c.get("nodeAffinityPolicy", "Honor") == "Honor",
                honor_node_taints=c.get("nodeTaintsPolicy", "Ignore") == "Honor",
            )
        )
    return out


def default_spread_selector(pod: PodInfo, services: Iterable[Obj]) -> SpreadSelector | None:
    """The pods that count as siblings for the system default spreading (SelectorSpread's rule):
    those of the same controller owner, matching every Service that selects this pod."""
    merged: dict[str, str] = {}
    for svc in services:
        if (svc.get("metadata") or {}).get("namespace") != pod.namespace:
            continue
        sel = (svc.get("spec") or {}).get("selector") or {}
        if sel and all(pod.labels.get(k) == v for k, v in sel.items()):
            merged.update(sel)
    if not merged and pod.owner_uid is None:
        return None
    labels = (
        LabelSelector([new_requirement(k, "=", [v]) for k, v in sorted(merged.items())]) if merged else None
    )
    return SpreadSelector(labels, pod.owner_uid)


PodCounter = Callable[[NodeInfo, SpreadSelector, str], int]


def count_matching(node: NodeInfo, selector: SpreadSelector, namespace: str) -> int:
    """The pods of ``namespace`` on ``node`` that ``selector`` counts (terminating pods never),
    read from the node's namespace or owner group."""
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
        self.spec = spec
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
        self.preferred_node_terms = preferred_node_terms(spec)
        ordered: list[str] = [r for r in ("cpu", "memory", "ephemeral-storage") if r in pi.requests]
        ordered += sorted(r for r in pi.requests if r not in ("cpu", "memory", "ephemeral-storage"))
        self.wanted = [(r, pi.requests[r], insufficient(r)) for r in ordered if pi.requests[r] > 0]
        self.explicit_spread = bool(spec.get("topologySpreadConstraints"))
        self.soft_spread = spread_constraints(pi, "ScheduleAnyway")
        if not self.explicit_spread:
            sel = default_spread_selector(pi, snapshot.services)
            if sel is not None:
                self.soft_spread = [
                    SpreadConstraint(3, LABEL_HOSTNAME, sel),
                    SpreadConstraint(5, LABEL_ZONE, sel),
                ]

    def matches_node(self, node: NodeInfo) -> bool:
        """The NodeAffinity filter: ``nodeSelector`` and required node affinity."""
        return not self.node_affinity_filter or matches_node(self.spec, node.name, node.labels)

    def node_included(self, c: SpreadConstraint, node: NodeInfo) -> bool:
        """Whether a spread constraint counts ``node``'s pods (nodeAffinityPolicy, nodeTaintsPolicy)."""
        if c.honor_node_affinity and not self.matches_node(node):
            return False
        return not c.honor_node_taints or untolerated_taint(self.tolerations, node.hard_taints) is None


class SpreadFilterState:
    """``PodTopologySpread`` PreFilter: matching pods per topology domain and the minimum per key.

    ``counter`` counts a node's matching pods (the plain reference walks them all)."""

    def __init__(self, state: PodState, snapshot: Snapshot, counter: PodCounter = count_matching) -> None:
        pod = state.pi
        self.constraints = spread_constraints(pod, "DoNotSchedule")
        self.pair_counts: dict[tuple[str, str], int] = {}
        if not self.constraints:
            return
        keys = [c.topology_key for c in self.constraints]
        for node in snapshot.nodes.values():
            if not all(k in node.labels for k in keys):
                continue
            for c in self.constraints:
                if not state.node_included(c, node):
                    continue
                pair = (c.topology_key, node.labels[c.topology_key])
                self.pair_counts[pair] = self.pair_counts.get(pair, 0) + counter(
                    node, c.selector, pod.namespace
                )
        self.min_per_key: dict[str, int] = {}
        domains: Counter[str] = Counter()
        for (key, _), count in self.pair_counts.items():
            domains[key] += 1
            self.min_per_key[key] = min(self.min_per_key.get(key, count), count)
        self.domains = domains

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status | None:
        for c in self.constraints:
            value = node.labels.get(c.topology_key)
            if value is None:
                return Status(POD_TOPOLOGY_SPREAD, [ERR_SPREAD_LABEL], resolvable=False)
            self_match = 1 if c.selector.matches(pod) else 0
            min_match = self.min_per_key.get(c.topology_key, 0)
            if self.domains.get(c.topology_key, 0) < c.min_domains:
                min_match = 0
            match = self.pair_counts.get((c.topology_key, value), 0)
            if match + self_match - min_match > c.max_skew:
                return Status(POD_TOPOLOGY_SPREAD, [ERR_SPREAD])
        return None


# -- InterPodAffinity ----------------------------------------------------------------------------------


class AffinityFilterState:
    """``InterPodAffinity`` PreFilter: counts per topology pair (key, value)."""

    def __init__(self, pod: PodInfo, snapshot: Snapshot, indexed: bool = True) -> None:
        """``indexed``: visit only what can count -- the nodes' ``affinity_pods`` for existing
        pods' anti-affinity, and every pod only when ``pod`` has required terms of its own
        (False walks every pod, as the plain reference does)."""
        ns_labels = snapshot.namespace_labels
        self.pod = pod
        self.existing_anti: Counter[tuple[str, str]] = Counter()
        self.affinity: Counter[tuple[str, str]] = Counter()
        self.anti: Counter[tuple[str, str]] = Counter()
        own_terms = bool(pod.required_affinity or pod.required_anti_affinity)
        self.active = own_terms
        for node in snapshot.nodes.values():
            for existing in (node.affinity_pods if indexed else node.pods).values():
                for term in existing.required_anti_affinity:
                    value = node.labels.get(term.topology_key)
                    if value is not None and term.matches(pod, ns_labels):
                        self.existing_anti[(term.topology_key, value)] += 1
                        self.active = True
            if indexed and not own_terms:
                continue
            for existing in node.pods.values():
                if pod.required_affinity and all(
                    t.matches(existing, ns_labels) for t in pod.required_affinity
                ):
                    for term in pod.required_affinity:
                        value = node.labels.get(term.topology_key)
                        if value is not None:
                            self.affinity[(term.topology_key, value)] += 1
                for term in pod.required_anti_affinity:
                    value = node.labels.get(term.topology_key)
                    if value is not None and term.matches(existing, ns_labels):
                        self.anti[(term.topology_key, value)] += 1
        self.self_match = all(t.matches(pod, ns_labels) for t in pod.required_affinity)

    def filter(self, node: NodeInfo) -> Status | None:
        if self.existing_anti:
            for pair in node.labels.items():
                if self.existing_anti.get(pair, 0) > 0:
                    return Status(INTER_POD_AFFINITY, [ERR_EXISTING_ANTI_AFFINITY])
        if self.pod.required_affinity:
            pods_exist = True
            for term in self.pod.required_affinity:
                value = node.labels.get(term.topology_key)
                if value is None:
                    return Status(INTER_POD_AFFINITY, [ERR_AFFINITY], resolvable=False)
                if self.affinity.get((term.topology_key, value), 0) <= 0:
                    pods_exist = False
            # The first pod of a group with affinity to itself may go anywhere with the topology.
            if not pods_exist and not (not self.affinity and self.self_match):
                return Status(INTER_POD_AFFINITY, [ERR_AFFINITY], resolvable=False)
        for term in self.pod.required_anti_affinity:
            value = node.labels.get(term.topology_key)
            if value is not None and self.anti.get((term.topology_key, value), 0) > 0:
                return Status(INTER_POD_AFFINITY, [ERR_ANTI_AFFINITY])
        return None


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
    taint = untolerated_taint(state.tolerations, node.hard_taints)
    if taint is not None:
        return Status(TAINT_TOLERATION, [untolerated_taint_reason(taint)], resolvable=False)
    if not state.matches_node(node):
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
    spread = SpreadFilterState(state, snapshot)
    affinity = AffinityFilterState(pi, snapshot)
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
    """NodeResourcesFit (LeastAllocated) and NodeResourcesBalancedAllocation in one pass over cpu
    and memory; a node without allocatable of one of them skips it."""
    pi = state.pi
    least: dict[str, int] = {}
    balanced: dict[str, int] = {}
    for node in nodes:
        total = weight = 0
        fracs: list[float] = []
        nonzero = (("cpu", node.nonzero_cpu + pi.nonzero[0]), ("memory", node.nonzero_mem + pi.nonzero[1]))
        for res, req in nonzero:
            alloc = node.allocatable.get(res, 0)
            if alloc != 0:
                total += 0 if req > alloc else (alloc - req) * MAX_NODE_SCORE // alloc
                weight += 1
                fracs.append(min((node.requested.get(res, 0) + pi.requests.get(res, 0)) / alloc, 1.0))
        least[node.name] = total // weight if weight else 0
        std = abs(fracs[0] - fracs[1]) / 2 if len(fracs) == 2 else 0.0
        balanced[node.name] = int((1 - std) * MAX_NODE_SCORE)
    return least, balanced


def score_node_affinity(state: PodState, nodes: list[NodeInfo]) -> dict[str, int]:
    terms = state.preferred_node_terms
    if not terms:
        return {n.name: 0 for n in nodes}
    return default_normalize({n.name: preferred_weight(terms, n.name, n.labels) for n in nodes})


def score_taint_toleration(state: PodState, nodes: list[NodeInfo]) -> dict[str, int]:
    tolerations = state.soft_tolerations
    raw = {
        node.name: sum(1 for t in node.soft_taints if not tolerated(tolerations, t))
        if node.soft_taints
        else 0
        for node in nodes
    }
    return default_normalize(raw, reverse=True)


def normalize_topology(topo: Mapping[tuple[str, str], int], nodes: list[NodeInfo]) -> dict[str, int]:
    """InterPodAffinity's NormalizeScore: each node sums the weights of its topology pairs, then
    min..max scales to 0..100 (all 0 when every node has the same sum)."""
    if not topo:
        return {n.name: 0 for n in nodes}
    raw = {n.name: sum(w for (k, v), w in topo.items() if n.labels.get(k) == v) for n in nodes}
    lo, hi = min(raw.values()), max(raw.values())
    if hi == lo:
        return {k: 0 for k in raw}
    return {k: int(MAX_NODE_SCORE * ((v - lo) / (hi - lo))) for k, v in raw.items()}


def score_inter_pod_affinity(state: PodState, nodes: list[NodeInfo], snapshot: Snapshot) -> dict[str, int]:
    """The pod's preferred terms against every pod; existing pods' terms only from the pods that
    have some (``NodeInfo.affinity_pods``)."""
    pi = state.pi
    ns_labels = snapshot.namespace_labels
    topo: dict[tuple[str, str], int] = {}

    def add(term: AffinityTerm, weight: int, target: PodInfo, node: NodeInfo) -> None:
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
    return normalize_topology(topo, nodes)


def normalize_spread(raw: Mapping[str, int], nodes: list[NodeInfo]) -> dict[str, int]:
    """PodTopologySpread's NormalizeScore: fewer matching pods score higher; a node without a
    raw score (it lacks a constraint's topology key) scores 0."""
    lo = min(raw.values(), default=0)
    hi = max(raw.values(), default=0)
    out: dict[str, int] = {}
    for node in nodes:
        if node.name not in raw:
            out[node.name] = 0
        elif hi == 0:
            out[node.name] = MAX_NODE_SCORE
        else:
            out[node.name] = MAX_NODE_SCORE * (hi + lo - raw[node.name]) // hi
    return out


def score_topology_spread(state: PodState, nodes: list[NodeInfo], snapshot: Snapshot) -> dict[str, int]:
    """``ScheduleAnyway`` constraints, or the system defaults (hostname skew 3, zone skew 5) over the
    pod's siblings when it declares no constraints at all; pods are counted only for the domains
    some feasible node reads."""
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
    return normalize_spread(raw, nodes)


# --------------------------------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------------------------------


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


Filters = Callable[[PodState, Snapshot], tuple[list[NodeInfo], dict[str, Status]]]
Totals = Callable[[PodState, list[NodeInfo], Snapshot], dict[str, int]]


def select_host(totals: Mapping[str, int], rng: random.Random) -> str:
    """The node with the highest total; ties broken uniformly at random."""
    best = max(totals.values())
    candidates = sorted(name for name, s in totals.items() if s == best)
    return candidates[0] if len(candidates) == 1 else rng.choice(candidates)


def schedule(
    pod: Obj | PodInfo,
    snapshot: Snapshot,
    rng: random.Random | None = None,
    filters: Filters = run_filters,
    totals: Totals = weighted_totals,
) -> Result:
    """Filter, score, select: where ``pod`` should run, or why it cannot run anywhere."""
    pi = pod if isinstance(pod, PodInfo) else PodInfo.of(pod)
    rng = rng or random.Random()
    num_nodes = len(snapshot.nodes)
    if num_nodes == 0:
        return Unschedulable(ERR_NO_NODES, {}, 0)
    state = PodState(pi, snapshot)
    feasible, statuses = filters(state, snapshot)
    if not feasible:
        return Unschedulable(fit_error_message(pi.pod, statuses, num_nodes), statuses, num_nodes)
    if len(feasible) == 1:
        return Placement(feasible[0].name, {feasible[0].name: 0}, 1, num_nodes)
    scores = totals(state, feasible, snapshot)
    return Placement(select_host(scores, rng), scores, len(feasible), num_nodes)
