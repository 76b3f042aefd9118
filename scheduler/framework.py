"""The scheduling decision: a pure function from a snapshot of the cluster to a placement.

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

Nothing here does I/O: the scheduler process keeps a :class:`Snapshot` current from its informers
and calls :func:`schedule`; the unit tests build snapshots by hand.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apimachinery import errors
from apimachinery.quantity import quantity_to_millis
from apimachinery.selectors import LabelSelector, Requirement, new_requirement, selector_from_dict

Obj = dict[str, Any]

MAX_NODE_SCORE = 100

# Requests of containers that ask for nothing, as kube-scheduler assumes for scoring only
# (pkg/scheduler/util: DefaultMilliCPURequest, DefaultMemoryRequest).
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_ZONE = "topology.kubernetes.io/zone"

TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"

# Plugin names (as in kube-scheduler's configuration).
NODE_UNSCHEDULABLE = "NodeUnschedulable"
NODE_NAME = "NodeName"
TAINT_TOLERATION = "TaintToleration"
NODE_AFFINITY = "NodeAffinity"
NODE_PORTS = "NodePorts"
NODE_RESOURCES_FIT = "NodeResourcesFit"
BALANCED_ALLOCATION = "NodeResourcesBalancedAllocation"
POD_TOPOLOGY_SPREAD = "PodTopologySpread"
INTER_POD_AFFINITY = "InterPodAffinity"

SCORE_WEIGHTS: dict[str, int] = {
    NODE_RESOURCES_FIT: 1,
    BALANCED_ALLOCATION: 1,
    NODE_AFFINITY: 1,
    INTER_POD_AFFINITY: 1,
    POD_TOPOLOGY_SPREAD: 2,
    TAINT_TOLERATION: 3,
}

# Failure reasons, exactly as kube-scheduler's plugins spell them.
ERR_NODE_UNSCHEDULABLE = "node(s) were unschedulable"
ERR_NODE_NAME = "node(s) didn't match the requested node name"
ERR_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
ERR_NODE_PORTS = "node(s) didn't have free ports for the requested pod ports"
ERR_TOO_MANY_PODS = "Too many pods"
ERR_SPREAD = "node(s) didn't match pod topology spread constraints"
ERR_SPREAD_LABEL = ERR_SPREAD + " (missing required label)"
ERR_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_NO_NODES = "no nodes available to schedule pods"
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
PREEMPTION_NO_VICTIMS = "No preemption victims found for incoming pod"
PREEMPTION_NEVER = "not eligible due to preemptionPolicy=Never"


def untolerated_taint_reason(taint: Mapping[str, Any]) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


def insufficient(resource: str) -> str:
    return f"Insufficient {resource}"


# --------------------------------------------------------------------------------------------------
# Pods: requests, ports, affinity terms
# --------------------------------------------------------------------------------------------------

Resources = dict[str, int]  # resource name -> amount in thousandths (cpu millicores, memory milli-bytes)


def _millis(value: Any) -> int:
    try:
        return quantity_to_millis(str(value))
    except (ValueError, ArithmeticError, errors.StatusError):
        return 0


def container_requests(container: Mapping[str, Any]) -> Resources:
    """A container's requests; a resource with only a limit requests its limit (API defaulting)."""
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    out: Resources = {}
    for name in set(requests) | set(limits):
        value = requests.get(name, limits.get(name))
        out[name] = _millis(value)
    return out


