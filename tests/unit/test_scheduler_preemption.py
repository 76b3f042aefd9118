"""Preemption over hand-built snapshots: eligibility, victims with reprieve, PDBs, the node choice."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler import preemption as pre
from scheduler.fastpath import schedule
from scheduler.framework import Placement, PodInfo, Snapshot, Unschedulable

pytestmark = pytest.mark.unit


def node(name: str, cpu: str = "1", pods: str = "110", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
        "status": {
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": pods},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(
    name: str,
    cpu: str,
    priority: int = 0,
    node_name: str | None = None,
    labels: dict[str, str] | None = None,
    started: str = "2024-01-01T00:00:00Z",
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}, "uid": f"uid-{name}"},
        "spec": {
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}],
            "priority": priority,
            **spec,
        },
        "status": {"startTime": started},
    }
    if node_name:
        body["spec"]["nodeName"] = node_name
    return body


def pdb(selector: dict[str, str], allowed: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "budget", "namespace": "default"},
        "spec": {"selector": {"matchLabels": selector}},
        "status": {"disruptionsAllowed": allowed},
    }


def preempt(
    preemptor: dict[str, Any], snap: Snapshot, pdbs: list[dict[str, Any]] | None = None
) -> pre.Outcome:
    result = schedule(preemptor, snap)
    assert isinstance(result, Unschedulable)
    return pre.find_candidate(PodInfo.of(preemptor), snap, result.statuses, pdbs or [])


def victims(outcome: pre.Outcome) -> list[str]:
    assert outcome.candidate is not None, outcome.message
    return [v.name for v in outcome.candidate.victims]


def test_lowest_priority_victims_and_reprieve() -> None:
    # n1 has 1 CPU full with three pods; the preemptor needs 500m: removing "low" (500m) suffices,
    # "mid" and the 0-priority small pod are reprieved even though they have lower priority.
    snap = Snapshot.build(
        [node("n1")],
        [
            pod("low", "500m", 1, "n1"),
            pod("mid", "300m", 5, "n1"),
            pod("tiny", "200m", 0, "n1"),
        ],
    )
    outcome = preempt(pod("high", "500m", 100), snap)
    assert outcome.candidate is not None and outcome.candidate.node_name == "n1"
    # most important first: mid (5) and low (1) are candidates before tiny (0); putting back mid
    # and low leaves no room, so the reprieve keeps mid, then low does not fit, then tiny does.
    assert victims(outcome) == ["low"]
    # the snapshot is unchanged afterwards
    assert sorted(snap.nodes["n1"].pods) == ["default/low", "default/mid", "default/tiny"]
    assert snap.nodes["n1"].requested["cpu"] == 1000


def test_several_victims_when_one_is_not_enough() -> None:
    snap = Snapshot.build([node("n1")], [pod(f"p{i}", "250m", i, "n1") for i in range(4)])
    outcome = preempt(pod("high", "600m", 10), snap)
    # p3 is reprieved (250m + 600m fit); p2, p1 and p0 go, listed most important first
    assert victims(outcome) == ["p2", "p1", "p0"]


def test_never_and_equal_priority() -> None:
    snap = Snapshot.build([node("n1")], [pod("same", "1", 10, "n1")])
    outcome = preempt(pod("peer", "500m", 10), snap)
    assert outcome.candidate is None
    assert (
        outcome.message
        == "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod"
    )
    outcome = preempt(pod("never", "500m", 100, preemptionPolicy="Never"), snap)
    assert outcome.candidate is None
    assert outcome.message == "preemption: not eligible due to preemptionPolicy=Never"


def test_unresolvable_nodes_are_not_candidates() -> None:
    snap = Snapshot.build([node("n1", unschedulable=True)], [pod("low", "1", 0, "n1")])
    outcome = preempt(pod("high", "500m", 100), snap)
    assert outcome.candidate is None
    assert (
        outcome.message == "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling"
    )


def test_waits_for_terminating_victims_on_nominated_node() -> None:
    going = pod("going", "1", 0, "n1")
    going["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    snap = Snapshot.build([node("n1")], [going])
    preemptor = pod("high", "500m", 100)
    preemptor["status"]["nominatedNodeName"] = "n1"
    outcome = preempt(preemptor, snap)
    assert outcome.candidate is None
    assert outcome.message == "preemption: not eligible due to a terminating pod on the nominated node."


def test_pdb_violations_avoided_where_possible() -> None:
    # n1's victim is protected by a budget with no disruption left, n2's is not: n2 is chosen
    # although its victim has the higher priority.
    snap = Snapshot.build(
        [node("n1"), node("n2")],
        [pod("guarded", "1", 1, "n1", labels={"app": "db"}), pod("free", "1", 5, "n2")],
    )
    outcome = preempt(pod("high", "1", 100), snap, [pdb({"app": "db"}, 0)])
    assert outcome.candidate is not None and outcome.candidate.node_name == "n2"
    assert outcome.candidate.pdb_violations == 0
    # with a disruption allowed the lower-priority victim on n1 wins
    outcome = preempt(pod("high", "1", 100), snap, [pdb({"app": "db"}, 1)])
    assert outcome.candidate is not None and outcome.candidate.node_name == "n1"
    # only violating candidates: still preempted, the violation counted
    snap = Snapshot.build([node("n1")], [pod("guarded", "1", 1, "n1", labels={"app": "db"})])
    outcome = preempt(pod("high", "1", 100), snap, [pdb({"app": "db"}, 0)])
    assert victims(outcome) == ["guarded"]
    assert outcome.candidate is not None and outcome.candidate.pdb_violations == 1


def test_pdb_split_counts_down_the_budget() -> None:
    pods = [PodInfo.of(pod(f"p{i}", "1", 0, "n1", labels={"app": "a"})) for i in range(3)]
    budget = pre.budgets([pdb({"app": "a"}, 2)])
    violating, fine = pre.split_by_pdb(pods, budget)
    assert [p.name for p in fine] == ["p0", "p1"]
    assert [p.name for p in violating] == ["p2"]
    # an empty selector matches nothing
    violating, fine = pre.split_by_pdb(pods, pre.budgets([{"metadata": {}, "spec": {"selector": {}}}]))
    assert violating == [] and len(fine) == 3


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        # lowest highest-victim priority
        ([("a", "n1", 5), ("b", "n2", 3)], "n2"),
        # same highest priority: smallest sum (n1: 3+1, n2: 3+3 ... with 2 victims each)
        ([("a1", "n1", 3), ("a2", "n1", 1), ("b1", "n2", 3), ("b2", "n2", 3)], "n1"),
    ],
)
def test_node_choice_by_priorities(pods: list[tuple[str, str, int]], expected: str) -> None:
    count: dict[str, int] = {}
    for _, n, _ in pods:
        count[n] = count.get(n, 0) + 1
    bodies = [pod(name, f"{1000 // count[n]}m", prio, n) for name, n, prio in pods]
    snap = Snapshot.build([node("n1"), node("n2")], bodies)
    outcome = preempt(pod("high", "1", 100), snap)
    assert outcome.candidate is not None and outcome.candidate.node_name == expected


def test_node_choice_fewest_victims_then_latest_start() -> None:
    # equal priorities and sums are impossible with different counts, so use priority 0 victims:
    # sums are count * (MaxInt32 + 1): fewer victims wins
    snap = Snapshot.build(
        [node("n1"), node("n2")],
        [pod("a1", "500m", 0, "n1"), pod("a2", "500m", 0, "n1"), pod("b", "1", 0, "n2")],
    )
    outcome = preempt(pod("high", "1", 100), snap)
    assert outcome.candidate is not None and outcome.candidate.node_name == "n2"
    # a tie on everything but the start time: the node whose victim started last
    snap = Snapshot.build(
        [node("n1"), node("n2")],
        [
            pod("old", "1", 0, "n1", started="2024-01-01T00:00:00Z"),
            pod("new", "1", 0, "n2", started="2024-06-01T00:00:00Z"),
        ],
    )
    outcome = preempt(pod("high", "1", 100), snap)
    assert outcome.candidate is not None and outcome.candidate.node_name == "n2"


def test_pick_one_prefers_no_victims_and_fits_after() -> None:
    assert pre.pick_one([]) is None
    empty = pre.Candidate("n9")
    assert pre.pick_one([pre.Candidate("n1", [PodInfo.of(pod("x", "1", 0, "n1"))]), empty]) is empty
    # after the victims are gone, the preemptor passes every filter on the node
    snap = Snapshot.build([node("n1")], [pod("low", "1", 0, "n1")])
    high = pod("high", "1", 100)
    outcome = preempt(high, snap)
    assert outcome.candidate is not None
    for v in outcome.candidate.victims:
        snap.nodes["n1"].remove_pod(v.key)
    result = schedule(high, snap)
    assert isinstance(result, Placement) and result.node_name == "n1"


def test_messages() -> None:
    preemptor = pod("high", "1", 100)
    assert pre.preempted_message(preemptor, "n1") == "Preempted by pod uid-high on node n1"
    cond = pre.disruption_condition("default-scheduler", "2024-01-01T00:00:00Z")
    assert cond["type"] == "DisruptionTarget" and cond["reason"] == "PreemptionByScheduler"
    assert cond["message"] == "default-scheduler: preempting to accommodate a higher priority pod"
    snap = Snapshot.build([node("n1")], [pod("low", "1", 0, "n1")])
    result = schedule(preemptor, snap)
    assert isinstance(result, Unschedulable)
    assert (
        pre.fit_error_without_postfilter(result.statuses, 1) == "0/1 nodes are available: 1 Insufficient cpu."
    )
