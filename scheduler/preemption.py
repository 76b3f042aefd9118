"""Preemption: kube-scheduler's ``DefaultPreemption`` PostFilter, over a snapshot (no I/O).

When a pod fits on no node, :func:`find_candidate` looks for the node where removing pods of
lower priority makes it fit, as kube-scheduler does:

1. **Eligibility.** ``preemptionPolicy: Never`` never preempts; a pod whose nominated node still
   has a terminating pod of lower priority (an earlier preemption in progress) waits for it.
2. **Candidate nodes.** Only nodes whose filter failure preemption may resolve (not
   ``UnschedulableAndUnresolvable``: taints, node affinity, node name, cordoned...).
3. **Victims per node** (``SelectVictimsOnNode``). Every pod of lower priority is taken off the
   node; if the pod then does not pass the filters (all of them, re-run with the pods removed) the
   node is no candidate. Otherwise the removed pods are put back one by one, most important first
   (higher priority, then the earlier started), PodDisruptionBudget-violating ones before the
   others; a pod that can be put back while the preemptor still fits is *reprieved*, the rest
   are the victims. A victim whose PDB (``status.disruptionsAllowed``, same namespace, selector
   matching, not already in ``disruptedPods``) has no disruption left counts as a violation.
4. **The node** (``pickOneNodeForPreemption``): fewest PDB violations, then the lowest
   highest-victim priority, the smallest sum of victim priorities, the fewest victims, the
   latest start time of the highest-priority victims; the first node (by name) after that.

:mod:`scheduler.scheduler` then carries the choice out: ``status.nominatedNodeName`` on the
preemptor, a ``DisruptionTarget`` condition on each victim and its deletion, a ``Preempted``
event; the preemptor is retried when the victims are gone, on the nominated node first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .fastpath import AffinityFilterState, PodState, SpreadFilterState, filter_node
from .framework import (
    ERR_NO_NODES,
    PREEMPTION_NEVER,
    PREEMPTION_NO_VICTIMS,
    PREEMPTION_NOT_HELPFUL,
    NodeInfo,
    Obj,
    PodInfo,
    Snapshot,
    Status,
    safe_selector,
)
from .queue import pod_priority

MAX_INT32 = 2**31 - 1
NOT_ELIGIBLE_TERMINATING = "not eligible due to a terminating pod on the nominated node."
DISRUPTION_TARGET = "DisruptionTarget"
REASON_PREEMPTION = "PreemptionByScheduler"


@dataclass
class Candidate:
    """A node and the pods to remove from it (most important first)."""

    node_name: str
    victims: list[PodInfo] = field(default_factory=list)
    pdb_violations: int = 0


@dataclass
class Outcome:
    """What preemption found: a candidate, or the message explaining why there is none."""

    candidate: Candidate | None
    message: str


def preemption_policy(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("preemptionPolicy") or "PreemptLowerPriority")


def nominated_node(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("nominatedNodeName") or "")


def start_time(pi: PodInfo) -> str:
    """``GetPodStartTime``: ``status.startTime``, else now (sorts after every real time)."""
    return str((pi.pod.get("status") or {}).get("startTime") or "9999-12-31T23:59:59Z")


def importance(pi: PodInfo) -> tuple[int, str]:
    """A sort key, most important first (``MoreImportantPod``): higher priority, earlier start."""
    return (-pod_priority(pi.pod), start_time(pi))


def eligible(pi: PodInfo, snapshot: Snapshot) -> str | None:
    """``PodEligibleToPreemptOthers``: None when eligible, else the reason it is not."""
    if preemption_policy(pi.pod) == "Never":
        return PREEMPTION_NEVER
    nominated = nominated_node(pi.pod)
    info = snapshot.nodes.get(nominated) if nominated else None
    if info is not None:
        mine = pod_priority(pi.pod)
        if any(p.terminating and pod_priority(p.pod) < mine for p in info.pods.values()):
            return NOT_ELIGIBLE_TERMINATING
    return None


def fits(state: PodState, snapshot: Snapshot, node: NodeInfo) -> bool:
    """Every filter plugin passes ``node`` for the pod (state computed over ``snapshot`` as it is now)."""
    if filter_node(state, node) is not None:
        return False
    spread = SpreadFilterState(state, snapshot)
    if spread.constraints and spread.filter(state.pi, node) is not None:
        return False
    affinity = AffinityFilterState(state.pi, snapshot)
    return not (affinity.active and affinity.filter(node) is not None)


# -- PodDisruptionBudgets ----------------------------------------------------------------------------


@dataclass
class Budget:
    namespace: str
    selector: Any
    allowed: int
    disrupted: frozenset[str]


def budgets(pdbs: Iterable[Obj]) -> list[Budget]:
    out = []
    for pdb in pdbs:
        meta = pdb.get("metadata") or {}
        status = pdb.get("status") or {}
        try:
            allowed = int(status.get("disruptionsAllowed") or 0)
        except (TypeError, ValueError):
            allowed = 0
        out.append(
            Budget(
                str(meta.get("namespace") or "default"),
                safe_selector((pdb.get("spec") or {}).get("selector")),
                allowed,
                frozenset((status.get("disruptedPods") or {}).keys()),
            )
        )
    return out


def split_by_pdb(pods: list[PodInfo], pdbs: list[Budget]) -> tuple[list[PodInfo], list[PodInfo]]:
    """``filterPodsWithPDBViolation``: (violating, non-violating), each in the given order."""
    allowed = [b.allowed for b in pdbs]
    violating: list[PodInfo] = []
    fine: list[PodInfo] = []
    for pi in pods:
        violated = False
        for i, b in enumerate(pdbs):
            if b.namespace != pi.namespace or b.selector.empty or not b.selector.matches(pi.labels):
                continue
            if pi.name in b.disrupted:
                continue  # the API server has already counted its disruption
            allowed[i] -= 1
            if allowed[i] < 0:
                violated = True
        (violating if violated else fine).append(pi)
    return violating, fine


# -- victims on one node ------------------------------------------------------------------------------


def select_victims(
    state: PodState, snapshot: Snapshot, node: NodeInfo, pdbs: list[Budget]
) -> Candidate | None:
    """``SelectVictimsOnNode``: the fewest lower-priority pods to remove so the pod fits, or None.

    ``node`` (part of ``snapshot``) is changed while this runs and restored before it returns."""
    mine = pod_priority(state.pi.pod)
    potential = sorted((p for p in node.pods.values() if pod_priority(p.pod) < mine), key=importance)
    if not potential:
        return None
    for p in potential:
        node.remove_pod(p.key)
    try:
        if not fits(state, snapshot, node):
            return None
        violating, fine = split_by_pdb(potential, pdbs)
        victims: list[PodInfo] = []
        violations = 0

        def reprieve(p: PodInfo) -> bool:
            node.add_pod(p)
            if fits(state, snapshot, node):
                return True
            node.remove_pod(p.key)
            victims.append(p)
            return False

        for p in violating:
            if not reprieve(p):
                violations += 1
        for p in fine:
            reprieve(p)
    finally:
        for p in potential:
            if p.key not in node.pods:
                node.add_pod(p)
    victims.sort(key=importance)
    return Candidate(node.name, victims, violations)


# -- the node ------------------------------------------------------------------------------------------


def pick_one(candidates: list[Candidate]) -> Candidate | None:
    """``pickOneNodeForPreemption``: kube-scheduler's criteria in order, then the first."""
    if not candidates:
        return None
    for c in candidates:
        if not c.victims:
            return c

    def earliest_of_highest(c: Candidate) -> str:
        top = pod_priority(c.victims[0].pod)
        return min(start_time(v) for v in c.victims if pod_priority(v.pod) == top)

    criteria = (
        lambda c: c.pdb_violations,
        lambda c: pod_priority(c.victims[0].pod),
        lambda c: sum(pod_priority(v.pod) + MAX_INT32 + 1 for v in c.victims),
        lambda c: len(c.victims),
    )
    remaining = sorted(candidates, key=lambda c: c.node_name)
    for key in criteria:
        best = min(key(c) for c in remaining)
        remaining = [c for c in remaining if key(c) == best]
        if len(remaining) == 1:
            return remaining[0]
    latest = max(earliest_of_highest(c) for c in remaining)
    return next(c for c in remaining if earliest_of_highest(c) == latest)