def _add(into: Resources, more: Mapping[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def _max(into: Resources, other: Mapping[str, int]) -> None:
    for k, v in other.items():
        if v > into.get(k, 0):
            into[k] = v


def pod_requests(pod: Mapping[str, Any]) -> Resources:
    """What a pod reserves on its node (``resourcehelper.PodRequests``).

    The sum of the app containers plus restartable init containers (sidecars), or the largest
    init container (plus the sidecars started before it) when that is more, plus ``overhead``.
    """
    spec = pod.get("spec") or {}
    total: Resources = {}
    for c in spec.get("containers") or []:
        _add(total, container_requests(c))
    sidecars: Resources = {}
    init_max: Resources = {}
    for c in spec.get("initContainers") or []:
        req = container_requests(c)
        if c.get("restartPolicy") == "Always":
            _add(sidecars, req)
            _max(init_max, sidecars)
        else:
            step = dict(req)
            _add(step, sidecars)
            _max(init_max, step)
    _add(total, sidecars)
    _max(total, init_max)
    _add(total, {k: _millis(v) for k, v in (spec.get("overhead") or {}).items()})
    return {k: v for k, v in total.items() if v}


def pod_nonzero_requests(pod: Mapping[str, Any]) -> tuple[int, int]:
    """(milli-CPU, memory milli-bytes) with kube-scheduler's defaults for containers asking nothing."""
    spec = pod.get("spec") or {}

    def nz(c: Mapping[str, Any]) -> tuple[int, int]:
        req = container_requests(c)
        cpu = req.get("cpu") or DEFAULT_MILLI_CPU_REQUEST
        mem = req.get("memory") or DEFAULT_MEMORY_REQUEST * 1000
        return cpu, mem

    cpu = mem = 0
    side_cpu = side_mem = 0
    init_cpu = init_mem = 0
    for c in spec.get("containers") or []:
        a, b = nz(c)
        cpu, mem = cpu + a, mem + b
    for c in spec.get("initContainers") or []:
        a, b = nz(c)
        if c.get("restartPolicy") == "Always":
            side_cpu, side_mem = side_cpu + a, side_mem + b
            init_cpu, init_mem = max(init_cpu, side_cpu), max(init_mem, side_mem)
        else:
            init_cpu, init_mem = max(init_cpu, a + side_cpu), max(init_mem, b + side_mem)
    cpu, mem = max(cpu + side_cpu, init_cpu), max(mem + side_mem, init_mem)
    overhead = spec.get("overhead") or {}
    return cpu + _millis(overhead.get("cpu", 0)), mem + _millis(overhead.get("memory", 0))


HostPort = tuple[str, str, int]  # (hostIP, protocol, port)


def pod_host_ports(pod: Mapping[str, Any]) -> list[HostPort]:
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or [])
    containers += [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    out: list[HostPort] = []
    for c in containers:
        for p in c.get("ports") or []:
            port = int(p.get("hostPort") or 0)
            if port > 0:
                out.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", port))
    return out


def ports_conflict(a: HostPort, b: HostPort) -> bool:
    return a[1] == b[1] and a[2] == b[2] and (a[0] == b[0] or "0.0.0.0" in (a[0], b[0]))


@dataclass
class AffinityTerm:
    """A ``PodAffinityTerm`` resolved against the namespace of the pod that declares it."""

    selector: LabelSelector
    topology_key: str
    namespaces: frozenset[str]
    namespace_selector: LabelSelector | None
    weight: int = 0

    def matches(self, pod: PodInfo, namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
        if pod.namespace not in self.namespaces:
            if self.namespace_selector is None:
                return False
            if not self.namespace_selector.matches(namespace_labels.get(pod.namespace) or {}):
                return False
        return self.selector.matches(pod.labels)


def _safe_selector(sel: Mapping[str, Any] | None) -> LabelSelector:
    try:
        return selector_from_dict(sel)
    except errors.StatusError:
        return LabelSelector.nothing()


def _with_match_label_keys(
    selector: LabelSelector, keys: Iterable[str], labels: Mapping[str, str], op: str
) -> LabelSelector:
    extra: list[Requirement] = []
    for key in keys or ():
        if key in labels:
            try:
                extra.append(new_requirement(key, op, [labels[key]]))
            except ValueError:
                continue
    if not extra or selector.match_nothing:
        return selector
    return LabelSelector([*selector.requirements, *extra])


def _affinity_term(
    pod_ns: str, labels: Mapping[str, str], term: Mapping[str, Any], weight: int = 0
) -> AffinityTerm:
    selector = _safe_selector(term.get("labelSelector"))
    selector = _with_match_label_keys(selector, term.get("matchLabelKeys") or (), labels, "in")
    selector = _with_match_label_keys(selector, term.get("mismatchLabelKeys") or (), labels, "notin")
    namespaces = frozenset(term.get("namespaces") or ())
    ns_sel_raw = term.get("namespaceSelector")
    ns_sel = None if ns_sel_raw is None else _safe_selector(ns_sel_raw)
    if not namespaces and ns_sel is None:
        namespaces = frozenset({pod_ns})
    return AffinityTerm(selector, str(term.get("topologyKey") or ""), namespaces, ns_sel, weight)


def _owner_uid(pod: Mapping[str, Any]) -> str | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid") or "") or None
    return None


@dataclass
class PodInfo:
    """A pod with what the plugins need pre-computed once (kube-scheduler's ``framework.PodInfo``)."""

    pod: Obj
    namespace: str
    name: str
    labels: dict[str, str]
    requests: Resources
    nonzero: tuple[int, int]
    host_ports: list[HostPort]
    required_affinity: list[AffinityTerm]
    required_anti_affinity: list[AffinityTerm]
    preferred_affinity: list[AffinityTerm]
    preferred_anti_affinity: list[AffinityTerm]
    owner_uid: str | None
    terminating: bool

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def has_pod_affinity(self) -> bool:
        return bool(
            self.required_affinity
            or self.required_anti_affinity
            or self.preferred_affinity
            or self.preferred_anti_affinity
        )

    @classmethod
    def of(cls, pod: Obj) -> PodInfo:
        meta = pod.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        labels = dict(meta.get("labels") or {})
        affinity = (pod.get("spec") or {}).get("affinity") or {}
        pa = affinity.get("podAffinity") or {}
        paa = affinity.get("podAntiAffinity") or {}

        def required(section: Mapping[str, Any]) -> list[AffinityTerm]:
            terms = section.get("requiredDuringSchedulingIgnoredDuringExecution") or []
            return [_affinity_term(ns, labels, t) for t in terms]

        def preferred(section: Mapping[str, Any]) -> list[AffinityTerm]:
            terms = section.get("preferredDuringSchedulingIgnoredDuringExecution") or []
            return [
                _affinity_term(ns, labels, t.get("podAffinityTerm") or {}, int(t.get("weight") or 0))
                for t in terms
            ]

        return cls(
            pod=pod,
            namespace=ns,
            name=str(meta.get("name") or ""),
            labels=labels,
            requests=pod_requests(pod),
            nonzero=pod_nonzero_requests(pod),
            host_ports=pod_host_ports(pod),
            required_affinity=required(pa),
            required_anti_affinity=required(paa),
            preferred_affinity=preferred(pa),
            preferred_anti_affinity=preferred(paa),
            owner_uid=_owner_uid(pod),
            terminating=bool(meta.get("deletionTimestamp")),
        )


# --------------------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------------------


def ready_condition(node: Mapping[str, Any]) -> str | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status") or "")
    return None


def effective_taints(node: Mapping[str, Any]) -> list[Obj]:
    """The node's taints, plus ``not-ready``/``unreachable:NoSchedule`` when its Ready condition is
    not True and the node lifecycle controller has not (yet) put one there.

    A Ready condition ``Unknown`` means unreachable; ``False`` or no condition at all means not ready.
    """
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    ready = ready_condition(node)
    if ready == "True":
        return taints
    present = any(
        t.get("key") in (TAINT_NOT_READY, TAINT_UNREACHABLE) and t.get("effect") == "NoSchedule"
        for t in taints
    )
    if not present:
        key = TAINT_UNREACHABLE if ready == "Unknown" else TAINT_NOT_READY
        taints = [*taints, {"key": key, "effect": "NoSchedule"}]
    return taints


def _discard(index: dict[Any, dict[str, PodInfo]], group: Any, key: str) -> None:
    members = index.get(group)
    if members is not None:
        members.pop(key, None)
        if not members:
            del index[group]


class NodeInfo:
    """A node and the pods bound (or assumed) to it, with their summed requests."""

    def __init__(self, node: Obj) -> None:
        self.pods: dict[str, PodInfo] = {}
        self.requested: Resources = {}
        self.nonzero_cpu = 0
        self.nonzero_mem = 0
        # Aggregates kept up to date by add_pod/remove_pod, so a decision need not walk every pod
        # (kube-scheduler's NodeInfo.UsedPorts, PodsWithAffinity, PodsWithRequiredAntiAffinity).
        self.used_ports: Counter[HostPort] = Counter()
        self.affinity_pods: dict[str, PodInfo] = {}  # pods with any pod (anti-)affinity term
        self.by_namespace: dict[str, dict[str, PodInfo]] = {}
        self.by_owner: dict[tuple[str, str], dict[str, PodInfo]] = {}  # (namespace, owner uid)
        self.set_node(node)

    def set_node(self, node: Obj) -> None:
        self.node = node
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.name = str(meta.get("name") or "")
        self.labels: dict[str, str] = dict(meta.get("labels") or {})
        self.unschedulable = bool(spec.get("unschedulable"))
        self.taints = effective_taints(node)
        self.hard_taints = [t for t in self.taints if t.get("effect") in ("NoSchedule", "NoExecute")]
        self.soft_taints = [t for t in self.taints if t.get("effect") == "PreferNoSchedule"]
        alloc = status.get("allocatable") or status.get("capacity") or {}
        self.allocatable: Resources = {k: _millis(v) for k, v in alloc.items()}
        self.allowed_pods = self.allocatable.pop("pods", 0) // 1000

    def add_pod(self, pi: PodInfo) -> None:
        if pi.key in self.pods:
            self.remove_pod(pi.key)
        key = pi.key
        self.pods[key] = pi
        _add(self.requested, pi.requests)
        self.nonzero_cpu += pi.nonzero[0]
        self.nonzero_mem += pi.nonzero[1]
        for port in pi.host_ports:
            self.used_ports[port] += 1
        if pi.has_pod_affinity:
            self.affinity_pods[key] = pi
        self.by_namespace.setdefault(pi.namespace, {})[key] = pi
        if pi.owner_uid is not None:
            self.by_owner.setdefault((pi.namespace, pi.owner_uid), {})[key] = pi

    def remove_pod(self, key: str) -> PodInfo | None:
        pi = self.pods.pop(key, None)
        if pi is not None:
            for k, v in pi.requests.items():
                self.requested[k] = self.requested.get(k, 0) - v
            self.nonzero_cpu -= pi.nonzero[0]
            self.nonzero_mem -= pi.nonzero[1]
            for port in pi.host_ports:
                self.used_ports[port] -= 1
                if self.used_ports[port] <= 0:
                    del self.used_ports[port]
            self.affinity_pods.pop(key, None)
            _discard(self.by_namespace, pi.namespace, key)
            if pi.owner_uid is not None:
                _discard(self.by_owner, (pi.namespace, pi.owner_uid), key)
        return pi

    def __repr__(self) -> str:
        return f"<NodeInfo {self.name} pods={len(self.pods)}>"


@dataclass
class Snapshot:
    """What one scheduling decision sees: nodes with their pods, and namespace labels."""

    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    services: list[Obj] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        nodes: Iterable[Obj],
        pods: Iterable[Obj] = (),
        namespaces: Iterable[Obj] = (),
        services: Iterable[Obj] = (),
    ) -> Snapshot:
        snap = cls()
        for n in nodes:
            info = NodeInfo(n)
            snap.nodes[info.name] = info
        for p in pods:
            node_name = (p.get("spec") or {}).get("nodeName")
            if node_name in snap.nodes:
                snap.nodes[node_name].add_pod(PodInfo.of(p))
        for ns in namespaces:
            meta = ns.get("metadata") or {}
            snap.namespace_labels[str(meta.get("name"))] = dict(meta.get("labels") or {})
        snap.services = list(services)
        return snap

    def node_list(self) -> list[NodeInfo]:
        return [self.nodes[k] for k in sorted(self.nodes)]


# --------------------------------------------------------------------------------------------------
# Statuses and results
# --------------------------------------------------------------------------------------------------


@dataclass
class Status:
    """A failed filter: the plugin, its reasons, and whether preemption could ever help."""

    plugin: str
    reasons: list[str]
    resolvable: bool = True  # False = UnschedulableAndUnresolvable


@dataclass
class Placement:
    node_name: str
    scores: dict[str, int] = field(default_factory=dict)  # node -> total weighted score
    feasible: int = 0
    evaluated: int = 0


@dataclass
class Unschedulable:
    message: str
    statuses: dict[str, Status] = field(default_factory=dict)
    num_nodes: int = 0

    @property
    def plugins(self) -> set[str]:
        return {s.plugin for s in self.statuses.values()}


Result = Placement | Unschedulable


# --------------------------------------------------------------------------------------------------
# Helpers shared by several plugins
# --------------------------------------------------------------------------------------------------


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """``Toleration.ToleratesTaint``: an empty effect matches every effect, an empty key with
    ``Exists`` matches every taint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return op == "Exists"


def tolerated(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def pod_tolerations(pod: Mapping[str, Any]) -> list[Obj]:
    return [t for t in (pod.get("spec") or {}).get("tolerations") or [] if isinstance(t, dict)]


def _requirement_matches(req: Mapping[str, Any], value: str | None) -> bool:
    op = req.get("operator")
    values = [str(v) for v in req.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def node_selector_term_matches(term: Mapping[str, Any], node_name: str, labels: Mapping[str, str]) -> bool:
    """One ``NodeSelectorTerm``: all its expressions and fields hold; an empty term matches nothing."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    for req in exprs:
        if not _requirement_matches(req, labels.get(str(req.get("key")))):
            return False
    for req in fields:
        if req.get("key") != "metadata.name" or req.get("operator") not in ("In", "NotIn"):
            return False
        if not _requirement_matches(req, node_name):
            return False
    return True


def pod_matches_node_selector_and_affinity(pod: Mapping[str, Any], node: NodeInfo) -> bool:
    spec = pod.get("spec") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if node.labels.get(k) != v:
            return False
    na = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is not None:
        terms = required.get("nodeSelectorTerms") or []
        if not any(node_selector_term_matches(t, node.name, node.labels) for t in terms):
            return False
    return True


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


# --------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------


def filter_node_unschedulable(pod: PodInfo, node: NodeInfo) -> Status | None:
    if not node.unschedulable:
        return None
    taint = {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}
    if tolerated(pod_tolerations(pod.pod), taint):
        return None
    return Status(NODE_UNSCHEDULABLE, [ERR_NODE_UNSCHEDULABLE], resolvable=False)


def filter_node_name(pod: PodInfo, node: NodeInfo) -> Status | None:
    wanted = (pod.pod.get("spec") or {}).get("nodeName")
    if wanted and wanted != node.name:
        return Status(NODE_NAME, [ERR_NODE_NAME], resolvable=False)
    return None


def filter_taints(pod: PodInfo, node: NodeInfo) -> Status | None:
    tolerations = pod_tolerations(pod.pod)
    for taint in node.taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not tolerated(tolerations, taint):
            return Status(TAINT_TOLERATION, [untolerated_taint_reason(taint)], resolvable=False)
    return None


def filter_node_affinity(pod: PodInfo, node: NodeInfo) -> Status | None:
    if pod_matches_node_selector_and_affinity(pod.pod, node):
        return None
    return Status(NODE_AFFINITY, [ERR_NODE_AFFINITY], resolvable=False)


def filter_node_ports(pod: PodInfo, node: NodeInfo) -> Status | None:
    if not pod.host_ports:
        return None
    for other in node.pods.values():
        for used in other.host_ports:
            if any(ports_conflict(want, used) for want in pod.host_ports):
                return Status(NODE_PORTS, [ERR_NODE_PORTS])
    return None


def filter_resources(pod: PodInfo, node: NodeInfo) -> Status | None:
    """``noderesources.fitsRequest``: every shortfall is one reason ("Insufficient cpu", ...)."""
    reasons: list[str] = []
    if len(node.pods) + 1 > node.allowed_pods:
        reasons.append(ERR_TOO_MANY_PODS)
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
        return Status(NODE_RESOURCES_FIT, reasons)
    return None


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


def _spread_constraints(pod: PodInfo, action: str) -> list[SpreadConstraint]:
    out: list[SpreadConstraint] = []
    for c in (pod.pod.get("spec") or {}).get("topologySpreadConstraints") or []:
        if c.get("whenUnsatisfiable", "DoNotSchedule") != action:
            continue
        sel = _safe_selector(c.get("labelSelector"))
        sel = _with_match_label_keys(sel, c.get("matchLabelKeys") or (), pod.labels, "in")
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


def _count_matching(node: NodeInfo, selector: SpreadSelector, namespace: str) -> int:
    return sum(
        1
        for p in node.pods.values()
        if p.namespace == namespace and not p.terminating and selector.matches(p)
    )


def _node_included(c: SpreadConstraint, pod: PodInfo, node: NodeInfo) -> bool:
    if c.honor_node_affinity and not pod_matches_node_selector_and_affinity(pod.pod, node):
        return False
    if c.honor_node_taints:
        tolerations = pod_tolerations(pod.pod)
        for taint in node.taints:
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(tolerations, taint):
                return False
    return True


class SpreadFilterState:
    """``PodTopologySpread`` PreFilter: matching pods per topology domain and the minimum per key."""

    def __init__(
        self,
        pod: PodInfo,
        snapshot: Snapshot,
        counter: Callable[[NodeInfo, SpreadSelector, str], int] | None = None,
    ) -> None:
        count_pods = counter or _count_matching
        self.constraints = _spread_constraints(pod, "DoNotSchedule")
        self.pair_counts: dict[tuple[str, str], int] = {}
        if not self.constraints:
            return
        keys = [c.topology_key for c in self.constraints]
        for node in snapshot.nodes.values():
            if not all(k in node.labels for k in keys):
                continue
            for c in self.constraints:
                if not _node_included(c, pod, node):
                    continue
                pair = (c.topology_key, node.labels[c.topology_key])
                self.pair_counts[pair] = self.pair_counts.get(pair, 0) + count_pods(
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

    def __init__(self, pod: PodInfo, snapshot: Snapshot, indexed: bool = False) -> None:
        """``indexed``: visit only what can count -- the nodes' ``affinity_pods`` for existing
        pods' anti-affinity, and every pod only when ``pod`` has required terms of its own."""
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


FILTERS = (
    filter_node_unschedulable,
    filter_node_name,
    filter_taints,
    filter_node_affinity,
    filter_node_ports,
    filter_resources,
)


def run_filters(pod: PodInfo, snapshot: Snapshot) -> tuple[list[NodeInfo], dict[str, Status]]:
    """Every node through every filter; returns (feasible nodes, failed node -> status)."""
    spread = SpreadFilterState(pod, snapshot)
    affinity = AffinityFilterState(pod, snapshot)
    feasible: list[NodeInfo] = []
    statuses: dict[str, Status] = {}
    for node in snapshot.node_list():
        status: Status | None = None
        for f in FILTERS:
            status = f(pod, node)
            if status is not None:
                break
        if status is None and spread.constraints:
            status = spread.filter(pod, node)
        if status is None and affinity.active:
            status = affinity.filter(node)
        if status is None:
            feasible.append(node)
        else:
            statuses[node.name] = status
    return feasible, statuses


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
            total += 0 if req > alloc else (alloc - req) * MAX_NODE_SCORE // alloc
            weight += 1
        out[node.name] = total // weight if weight else 0
    return out


def score_balanced_allocation(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, int]:
    out = {}
    for node in nodes:
        fracs = [min(req / alloc, 1.0) for req, alloc in _fractions(pod, node, nonzero=False)]
        if len(fracs) == 2:
            std = abs(fracs[0] - fracs[1]) / 2
        elif len(fracs) > 2:
            mean = sum(fracs) / len(fracs)
            std = math.sqrt(sum((f - mean) ** 2 for f in fracs) / len(fracs))
        else:
            std = 0.0
        out[node.name] = int((1 - std) * MAX_NODE_SCORE)
    return out


def score_node_affinity(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, int]:
    na = ((pod.pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    terms = [
        t
        for t in na.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        if int(t.get("weight") or 0) != 0
        and (
            (t.get("preference") or {}).get("matchExpressions")
            or (t.get("preference") or {}).get("matchFields")
        )
    ]
    raw = {}
    for node in nodes:
        raw[node.name] = sum(
            int(t.get("weight") or 0)
            for t in terms
            if node_selector_term_matches(t.get("preference") or {}, node.name, node.labels)
        )
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
    ns_labels = snapshot.namespace_labels
    has_preferred = bool(pod.preferred_affinity or pod.preferred_anti_affinity)
    topo: dict[tuple[str, str], int] = {}

    def add(term: AffinityTerm, weight: int, target: PodInfo, node: NodeInfo) -> None:
        value = node.labels.get(term.topology_key)
        if value is not None and term.matches(target, ns_labels):
            topo[(term.topology_key, value)] = topo.get((term.topology_key, value), 0) + weight

    for node in snapshot.nodes.values():
        for existing in node.pods.values():
            if has_preferred:
                for t in pod.preferred_affinity:
                    add(t, t.weight, existing, node)
                for t in pod.preferred_anti_affinity:
                    add(t, -t.weight, existing, node)
            for t in existing.required_affinity:  # hardPodAffinityWeight 1
                add(t, 1, pod, node)
            for t in existing.preferred_affinity:
                add(t, t.weight, pod, node)
            for t in existing.preferred_anti_affinity:
                add(t, -t.weight, pod, node)
    if not topo:
        return {n.name: 0 for n in nodes}
    raw = {n.name: sum(w for (k, v), w in topo.items() if n.labels.get(k) == v) for n in nodes}
    lo, hi = min(raw.values()), max(raw.values())
    if hi == lo:
        return {k: 0 for k in raw}
    return {k: int(MAX_NODE_SCORE * ((v - lo) / (hi - lo))) for k, v in raw.items()}


def score_topology_spread(pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> dict[str, int]:
    """``ScheduleAnyway`` constraints, or the system defaults (hostname skew 3, zone skew 5) over the
    pod's siblings when it declares no constraints at all."""
    explicit = bool((pod.pod.get("spec") or {}).get("topologySpreadConstraints"))
    constraints = _spread_constraints(pod, "ScheduleAnyway")
    if not explicit:
        sel = default_spread_selector(pod, snapshot.services)
        if sel is not None:
            constraints = [
                SpreadConstraint(3, LABEL_HOSTNAME, sel),
                SpreadConstraint(5, LABEL_ZONE, sel),
            ]
    if not constraints:
        return {n.name: 0 for n in nodes}
    require_all = explicit
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
    for node in snapshot.nodes.values():
        if require_all and not all(k in node.labels for k in keys):
            continue
        for c in constraints:
            if not _node_included(c, pod, node):
                continue
            pair = (c.topology_key, node.labels.get(c.topology_key, ""))
            if pair in pair_counts:
                pair_counts[pair] += _count_matching(node, c.selector, pod.namespace)
    raw: dict[str, int] = {}
    for node in nodes:
        if node.name in ignored:
            continue
        total = 0.0
        for i, c in enumerate(constraints):
            value = node.labels.get(c.topology_key)
            if c.topology_key == LABEL_HOSTNAME:
                count = _count_matching(node, c.selector, pod.namespace)
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


def run_scores(pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> dict[str, dict[str, int]]:
    """Plugin -> node -> normalised score (0..100), before weights."""
    return {
        NODE_RESOURCES_FIT: score_least_allocated(pod, nodes),
        BALANCED_ALLOCATION: score_balanced_allocation(pod, nodes),
        NODE_AFFINITY: score_node_affinity(pod, nodes),
        INTER_POD_AFFINITY: score_inter_pod_affinity(pod, nodes, snapshot),
        POD_TOPOLOGY_SPREAD: score_topology_spread(pod, nodes, snapshot),
        TAINT_TOLERATION: score_taint_toleration(pod, nodes),
    }


# --------------------------------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------------------------------


def preemption_message(pod: Mapping[str, Any], statuses: Mapping[str, Status], num_nodes: int) -> str:
    """What kube-scheduler's DefaultPreemption reports when it finds no candidate.

    minik never preempts, so every node where preemption might help reports no victims.
    """
    if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
        return f"preemption: {PREEMPTION_NEVER}"
    reasons = Counter(
        PREEMPTION_NO_VICTIMS if s.resolvable else PREEMPTION_NOT_HELPFUL for s in statuses.values()
    )
    parts = sorted(f"{v} {k}" for k, v in reasons.items())
    return f"preemption: 0/{num_nodes} nodes are available: {', '.join(parts)}"


def fit_error_message(pod: Mapping[str, Any], statuses: Mapping[str, Status], num_nodes: int) -> str:
    """``FitError.Error()``: "0/3 nodes are available: <sorted reason histogram>. preemption: ...".

    Each reason counts once per node that gave it; the "N reason" strings are sorted as strings.
    """
    if num_nodes == 0:
        return ERR_NO_NODES
    reasons = Counter(r for s in statuses.values() for r in s.reasons)
    msg = f"0/{num_nodes} nodes are available:"
    parts = sorted(f"{v} {k}" for k, v in reasons.items())
    if parts:
        msg += f" {', '.join(parts)}."
    return msg + f" {preemption_message(pod, statuses, num_nodes)}."


def select_host(totals: Mapping[str, int], rng: random.Random) -> str:
    """The node with the highest total; ties broken uniformly at random."""
    best = max(totals.values())
    candidates = sorted(name for name, s in totals.items() if s == best)
    return candidates[0] if len(candidates) == 1 else rng.choice(candidates)


def schedule_reference(pod: Obj | PodInfo, snapshot: Snapshot, rng: random.Random | None = None) -> Result:
    """Filter, score, select: where ``pod`` should run, or why it cannot run anywhere.

    The plain rendering of the plugins, every plugin on every node, walking every pod. The
    scheduler runs :func:`scheduler.fastpath.schedule`, which gives the same answer from the
    snapshot's per-node aggregates; the equivalence tests hold the two together.
    """
    pi = pod if isinstance(pod, PodInfo) else PodInfo.of(pod)
    rng = rng or random.Random()
    num_nodes = len(snapshot.nodes)
    if num_nodes == 0:
        return Unschedulable(ERR_NO_NODES, {}, 0)
    feasible, statuses = run_filters(pi, snapshot)
    if not feasible:
        return Unschedulable(fit_error_message(pi.pod, statuses, num_nodes), statuses, num_nodes)
    if len(feasible) == 1:
        return Placement(feasible[0].name, {feasible[0].name: 0}, 1, num_nodes)
    per_plugin = run_scores(pi, feasible, snapshot)
    totals = {n.name: 0 for n in feasible}
    for plugin, scores in per_plugin.items():
        weight = SCORE_WEIGHTS[plugin]
        for name, s in scores.items():
            totals[name] += s * weight
    return Placement(select_host(totals, rng), totals, len(feasible), num_nodes)
