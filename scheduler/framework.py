"""What a scheduling decision reads and returns: pods, nodes, the snapshot, statuses and results.

:class:`PodInfo` is a pod with what the plugins need computed once (requests, host ports, pod
affinity terms, controller owner); :class:`NodeInfo` is a node with the pods bound (or assumed) to
it and per-node aggregates kept current on every add and remove; a :class:`Snapshot` holds them
all. The plugins and the decision over a snapshot are in :mod:`scheduler.fastpath`.

Nothing here does I/O: the scheduler process keeps a :class:`Snapshot` current from its informers;
the unit tests build snapshots by hand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apimachinery import errors
from apimachinery.nodematch import HARD_EFFECTS
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


def safe_selector(sel: Mapping[str, Any] | None) -> LabelSelector:
    try:
        return selector_from_dict(sel)
    except errors.StatusError:
        return LabelSelector.nothing()


def with_match_label_keys(
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
    selector = safe_selector(term.get("labelSelector"))
    selector = with_match_label_keys(selector, term.get("matchLabelKeys") or (), labels, "in")
    selector = with_match_label_keys(selector, term.get("mismatchLabelKeys") or (), labels, "notin")
    namespaces = frozenset(term.get("namespaces") or ())
    ns_sel_raw = term.get("namespaceSelector")
    ns_sel = None if ns_sel_raw is None else safe_selector(ns_sel_raw)
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
        self.hard_taints = [t for t in self.taints if t.get("effect") in HARD_EFFECTS]
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
# Failure messages
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