def no_candidate_message(statuses: Mapping[str, Status], num_nodes: int, found: set[str]) -> str:
    """ "preemption: 0/N nodes are available: ..." for the nodes examined without success."""
    reasons: Counter[str] = Counter()
    for name, s in statuses.items():
        if name in found:
            continue
        reasons[PREEMPTION_NO_VICTIMS if s.resolvable else PREEMPTION_NOT_HELPFUL] += 1
    parts = sorted(f"{v} {k}" for k, v in reasons.items())
    return f"preemption: 0/{num_nodes} nodes are available: {', '.join(parts)}"


def find_candidate(
    pi: PodInfo, snapshot: Snapshot, statuses: Mapping[str, Status], pdbs: Iterable[Obj] = ()
) -> Outcome:
    """The DefaultPreemption PostFilter for ``pi`` that fit nowhere (``statuses``: each node's
    failed filter). The message is what kube-scheduler appends to the fit error."""
    num_nodes = len(snapshot.nodes)
    if num_nodes == 0:
        return Outcome(None, ERR_NO_NODES)
    reason = eligible(pi, snapshot)
    if reason is not None:
        return Outcome(None, f"preemption: {reason}")
    state = PodState(pi, snapshot)
    budget_list = budgets(pdbs)
    candidates: list[Candidate] = []
    for name in sorted(statuses):
        status = statuses[name]
        node = snapshot.nodes.get(name)
        if node is None or not status.resolvable:
            continue
        found = select_victims(state, snapshot, node, budget_list)
        if found is not None:
            candidates.append(found)
    chosen = pick_one(candidates)
    if chosen is None:
        return Outcome(None, no_candidate_message(statuses, num_nodes, set()))
    return Outcome(chosen, "")


def fit_error_without_postfilter(statuses: Mapping[str, Status], num_nodes: int) -> str:
    """``FitError.Error()`` when preemption succeeded (no PostFilter message follows the reasons)."""
    reasons = Counter(r for s in statuses.values() for r in s.reasons)
    parts = sorted(f"{v} {k}" for k, v in reasons.items())
    msg = f"0/{num_nodes} nodes are available:"
    return msg + (f" {', '.join(parts)}." if parts else "")


def preempted_message(preemptor: Obj, node_name: str) -> str:
    uid = (preemptor.get("metadata") or {}).get("uid") or ""
    return f"Preempted by pod {uid} on node {node_name}"


def disruption_condition(scheduler_name: str, now: str) -> Obj:
    return {
        "type": DISRUPTION_TARGET,
        "status": "True",
        "reason": REASON_PREEMPTION,
        "message": f"{scheduler_name}: preempting to accommodate a higher priority pod",
        "lastProbeTime": None,
        "lastTransitionTime": now,
    }
